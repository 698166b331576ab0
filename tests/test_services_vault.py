"""OpenBao configured by the admin's script: JWT login with the user's own Keycloak access token
(never an ID token), and a policy that lets each user read only the secrets under their own
subject (`sub`), whatever their username."""

from __future__ import annotations

import subprocess

import hvac
import hvac.exceptions
import jwt
import pytest
from valeria_platform.oidc import OIDCProvider
from valeria_platform.openbao import (
    JWT_MOUNT,
    KV_MOUNT,
    VAULT_SCRIPTS,
    OpenBao,
    configure_vault,
    run_vault_script,
)
from valeria_platform.procs import ServiceError

from tests.fixtures.services import HUB_CALLBACK, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, VAULT_USERS


def _access_token(provider: OIDCProvider, user: str) -> str:
    return provider.login(user, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, HUB_CALLBACK)["access_token"]


def _vault_login(vault: OpenBao, token: str) -> hvac.Client:
    client = hvac.Client(url=vault.addr, timeout=10)
    client.auth.jwt.jwt_login(role="jupyterhub", jwt=token, path=JWT_MOUNT)
    return client


def _home(provider: OIDCProvider, user: str) -> str:
    """The user's KV folder: named after their `sub` (a UUID), not their username."""
    return f"valeria/users/{provider.subjects()[user]}"


def _read(client: hvac.Client, path: str) -> dict:
    return client.secrets.kv.v2.read_secret_version(
        path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True
    )["data"]["data"]


def test_jwt_login_reads_own_secrets(openbao: OpenBao, oidc_provider: OIDCProvider) -> None:
    client = _vault_login(openbao, _access_token(oidc_provider, "alice"))
    uid, gid, groups, access, secret = VAULT_USERS["alice"]
    home = _home(oidc_provider, "alice")
    assert _read(client, f"{home}/s3") == {"access_key": access, "secret_key": secret}
    assert _read(client, f"{home}/posix") == {
        "uid": str(uid),
        "gid": str(gid),
        "groups": ",".join(map(str, groups)),
    }
    me = client.auth.token.lookup_self()["data"]
    assert sorted(me["policies"]) == ["default", "valeria-user"]  # default: lookup/renew/revoke-self
    assert me["meta"]["role"] == "jupyterhub"


def test_a_user_cannot_read_another_users_secrets(openbao: OpenBao, oidc_provider: OIDCProvider) -> None:
    alice = _vault_login(openbao, _access_token(oidc_provider, "alice"))
    alice_home, bob_home = _home(oidc_provider, "alice"), _home(oidc_provider, "bob")
    for path in (f"{bob_home}/s3", f"{bob_home}/posix", "valeria/users/bob/s3", "valeria/users/alice/s3"):
        with pytest.raises(hvac.exceptions.Forbidden):
            _read(alice, path)
    # nor list who else has secrets, nor write her own
    with pytest.raises(hvac.exceptions.Forbidden):
        alice.secrets.kv.v2.list_secrets(path="valeria/users", mount_point=KV_MOUNT)
    with pytest.raises(hvac.exceptions.Forbidden):
        alice.secrets.kv.v2.create_or_update_secret(
            path=f"{alice_home}/posix", secret={"uid": "0"}, mount_point=KV_MOUNT
        )
    bob = _vault_login(openbao, _access_token(oidc_provider, "bob"))
    assert _read(bob, f"{bob_home}/s3")["access_key"] == VAULT_USERS["bob"][3]
    with pytest.raises(hvac.exceptions.Forbidden):
        _read(bob, f"{alice_home}/s3")


def test_forged_and_foreign_tokens_are_refused(openbao: OpenBao, oidc_provider: OIDCProvider) -> None:
    token = _access_token(oidc_provider, "alice")
    header, _, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["sub"] = oidc_provider.subjects()["bob"]
    forged = f"{header}.{jwt.utils.base64url_encode(jwt.api_jws.json.dumps(claims).encode()).decode()}.{sig}"
    with pytest.raises((hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden)):
        _vault_login(openbao, forged)
    # a token of the same realm issued to another client (audience) is refused too
    cb = "http://127.0.0.1:18124/cb"
    oidc_provider.add_client("not-the-hub", "nth-secret", [cb])
    other = oidc_provider.login("alice", "not-the-hub", "nth-secret", cb)["access_token"]
    with pytest.raises((hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden)):
        _vault_login(openbao, other)


def test_id_token_is_refused(openbao: OpenBao, oidc_provider: OIDCProvider) -> None:
    """An ID token (same issuer, `aud` = the hub's client) is not an access token: the logout
    redirect puts it in the browser's URL (`id_token_hint`), so it must not open Vault."""
    tokens = oidc_provider.login("alice", OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, HUB_CALLBACK)
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["aud"] == OIDC_CLIENT_ID and claims.get("typ") != "Bearer"
    with pytest.raises((hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden)) as refused:
        _vault_login(openbao, tokens["id_token"])
    assert "typ" in str(refused.value) or "claim" in str(refused.value)
    _vault_login(openbao, tokens["access_token"])  # the access token of the same login works


def test_configure_script_is_idempotent(openbao: OpenBao, oidc_provider: OIDCProvider) -> None:
    out = configure_vault(openbao, oidc_provider.issuer, audience=OIDC_CLIENT_ID)
    assert "done" in out
    policy = openbao.client().sys.read_policy("valeria-user")["data"]["rules"]
    assert policy.count("path ") == 1 and "{{identity.entity.aliases." in policy
    # still works for alice after a re-run
    client = _vault_login(openbao, _access_token(oidc_provider, "alice"))
    assert _read(client, f"{_home(oidc_provider, 'alice')}/s3")["access_key"] == VAULT_USERS["alice"][3]


@pytest.mark.parametrize(
    "args",
    [
        ["root", "0", "0"],
        ["alice", "1001", "0"],
        ["../bob", "1001", "1001"],
        ["alice", "10x", "1001"],
        ["alice", "1001", "1001", "1001,0"],
    ],
)
def test_put_user_secrets_refuses_bad_input(openbao: OpenBao, args: list[str]) -> None:
    with pytest.raises(ServiceError):
        run_vault_script(openbao, "put-user-secrets.sh", args=args, env={"S3_ACCESS_KEY": "AK"}, stdin="sk\n")


def test_secrets_stay_out_of_logs_and_command_lines(openbao: OpenBao) -> None:
    log = openbao.log_path.read_text()
    assert "Root Token" in log and openbao.root_token not in log
    cmdline = open(f"/proc/{openbao.pid}/cmdline", "rb").read().decode()
    assert openbao.root_token not in cmdline
    # put-user-secrets reads the S3 secret from stdin: `ps` never shows it
    secret = "very-secret-value-123"
    run_vault_script(
        openbao,
        "put-user-secrets.sh",
        args=["dave", "1010", "1010"],
        env={"S3_ACCESS_KEY": "AKDAVE"},
        stdin=secret + "\n",
    )
    data = openbao.client().secrets.kv.v2.read_secret_version(
        path="valeria/users/dave/s3", mount_point=KV_MOUNT, raise_on_deleted_version=True
    )["data"]["data"]
    assert data == {"access_key": "AKDAVE", "secret_key": secret}
    assert subprocess.run(["bash", "-n", str(VAULT_SCRIPTS / "configure-vault.sh")]).returncode == 0
