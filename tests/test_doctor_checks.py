"""`valeria-hub-doctor` against the local platform's real servers: healthy, then each one broken.

Real: the Keycloak-shaped OIDC provider, OpenBao configured by openshift/vault/configure-vault.sh,
PostgreSQL 15, and moto's S3 server (session fixtures). Faked, because they cannot run here:
- the NFS server, stood in for by a TCP listener on loopback (the doctor only checks that the NFS
  port answers; the nodes, not the hub, mount the export);
- the Kubernetes API server, stood in for by tests/fixtures/kube_api.py: it answers
  SelfSubjectAccessReviews by evaluating the rules of the Role rendered from
  openshift/templates/valeria-hub.yaml (so the doctor is checked against the real template).
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from valeria_hub import doctor
from valeria_platform.oidc import OIDCProvider
from valeria_platform.openbao import OpenBao, configure_vault

from tests.fixtures.kube_api import FakeKubeAPI
from tests.fixtures.s3 import free_port
from tests.fixtures.services import OIDC_CLIENT_ID, OIDC_CLIENT_SECRET
from tests.test_openshift_templates import render

SA_TOKEN = "sa-token-" + secrets.token_hex(16)
#: the fake pod's service account folder (set by the kube_api fixture)
SERVICE_ACCOUNT: dict[str, Path] = {}

CRYPT_KEY = secrets.token_hex(32)


@pytest.fixture(scope="module")
def nfs_port() -> Iterator[int]:
    """A TCP listener standing in for the NFS server's port 2049 (accepts and closes)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


TEMPLATE_ROLE_RULES = next(o for o in render("valeria-hub.yaml") if o["kind"] == "Role")["rules"]


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI(tmp_path_factory.mktemp("kube"), TEMPLATE_ROLE_RULES, SA_TOKEN)
    SERVICE_ACCOUNT["dir"] = api.sa_dir
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def healthy_env(oidc_provider, openbao, postgres, moto_site, kube_api) -> dict[str, str]:
    """The environment a correctly configured hub has, pointing at the local servers."""
    return {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(kube_api.port),
        "VALERIA_NAMESPACE": "valeria",
        "JUPYTERHUB_CRYPT_KEY": CRYPT_KEY,
        "VALERIA_OIDC_REALM_URL": oidc_provider.issuer,
        "VALERIA_OIDC_CLIENT_ID": OIDC_CLIENT_ID,
        "VALERIA_OIDC_CLIENT_SECRET": OIDC_CLIENT_SECRET,
        "VALERIA_OIDC_ALLOWED_GROUPS": "/researchers",
        "VALERIA_DB_URL": postgres.url("jupyterhub"),
        "VALERIA_DB_PASSWORD": postgres.hub_password,
        "VALERIA_VAULT_ADDR": openbao.addr,
        "VALERIA_VAULT_TIMEOUT": "3",
        "VALERIA_S3_ENDPOINT": moto_site.endpoint,
        "VALERIA_SPAWNER": "kubernetes",
        "VALERIA_NFS_SERVER": "127.0.0.1",
        "VALERIA_NFS_HOME_PATH": "/lustre/home/{username}",
        "VALERIA_NFS_SCRATCH_PATH": "/lustre/scratch/{uid}",
    }


def run_doctor(
    env: dict[str, str], nfs_port: int, capsys, *extra: str, sa_dir: Path | None = None
) -> tuple[int, dict[str, str], str]:
    sa_dir = sa_dir or SERVICE_ACCOUNT["dir"]
    argv = ["--nfs-port", str(nfs_port), "--timeout", "3", "--user", "alice", "--uid", "1001"]
    code = doctor.main([*argv, "--service-account-dir", str(sa_dir), *extra], env)
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    by_check = {line.split()[1]: line for line in lines}
    for line in lines:
        assert line.split()[0] in ("OK", "WARN", "FAIL", "SKIP"), line
    text = out.out + out.err
    for value in (OIDC_CLIENT_SECRET, CRYPT_KEY, SA_TOKEN, env.get("VALERIA_DB_PASSWORD", "")):
        assert not value or value not in text, "a secret reached the doctor's output"
    return code, by_check, text


def test_healthy_platform_passes_every_check(healthy_env, nfs_port, capsys) -> None:
    code, checks, text = run_doctor(healthy_env, nfs_port, capsys)
    assert list(checks) == ["settings", "keycloak", "vault", "database", "s3", "nfs", "kubernetes"], text
    assert all(line.startswith("OK") for line in checks.values()), text
    assert code == 0
    assert "1 signing key" in checks["keycloak"] or "signing key(s)" in checks["keycloak"]
    assert "role 'jupyterhub' exists" in checks["vault"]
    assert "postgresql+psycopg2://jupyterhub@127.0.0.1" in checks["database"]
    assert (
        "127.0.0.1:/lustre/home/alice" in checks["nfs"] and "127.0.0.1:/lustre/scratch/1001" in checks["nfs"]
    )
    assert "and no more" in checks["kubernetes"] and "may not get secrets" in checks["kubernetes"]
    assert "update pods/finalizers" in checks["kubernetes"].split("may not")[1]


