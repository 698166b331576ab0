"""HubSettings: every variable parsed once, errors name the variable, secrets never shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from valeria_hub.settings import HubSettings, SettingsError

from tests.fixtures.hub import hub_env, worktree_path

CONFIG = Path(__file__).resolve().parent.parent / "hub_config" / "jupyterhub_config.py"


def test_defaults_and_types():
    s = HubSettings.from_env(hub_env())
    assert s.vault_auth == "jwt" and s.vault_auth_mount == "valeria-jwt" and s.vault_role == "jupyterhub"
    assert s.vault_s3_path == "valeria/users/{sub}/s3"
    assert (s.uid_min, s.uid_max) == (1000, 2147483647)
    assert s.oidc_allowed_groups == ("/researchers",) and s.oidc_admin_groups == ("/hub-admins",)
    assert s.db_url == "sqlite:///jupyterhub.sqlite"
    assert s.discovery_url == "http://127.0.0.1:9/realms/valeria/.well-known/openid-configuration"
    assert s.oauth_callback_url == "http://127.0.0.1:8000/hub/oauth_callback"
    assert [p.slug for p in s.profiles] == ["scipy", "r"]
    with pytest.raises(AttributeError):
        s.uid_min = 0  # frozen


def test_secrets_never_in_repr_or_str():
    s = HubSettings.from_env(hub_env())
    for text in (repr(s), str(s), f"{s}", repr(s.oidc_client_secret), f"{s.db_password}"):
        assert "DO-NOT-LEAK" not in text
    assert s.oidc_client_secret.get() == "client-secret-DO-NOT-LEAK"
    assert s.db_environment() == {}  # sqlite: nothing to pass
    pg = HubSettings.from_env(hub_env(VALERIA_DB_URL="postgresql+psycopg2://hub@db/hub"))
    assert pg.db_environment() == {"PGPASSWORD": "db-password-DO-NOT-LEAK"}


@pytest.mark.parametrize(
    "overrides, variable",
    [
        ({"JUPYTERHUB_CRYPT_KEY": None}, "JUPYTERHUB_CRYPT_KEY"),
        ({"VALERIA_OIDC_REALM_URL": None}, "VALERIA_OIDC_REALM_URL"),
        ({"VALERIA_OIDC_REALM_URL": "ftp://x"}, "VALERIA_OIDC_REALM_URL"),
        ({"VALERIA_OIDC_CLIENT_SECRET": ""}, "VALERIA_OIDC_CLIENT_SECRET"),
        ({"VALERIA_OIDC_ALLOWED_GROUPS": " , "}, "VALERIA_OIDC_ALLOWED_GROUPS"),
        # bare names would match a group of that name anywhere in the realm's tree
        ({"VALERIA_OIDC_ALLOWED_GROUPS": "researchers"}, "VALERIA_OIDC_ALLOWED_GROUPS"),
        ({"VALERIA_OIDC_ADMIN_GROUPS": "/hub-admins,admins"}, "VALERIA_OIDC_ADMIN_GROUPS"),
        ({"VALERIA_OIDC_ADMIN_GROUPS": "/org//admins"}, "VALERIA_OIDC_ADMIN_GROUPS"),
        ({"VALERIA_VAULT_AUTH": "token"}, "VALERIA_VAULT_AUTH"),
        ({"VALERIA_VAULT_AUTH": "approle"}, "VALERIA_VAULT_APPROLE_ROLE_ID"),
        ({"VALERIA_VAULT_TIMEOUT": "soon"}, "VALERIA_VAULT_TIMEOUT"),
        ({"VALERIA_VAULT_RETRIES": "99"}, "VALERIA_VAULT_RETRIES"),
        ({"VALERIA_UID_MIN": "0"}, "VALERIA_UID_MIN"),
        ({"VALERIA_UID_MIN": "5000", "VALERIA_UID_MAX": "4000"}, "VALERIA_UID_MAX"),
        ({"VALERIA_VAULT_S3_PATH": "valeria/shared/s3"}, "VALERIA_VAULT_S3_PATH"),
        ({"VALERIA_VAULT_S3_PATH": "valeria/{user}/s3"}, "VALERIA_VAULT_S3_PATH"),
        ({"VALERIA_NFS_HOME_PATH": "/home"}, "VALERIA_NFS_HOME_PATH"),
        ({"VALERIA_NFS_HOME_PATH": "/home/{username}/../.."}, "VALERIA_NFS_HOME_PATH"),
        ({"VALERIA_NFS_SERVER": None}, "VALERIA_NFS_SERVER"),
        ({"VALERIA_SPAWNER": "docker"}, "VALERIA_SPAWNER"),
        ({"VALERIA_DB_URL": "postgresql+psycopg2://hub:pw@db/hub"}, "VALERIA_DB_URL"),
        ({"VALERIA_DB_URL": "postgresql://hub@db/hub"}, "VALERIA_DB_URL"),
        ({"VALERIA_PROFILES": "not json"}, "VALERIA_PROFILES"),
        ({"VALERIA_PROFILES": "[]"}, "VALERIA_PROFILES"),
        ({"VALERIA_PROFILES": '[{"slug": "a", "display_name": "A"}]'}, "VALERIA_PROFILES"),
        ({"VALERIA_S3_ENDPOINT": "rgw.example.org"}, "VALERIA_S3_ENDPOINT"),
        ({"VALERIA_PROXY_SHOULD_START": "maybe"}, "VALERIA_PROXY_SHOULD_START"),
    ],
)
def test_bad_values_name_the_variable(overrides, variable):
    with pytest.raises(SettingsError) as info:
        HubSettings.from_env(hub_env(**overrides))
    message = str(info.value)
    assert variable in message
    assert "DO-NOT-LEAK" not in message and ":pw@" not in message


def test_profile_cannot_set_identity_traits():
    profiles = [
        {
            "slug": "evil",
            "display_name": "Evil",
            "image": "img",
            "kubespawner_override": {"uid": 0, "cpu_limit": 2},
        }
    ]
    with pytest.raises(SettingsError, match=r"VALERIA_PROFILES\[0\].*uid"):
        HubSettings.from_env(hub_env(VALERIA_PROFILES=json.dumps(profiles)))
    profiles[0]["kubespawner_override"] = {"cpu_limit": 2}
    s = HubSettings.from_env(hub_env(VALERIA_PROFILES=json.dumps(profiles)))
    assert s.profiles[0].as_kubespawner()["kubespawner_override"] == {"cpu_limit": 2, "image": "img"}


def test_local_spawner_needs_no_nfs():
    s = HubSettings.from_env(hub_env(VALERIA_SPAWNER="local", VALERIA_NFS_SERVER=None))
    assert s.spawner == "local" and s.nfs_server is None


def _load_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Load jupyterhub_config.py the way JupyterHub does, in a clean process with only `env`."""
    code = (
        "from traitlets.config import PyFileConfigLoader\n"
        f"cfg = PyFileConfigLoader({CONFIG.name!r}, path={str(CONFIG.parent)!r}).load_config()\n"
        "print(cfg.JupyterHub.spawner_class.__name__, cfg.JupyterHub.authenticator_class.__name__)\n"
        "print(cfg.JupyterHub.db_url, sorted(cfg.KeycloakAuthenticator.allowed_groups))\n"
        "print(cfg.KeycloakAuthenticator.enable_auth_state, cfg.KeycloakAuthenticator.refresh_pre_spawn)\n"
        "print(cfg.ValeriaKubeSpawner.service_account or '-')\n"
    )
    env = {**worktree_path(), **env}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_config_file_wires_settings():
    result = _load_config(
        hub_env(
            VALERIA_DB_URL="postgresql+psycopg2://hub@127.0.0.1:5/hub",
            VALERIA_NOTEBOOK_SERVICE_ACCOUNT="valeria-notebook",
        )
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ValeriaKubeSpawner KeycloakAuthenticator"
    assert lines[1] == "postgresql+psycopg2://hub@127.0.0.1:5/hub ['/researchers']"
    assert lines[2] == "True True"
    assert lines[3] == "valeria-notebook"
    result = _load_config(hub_env(VALERIA_SPAWNER="local"))
    assert result.stdout.startswith("LocalDatalakeSpawner KeycloakAuthenticator")


def test_config_file_refuses_to_start_without_crypt_key():
    result = _load_config(hub_env(JUPYTERHUB_CRYPT_KEY=None))
    assert result.returncode != 0
    assert "JUPYTERHUB_CRYPT_KEY is not set" in result.stderr
    assert "DO-NOT-LEAK" not in result.stderr + result.stdout


@pytest.mark.parametrize("written", ["s3cr3t-pw", "s3cr3t-pw\n", "  s3cr3t-pw \r\n"])
def test_db_password_from_an_echo_made_file_is_stripped(written):
    # `echo pw > db-password; oc create secret --from-file=password=./db-password` keeps the newline:
    # libpq would send it and PostgreSQL refuse the login (crash loop)
    s = HubSettings.from_env(
        hub_env(VALERIA_DB_URL="postgresql+psycopg2://hub@db/hub", VALERIA_DB_PASSWORD=written)
    )
    assert s.db_environment() == {"PGPASSWORD": "s3cr3t-pw"}


def test_spawn_timeouts_default_to_a_first_image_pull():
    s = HubSettings.from_env(hub_env())
    assert (s.start_timeout, s.http_timeout) == (600, 120)
    assert (s.concurrent_spawn_limit, s.token_refresh_jitter) == (100, 30)
    s = HubSettings.from_env(hub_env(VALERIA_START_TIMEOUT="900", VALERIA_HTTP_TIMEOUT="60"))
    assert (s.start_timeout, s.http_timeout) == (900, 60)
    for name in ("VALERIA_START_TIMEOUT", "VALERIA_HTTP_TIMEOUT"):
        with pytest.raises(SettingsError, match=name):
            HubSettings.from_env(hub_env(**{name: "0"}))


def test_config_file_keeps_servers_on_hub_restart_and_sets_timeouts():
    code = (
        "from traitlets.config import PyFileConfigLoader\n"
        f"cfg = PyFileConfigLoader({CONFIG.name!r}, path={str(CONFIG.parent)!r}).load_config()\n"
        "print(cfg.JupyterHub.cleanup_servers, cfg.Spawner.start_timeout, cfg.Spawner.http_timeout,\n"
        "      cfg.JupyterHub.concurrent_spawn_limit, cfg.KeycloakAuthenticator.refresh_jitter)\n"
    )
    env = hub_env(
        VALERIA_START_TIMEOUT="700",
        VALERIA_HTTP_TIMEOUT="90",
        VALERIA_CONCURRENT_SPAWN_LIMIT="250",
        VALERIA_TOKEN_REFRESH_JITTER="45",
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**worktree_path(), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # docs/upgrade.md: a hub restart (Recreate rollout, rollout restart, node drain) leaves servers running
    assert result.stdout.split() == ["False", "700", "90", "250", "45"]
    # the local spawner too: its servers outlive the hub, which re-adopts them (tests/test_hub_restart.py)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**worktree_path(), **env, "VALERIA_SPAWNER": "local"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "False"


EXTRA = [
    {"slug": "gpu", "display_name": "GPU", "image": "reg/gpu:1", "kubespawner_override": {"cpu_limit": 8}}
]


def test_extra_profiles_are_added_after_the_templates_and_validated_alike():
    s = HubSettings.from_env(hub_env(VALERIA_EXTRA_PROFILES=json.dumps(EXTRA)))
    assert [p.slug for p in s.profiles] == ["scipy", "r", "gpu"]
    evil = [{**EXTRA[0], "kubespawner_override": {"volumes": []}}]
    with pytest.raises(SettingsError, match=r"VALERIA_EXTRA_PROFILES\[0\].*volumes"):
        HubSettings.from_env(hub_env(VALERIA_EXTRA_PROFILES=json.dumps(evil)))
    clash = [{**EXTRA[0], "slug": "scipy"}]
    with pytest.raises(SettingsError, match="VALERIA_EXTRA_PROFILES.*scipy"):
        HubSettings.from_env(hub_env(VALERIA_EXTRA_PROFILES=json.dumps(clash)))
    with pytest.raises(SettingsError, match="VALERIA_EXTRA_PROFILES"):
        HubSettings.from_env(hub_env(VALERIA_EXTRA_PROFILES="{not json"))
    # empty (the admin's ConfigMap is absent): no extra flavour
    assert len(HubSettings.from_env(hub_env(VALERIA_EXTRA_PROFILES=" ")).profiles) == 2
