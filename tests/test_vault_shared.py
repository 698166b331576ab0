"""configure-vault.sh on a shared (university) Vault: other teams' mounts stay exactly as they were.

A fresh OpenBao is dressed like a Vault other teams already use: `secret/` is a KV v1 mount holding
a team's data, and `auth/jwt` is configured for another issuer (a GitLab CI's). The script must
create its own mounts, leave those two unchanged and readable, refuse to touch them unless forced,
and say what it will change before it does. It runs with a token holding only the shipped
least-privilege policy; put-user-secrets.sh with only the writer policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from valeria_platform.oidc import OIDCProvider
from valeria_platform.openbao import (
    JWT_MOUNT,
    KV_MOUNT,
    VAULT_SCRIPTS,
    OpenBao,
    configure_vault,
    run_vault_script,
    write_user_secrets,
)
from valeria_platform.procs import ServiceError

from tests.fixtures.services import OIDC_CLIENT_ID

TEAM_DATA = {"password": "team-a-db-password"}
CI_ISSUER = "https://gitlab.example.org"


def _ci_public_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def shared_vault(tmp_path: Path) -> Iterator[OpenBao]:
    vault = OpenBao(workdir=tmp_path / "bao").start()
    try:
        root = vault.client()
        # another team's KV v1 `secret/` (the dev server's own is v2: replace it)
        root.sys.disable_secrets_engine("secret")
        root.sys.enable_secrets_engine("kv", path="secret", options={"version": "1"})
        root.secrets.kv.v1.create_or_update_secret("team-a/db", TEAM_DATA, mount_point="secret")
        # GitLab CI's `jwt` auth mount, for another issuer
        root.sys.enable_auth_method("jwt", path="jwt")
        root.write_data(
            "auth/jwt/config", data={"jwt_validation_pubkeys": [_ci_public_key()], "bound_issuer": CI_ISSUER}
        )
        root.write_data(
            "auth/jwt/role/ci",
            data={
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_audiences": ["gitlab"],
                "token_policies": ["ci"],
            },
        )
        yield vault
    finally:
        vault.stop()


def _others_state(vault: OpenBao) -> dict:
    """What the other teams rely on: the mounts' type and version, their data, the CI auth config."""
    root = vault.client()
    mounts = root.sys.list_mounted_secrets_engines()["data"]
    auths = root.sys.list_auth_methods()["data"]
    return {
        "secret": (mounts["secret/"]["type"], (mounts["secret/"].get("options") or {}).get("version")),
        "data": root.secrets.kv.v1.read_secret("team-a/db", mount_point="secret")["data"],
        "jwt": (auths["jwt/"]["type"], auths["jwt/"]["accessor"]),
        "jwt_config": root.read("auth/jwt/config")["data"],
        "ci_role": root.read("auth/jwt/role/ci")["data"],
    }


def _admin_token(vault: OpenBao) -> str:
    root = vault.client()
    root.sys.create_or_update_policy(
        "valeria-admin", (VAULT_SCRIPTS / "valeria-admin-policy.hcl").read_text()
    )
    return root.auth.token.create(policies=["valeria-admin"], ttl="10m")["auth"]["client_token"]


def test_plan_mode_changes_nothing(shared_vault: OpenBao, oidc_provider: OIDCProvider) -> None:
    before = _others_state(shared_vault)
    out = configure_vault(shared_vault, oidc_provider.issuer, audience=OIDC_CLIENT_ID, args=["--plan"])
    assert f"will enable KV v2 at {KV_MOUNT}/" in out and f"will enable JWT auth at auth/{JWT_MOUNT}" in out
    assert "nothing changed" in out
    root = shared_vault.client()
    assert f"{KV_MOUNT}/" not in root.sys.list_mounted_secrets_engines()["data"]
    assert f"{JWT_MOUNT}/" not in root.sys.list_auth_methods()["data"]
    assert _others_state(shared_vault) == before