def test_kubernetes_check_asks_for_each_right_in_the_namespace(
    healthy_env, nfs_port, kube_api, capsys
) -> None:
    kube_api.reviews.clear()
    code, checks, text = run_doctor(healthy_env, nfs_port, capsys, "--only", "kubernetes")
    assert code == 0, text
    asked = {
        (r["verb"], r["resource"] + ("/" + r["subresource"] if r.get("subresource") else ""))
        for r in kube_api.reviews
    }
    assert asked == set(doctor.KUBE_NEEDS) | set(doctor.KUBE_TOO_MUCH)
    assert {r["namespace"] for r in kube_api.reviews} == {"valeria"}


@pytest.mark.parametrize(
    "rules, status, words",
    [
        # the RoleBinding was never applied: nothing allowed
        ([], "FAIL", "may not create pods"),
        # an old Role without Secrets: the per-user Secret cannot be created
        ([r for r in TEMPLATE_ROLE_RULES if "secrets" not in r["resources"]], "FAIL", "create secrets"),
        # bound to `edit` instead: works, but may read every Secret of the project
        (
            [
                *TEMPLATE_ROLE_RULES,
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
            ],
            "WARN",
            "more than it needs",
        ),
        # an older Role: Secret delete and PVC rights the hub never uses
        (
            [
                *TEMPLATE_ROLE_RULES,
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]},
                {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["create"]},
            ],
            "WARN",
            "may delete secrets, create persistentvolumeclaims",
        ),
    ],
    ids=["no-binding", "no-secrets", "edit", "old-role"],
)
def test_kubernetes_rbac_problems(rules, status, words, healthy_env, nfs_port, kube_api, capsys) -> None:
    kube_api.rules = rules
    try:
        code, checks, text = run_doctor(healthy_env, nfs_port, capsys, "--only", "kubernetes")
    finally:
        kube_api.rules = TEMPLATE_ROLE_RULES
    assert checks["kubernetes"].startswith(status) and words in checks["kubernetes"], text
    assert code == (1 if status == "FAIL" else 0)


def test_kubernetes_check_outside_a_pod(healthy_env, nfs_port, tmp_path, capsys) -> None:
    code, checks, text = run_doctor(healthy_env, nfs_port, capsys, "--only", "kubernetes", sa_dir=tmp_path)
    assert code == 1 and "oc exec deploy/valeria-hub" in checks["kubernetes"], text


def _closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