def test_defaults_leave_other_teams_mounts_alone(shared_vault: OpenBao, oidc_provider: OIDCProvider) -> None:
    before = _others_state(shared_vault)
    token = _admin_token(shared_vault)  # least privilege: only the shipped admin policy
    out = configure_vault(shared_vault, oidc_provider.issuer, audience=OIDC_CLIENT_ID, token=token)
    assert "done" in out
    assert _others_state(shared_vault) == before
    assert before["secret"] == ("kv", "1") and before["data"] == TEAM_DATA
    root = shared_vault.client()
    assert (root.sys.list_mounted_secrets_engines()["data"][f"{KV_MOUNT}/"]["options"] or {})[
        "version"
    ] == "2"
    assert f"{JWT_MOUNT}/" in root.sys.list_auth_methods()["data"]
    # idempotent: a re-run reconfigures its own mounts and still leaves the others alone
    configure_vault(shared_vault, oidc_provider.issuer, audience=OIDC_CLIENT_ID, token=token)
    assert _others_state(shared_vault) == before
    # the admin token could not have touched the other teams' mounts anyway
    admin = shared_vault.client(token)
    with pytest.raises(hvac.exceptions.Forbidden):
        admin.write_data("auth/jwt/config", data={"bound_issuer": "x"})
    with pytest.raises(hvac.exceptions.Forbidden):
        admin.secrets.kv.v1.read_secret("team-a/db", mount_point="secret")
    # the writer policy: put-user-secrets.sh works with it, and it reads nothing
    root.sys.create_or_update_policy(
        "valeria-secrets-writer", (VAULT_SCRIPTS / "valeria-secrets-writer-policy.hcl").read_text()
    )
    writer = root.auth.token.create(policies=["valeria-secrets-writer"], ttl="10m")["auth"]["client_token"]
    write_user_secrets(shared_vault, "alice", "AKALICE", "sk-alice", 12345, 12345, token=writer)
    stored = root.secrets.kv.v2.read_secret_version(
        path="valeria/users/alice/s3", mount_point=KV_MOUNT, raise_on_deleted_version=True
    )["data"]["data"]
    assert stored == {"access_key": "AKALICE", "secret_key": "sk-alice"}
    writer_client = hvac.Client(url=shared_vault.addr, token=writer, timeout=10)
    with pytest.raises(hvac.exceptions.Forbidden):
        writer_client.secrets.kv.v2.read_secret_version(
            path="valeria/users/alice/s3", mount_point=KV_MOUNT, raise_on_deleted_version=True
        )
    with pytest.raises(hvac.exceptions.Forbidden):
        writer_client.secrets.kv.v1.read_secret("team-a/db", mount_point="secret")


@pytest.mark.parametrize(
    "env, named",
    [
        ({"VAULT_KV_MOUNT": "secret"}, "secret/ is a KV v1 mount"),
        ({"VAULT_AUTH_MOUNT": "jwt"}, "auth/jwt is a JWT mount"),
    ],
)
def test_foreign_mounts_are_refused_unless_forced(
    shared_vault: OpenBao, oidc_provider: OIDCProvider, env: dict, named: str
) -> None:
    before = _others_state(shared_vault)
    with pytest.raises(ServiceError) as info:
        run_vault_script(
            shared_vault,
            "configure-vault.sh",
            env={"OIDC_DISCOVERY_URL": oidc_provider.issuer, "JWT_BOUND_AUDIENCE": OIDC_CLIENT_ID, **env},
        )
    assert named in str(info.value) and "nothing was changed" in str(info.value)
    assert _others_state(shared_vault) == before
    root = shared_vault.client()
    assert f"{KV_MOUNT}/" not in root.sys.list_mounted_secrets_engines()["data"]  # refused before any change


def test_force_upgrades_a_foreign_kv_v1_mount(shared_vault: OpenBao, oidc_provider: OIDCProvider) -> None:
    out = run_vault_script(
        shared_vault,
        "configure-vault.sh",
        args=["--force"],
        env={"OIDC_DISCOVERY_URL": oidc_provider.issuer, "VAULT_KV_MOUNT": "secret"},
    ).stdout
    assert "will upgrade KV mount secret/ from v1 to v2" in out
    mounts = shared_vault.client().sys.list_mounted_secrets_engines()["data"]
    assert mounts["secret/"]["options"]["version"] == "2"