BROKEN = {
    # case: (check that must fail, env changes, words the line must contain)
    "keycloak-down": (
        "keycloak",
        {"VALERIA_OIDC_REALM_URL": _closed_url() + "/realms/valeria"},
        "unreachable",
    ),
    "keycloak-wrong-realm": (
        "keycloak",
        {"VALERIA_OIDC_REALM_URL": "{issuer}-typo"},
        "VALERIA_OIDC_REALM_URL",
    ),
    "vault-down": ("vault", {"VALERIA_VAULT_ADDR": _closed_url()}, "unreachable"),
    "vault-no-role": ("vault", {"VALERIA_VAULT_ROLE": "no-such-role"}, "configure-vault.sh"),
    "vault-no-mount": ("vault", {"VALERIA_VAULT_AUTH_MOUNT": "jwt-typo"}, "VALERIA_VAULT_AUTH_MOUNT"),
    "db-down": (
        "database",
        {"VALERIA_DB_URL": "postgresql+psycopg2://jupyterhub@127.0.0.1:{closed_port}/x"},
        "cannot connect",
    ),
    "db-wrong-password": (
        "database",
        {"VALERIA_DB_PASSWORD": "wrong-" + secrets.token_hex(6)},
        "VALERIA_DB_PASSWORD",
    ),
    "s3-down": ("s3", {"VALERIA_S3_ENDPOINT": _closed_url()}, "unreachable"),
    "s3-not-s3": ("s3", {"VALERIA_S3_ENDPOINT": "{issuer_root}"}, "not like S3"),
    "nfs-down": ("nfs", {}, "unreachable"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_broken_dependency_fails_its_own_check(
    case, healthy_env, nfs_port, oidc_provider, capsys
) -> None:
    check, changes, words = BROKEN[case]
    issuer = oidc_provider.issuer
    root = issuer.split("/realms/")[0]
    env = dict(healthy_env)
    for name, value in changes.items():
        env[name] = value.format(issuer=issuer, issuer_root=root, closed_port=free_port())
    port = free_port() if case == "nfs-down" else nfs_port
    code, checks, text = run_doctor(env, port, capsys)
    assert code == 1, text
    assert checks[check].startswith("FAIL"), text
    assert words in checks[check], checks[check]
    assert "-> fix:" in checks[check] or case in ("keycloak-wrong-realm",), checks[check]
    others = [line for name, line in checks.items() if name != check]
    assert all(line.startswith("OK") for line in others), text  # one broken thing, one FAIL line
    if case == "db-wrong-password":
        assert env["VALERIA_DB_PASSWORD"] not in text


def test_vault_that_cannot_reach_keycloak_is_reported(healthy_env, nfs_port, tmp_path, capsys) -> None:
    """A Vault whose JWT auth points at a realm it cannot reach: the role exists, logins would all fail."""
    realm = OIDCProvider(
        realm="valeria",
        users=[],
        clients=[
            {
                "client_id": OIDC_CLIENT_ID,
                "client_secret": "x" * 16,
                "redirect_uris": ["http://127.0.0.1:1/cb"],
            }
        ],
        workdir=tmp_path / "oidc",
    ).start()
    try:
        vault = OpenBao(workdir=tmp_path / "bao").start()
    except BaseException:
        realm.stop()
        raise
    try:
        try:
            configure_vault(vault, realm.issuer, audience=OIDC_CLIENT_ID)
        finally:
            realm.stop()  # from now on Vault's JWT auth points at a realm that is gone
        env = {**healthy_env, "VALERIA_VAULT_ADDR": vault.addr}
        code, checks, text = run_doctor(env, nfs_port, capsys, "--only", "vault")
    finally:
        vault.stop()
    assert code == 1, text
    assert checks["vault"].startswith("FAIL") and "cannot fetch Keycloak's keys" in checks["vault"], text


def test_vault_older_than_the_templated_policy_fix_fails(healthy_env, nfs_port, openbao, capsys) -> None:
    """The real OpenBao, judged against a minimum above its own version: the failure path."""
    version = openbao.client().sys.read_health_status(method="GET")["version"]
    code, checks, text = run_doctor(
        healthy_env, nfs_port, capsys, "--only", "vault", "--min-openbao-version", "99.0.0"
    )
    assert code == 1 and checks["vault"].startswith("FAIL"), text
    assert f"OpenBao {version} is older than 99.0.0" in checks["vault"] and "'*'" in checks["vault"]
    code, checks, text = run_doctor(
        healthy_env, nfs_port, capsys, "--only", "vault", "--min-openbao-version", version
    )
    assert code == 0, text


def test_vault_check_per_auth_method(healthy_env, nfs_port, openbao, tmp_path, capsys) -> None:
    """AppRole logs in with the hub's credential (and revokes the token); Kubernetes needs the token."""
    root = openbao.client()
    mount = "approle-doctor"
    if f"{mount}/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle", path=mount)
    root.auth.approle.create_or_update_approle("hub", token_ttl="1m", mount_point=mount)
    role_id = root.auth.approle.read_role_id("hub", mount_point=mount)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("hub", mount_point=mount)["data"]["secret_id"]
    approle = {
        **healthy_env,
        "VALERIA_VAULT_AUTH": "approle",
        "VALERIA_VAULT_AUTH_MOUNT": mount,
        "VALERIA_VAULT_APPROLE_ROLE_ID": role_id,
        "VALERIA_VAULT_APPROLE_SECRET_ID": secret_id,
    }
    code, checks, text = run_doctor(approle, nfs_port, capsys, "--only", "vault")
    assert code == 0 and "logged in with role" in checks["vault"] and secret_id not in text, text
    wrong = {**approle, "VALERIA_VAULT_APPROLE_SECRET_ID": "wrong-" + secret_id}
    code, checks, text = run_doctor(wrong, nfs_port, capsys, "--only", "vault")
    assert code == 1 and "login refused" in checks["vault"], text
    kube = {
        **healthy_env,
        "VALERIA_VAULT_AUTH": "kubernetes",
        "VALERIA_VAULT_KUBE_TOKEN_PATH": str(tmp_path / "none"),
    }
    code, checks, text = run_doctor(kube, nfs_port, capsys, "--only", "vault")
    assert code == 1 and "no service account token" in checks["vault"], text


def test_version_rule() -> None:
    opts = doctor.Options()
    assert doctor.vault_version_problem({"version": "2.5.9"}, opts)  # OpenBao before the fix
    assert doctor.vault_version_problem({"version": "2.6.0"}, opts) is None
    assert doctor.vault_version_problem({"version": "1.21.3+ent", "enterprise": True}, opts)
    assert doctor.vault_version_problem({"version": "2.0.4", "enterprise": False}, opts) is None
    assert doctor.vault_version_problem({}, opts) == "OpenBao did not say its version"


def test_invalid_settings_exit_2_naming_the_variable(healthy_env, nfs_port, capsys) -> None:
    env = {k: v for k, v in healthy_env.items() if k != "JUPYTERHUB_CRYPT_KEY"}
    code, checks, text = run_doctor(env, nfs_port, capsys)
    assert code == 2
    assert list(checks) == ["settings"] and "JUPYTERHUB_CRYPT_KEY" in checks["settings"]
    env = {**healthy_env, "VALERIA_VAULT_TIMEOUT": "soon"}
    code, checks, _ = run_doctor(env, nfs_port, capsys)
    assert code == 2 and "VALERIA_VAULT_TIMEOUT" in checks["settings"]


def test_local_spawner_checks_the_local_root(healthy_env, nfs_port, tmp_path, capsys) -> None:
    env = {**healthy_env, "VALERIA_SPAWNER": "local", "VALERIA_LOCAL_ROOT": str(tmp_path / "users")}
    code, checks, _ = run_doctor(env, nfs_port, capsys, "--only", "nfs,kubernetes")
    assert code == 0 and "local spawner" in checks["nfs"]
    assert checks["kubernetes"].startswith("SKIP")


def test_scrub_removes_every_secret_value() -> None:
    env = {"JUPYTERHUB_CRYPT_KEY": "k" * 64, "VALERIA_DB_PASSWORD": "pw-123456", "OTHER": "visible"}
    line = "FAIL x pw-123456 and " + "k" * 64 + " and visible"
    assert doctor.scrub(line, doctor.secret_values(env, None)) == "FAIL x *** and *** and visible"


def test_command_line_entry_point(healthy_env, nfs_port) -> None:
    """The console script's module runs as a program with only the environment (what the image runs)."""
    result = subprocess.run(
        [sys.executable, "-m", "valeria_hub.doctor", "--only", "keycloak,s3", "--timeout", "3"],
        env={**healthy_env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines()] == ["settings", "keycloak", "s3"]
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    scripts = cfg["options.entry_points"]["console_scripts"]
    assert "valeria-hub-doctor = valeria_hub.doctor:main" in scripts


@pytest.mark.ceph
def test_s3_check_against_ceph_rgw_verifies_tls(healthy_env, nfs_port, ceph_site, capsys) -> None:
    """The real RGW over HTTPS: trusted with its CA bundle, refused without (the system CAs)."""
    assert ceph_site.endpoint.startswith("https://") and ceph_site.ca_bundle
    env = {
        **healthy_env,
        "VALERIA_S3_ENDPOINT": ceph_site.endpoint,
        "VALERIA_S3_CA_BUNDLE": ceph_site.ca_bundle,
    }
    code, checks, text = run_doctor(env, nfs_port, capsys, "--only", "s3")
    assert code == 0 and checks["s3"].startswith("OK"), text
    env.pop("VALERIA_S3_CA_BUNDLE")
    code, checks, text = run_doctor(env, nfs_port, capsys, "--only", "s3")
    assert code == 1 and "TLS" in checks["s3"] and "VALERIA_S3_CA_BUNDLE" in checks["s3"], text


@pytest.mark.ceph
def test_s3_check_uses_the_hubs_ca_bundle(healthy_env, nfs_port, ceph_site, capsys) -> None:
    """The doctor checks the RGW with the bundle the hub and the notebooks use (the admin's CA
    ConfigMap, VALERIA_CA_BUNDLE), not certifi's: a private CA must not make a false FAIL."""
    env = {**healthy_env, "VALERIA_S3_ENDPOINT": ceph_site.endpoint, "VALERIA_CA_BUNDLE": ceph_site.ca_bundle}
    code, checks, text = run_doctor(env, nfs_port, capsys, "--only", "s3")
    assert code == 0 and checks["s3"].startswith("OK"), text
    # a notebook-image path the hub does not have: still the hub's bundle, not certifi
    env["VALERIA_S3_CA_BUNDLE"] = "/opt/conda/ssl/not-on-the-hub.pem"
    code, checks, text = run_doctor(env, nfs_port, capsys, "--only", "s3")
    assert code == 0 and checks["s3"].startswith("OK"), text
    # without the bundle the throwaway CA is unknown: TLS fails, and the hint names the ConfigMap
    env.pop("VALERIA_CA_BUNDLE")
    env.pop("VALERIA_S3_CA_BUNDLE")
    code, checks, text = run_doctor(env, nfs_port, capsys, "--only", "s3")
    assert code == 1 and "TLS" in checks["s3"] and "CA_BUNDLE_CONFIGMAP" in text, text
