"""The spawn pipeline against a real OpenBao (JWT auth trusting the local OIDC realm) with real
user tokens: the right identity on success, and a clear refusal, without secrets, on every failure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading

import pytest
from valeria_hub.errors import SpawnRefused, VaultError
from valeria_hub.pipeline import plan_spawn
from valeria_hub.settings import HubSettings
from valeria_hub.vault import VaultClient
from valeria_platform.openbao import JWT_MOUNT, KV_MOUNT

from tests.fixtures.hub import hub_env
from tests.fixtures.services import HUB_CALLBACK, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, VAULT_USERS

pytestmark = pytest.mark.hub

CASE_SECRET = "case-secret-DO-NOT-LEAK"
GOOD_S3 = {"access_key": "A", "secret_key": CASE_SECRET}


#: alice's `sub`, set by the alice_token fixture (write_case needs it)
ALICE_SUB: list[str] = []


@pytest.fixture(scope="module")
def alice_token(oidc_provider) -> dict:
    tokens = oidc_provider.login("alice", OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, HUB_CALLBACK)
    ALICE_SUB[:] = [subject_of(tokens)]
    return tokens


def settings_for(openbao, **overrides) -> HubSettings:
    env = hub_env(
        VALERIA_VAULT_ADDR=openbao.addr,
        VALERIA_VAULT_TIMEOUT="2",
        VALERIA_VAULT_RETRIES="1",
        VALERIA_UID_MIN="1000",
        VALERIA_UID_MAX="60000",
    )
    env.update(overrides)
    return HubSettings.from_env(env)


def subject_of(tokens: dict) -> str:
    """The token's `sub`, read without checking anything (tests also pass broken tokens)."""
    try:
        payload = tokens["access_token"].split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    except (IndexError, ValueError, KeyError):
        return "no-subject"


def auth_state(tokens: dict, sub: str | None = None) -> dict:
    sub = sub or subject_of(tokens)
    return {"access_token": tokens["access_token"], "oauth_user": {"sub": sub, "preferred_username": "alice"}}


async def run(settings, tokens, username="alice", sub: str | None = None):
    state = auth_state(tokens, sub)

    async def source():
        return state

    return await plan_spawn(settings, VaultClient(settings), username, source)


def write_case(openbao, case: str, posix: dict | None, s3: dict | None) -> dict[str, str]:
    """Secrets for one case under alice's own subtree (her `sub`); returns the path overrides."""
    client = openbao.client()
    base = f"valeria/users/{ALICE_SUB[0]}/cases/{case}"
    if posix is not None:
        client.secrets.kv.v2.create_or_update_secret(path=f"{base}/posix", secret=posix, mount_point=KV_MOUNT)
    if s3 is not None:
        client.secrets.kv.v2.create_or_update_secret(path=f"{base}/s3", secret=s3, mount_point=KV_MOUNT)
    return {
        "VALERIA_VAULT_IDENTITY_PATH": "valeria/users/{sub}/cases/" + case + "/posix",
        "VALERIA_VAULT_S3_PATH": "valeria/users/{sub}/cases/" + case + "/s3",
    }


def vault_token_count(openbao) -> int:
    """Live tokens of the JWT mount (to prove the pipeline revokes what it logs in with)."""
    client = openbao.client()
    keys = client.adapter.request("LIST", "/v1/auth/token/accessors").get("data", {}).get("keys", [])
    count = 0
    for accessor in keys:
        info = client.auth.token.lookup_accessor(accessor)["data"]
        count += info.get("path", "").startswith(f"auth/{JWT_MOUNT}/")
    return count


async def test_alice_gets_her_identity_and_token_is_revoked(openbao, alice_token):
    uid, gid, groups, access, secret = VAULT_USERS["alice"]
    before = vault_token_count(openbao)
    plan = await run(settings_for(openbao), alice_token)
    assert (plan.uid, plan.gid, list(plan.supplemental_gids)) == (uid, gid, groups)
    assert plan.secret_env["AWS_ACCESS_KEY_ID"] == access
    assert plan.secret_env["AWS_SECRET_ACCESS_KEY"] == secret
    assert vault_token_count(openbao) == before  # logged in, read, revoked


async def test_alice_token_cannot_read_bob(openbao, oidc_provider, alice_token):
    settings = settings_for(openbao)
    vault = VaultClient(settings)
    bob_sub = oidc_provider.subjects()["bob"]
    client = await vault.login(alice_token["access_token"])
    try:
        for path in (f"valeria/users/{bob_sub}/s3", "valeria/users/bob/s3", "valeria/users/alice/s3"):
            with pytest.raises(VaultError) as info:
                await vault.read(client, path)
            assert info.value.reason == "forbidden"
        own = await vault.read(client, f"valeria/users/{subject_of(alice_token)}/s3")
        assert own["access_key"] == VAULT_USERS["alice"][3]
    finally:
        await vault.revoke(client)
    # and the subject in the path cannot be forged: bob's subject in the hub's state, alice's token
    with pytest.raises(SpawnRefused) as info:
        await run(settings, alice_token, username="bob", sub=bob_sub)
    assert info.value.reason == "forbidden"


@pytest.mark.parametrize(
    "case, posix, s3, reason",
    [
        ("uid0", {"uid": 0, "gid": 1001}, GOOD_S3, "uid-zero"),
        ("gid0", {"uid": 1001, "gid": "0"}, GOOD_S3, "uid-zero"),
        ("low", {"uid": 999, "gid": 1001}, GOOD_S3, "uid-range"),
        ("high", {"uid": 60001, "gid": 1001}, GOOD_S3, "uid-range"),
        ("text", {"uid": "alice", "gid": 1001}, GOOD_S3, "malformed"),
        (
            "groups",
            {"uid": 1001, "gid": 1001, "groups": "1001,x"},
            GOOD_S3,
            "malformed",
        ),
        ("nouid", {"gid": 1001}, GOOD_S3, "missing"),
        ("nokey", {"uid": 1001, "gid": 1001}, {"access_key": "A"}, "missing"),
        (
            "badkey",
            {"uid": 1001, "gid": 1001},
            {**GOOD_S3, "secret_key": CASE_SECRET + " x"},
            "malformed",
        ),
        ("nos3", {"uid": 1001, "gid": 1001}, None, "missing"),
        ("noposix", None, GOOD_S3, "missing"),
    ],
)
async def test_bad_vault_values_refuse_the_spawn(openbao, alice_token, caplog, case, posix, s3, reason):
    caplog.set_level(logging.DEBUG)
    settings = settings_for(openbao, **write_case(openbao, case, posix, s3))
    with pytest.raises(SpawnRefused) as info:
        await run(settings, alice_token)
    assert info.value.reason == reason
    assert info.value.status_code == 403
    for text in (str(info.value), info.value.jupyterhub_message, caplog.text):
        assert CASE_SECRET not in text and alice_token["access_token"] not in text


async def test_vault_policy_403(openbao, alice_token, caplog):
    settings = settings_for(openbao, VALERIA_VAULT_IDENTITY_PATH="valeria/admin/{username}/posix")
    with pytest.raises(VaultError) as info:
        await run(settings, alice_token)
    assert info.value.reason == "forbidden" and info.value.status_code == 403
    assert "refused access" in str(info.value)
    assert alice_token["access_token"] not in caplog.text


async def test_vault_wrong_role_rejected(openbao, alice_token):
    with pytest.raises(VaultError) as info:
        await run(settings_for(openbao, VALERIA_VAULT_ROLE="no-such-role"), alice_token)
    assert info.value.reason in ("rejected", "forbidden")


async def test_forged_token_rejected(openbao, alice_token):
    header, payload, signature = alice_token["access_token"].split(".")
    forged = {"access_token": f"{header}.{payload}.{signature[::-1]}"}
    with pytest.raises(VaultError) as info:
        await run(settings_for(openbao), forged)
    assert info.value.reason in ("rejected", "forbidden")


async def test_no_token_means_log_in_again(openbao):
    with pytest.raises(SpawnRefused) as info:
        await run(settings_for(openbao), {"access_token": ""})
    assert info.value.reason == "login-expired"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_vault_down(alice_token, caplog):
    settings = HubSettings.from_env(
        hub_env(VALERIA_VAULT_ADDR=f"http://127.0.0.1:{_closed_port()}", VALERIA_VAULT_RETRIES="2")
    )
    with pytest.raises(VaultError) as info:
        await run(settings, alice_token)
    assert info.value.reason == "unavailable" and info.value.status_code == 503
    assert "not answering" in str(info.value)
    assert caplog.text.count("Vault login failed") == 3  # 1 try + 2 bounded retries, then give up


class Tarpit:
    """A real TCP server on loopback that accepts and never answers (a hung Vault)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


async def test_vault_hung_times_out_without_blocking_the_loop(alice_token, caplog):
    tarpit = Tarpit()
    try:
        settings = HubSettings.from_env(
            hub_env(
                VALERIA_VAULT_ADDR=f"http://127.0.0.1:{tarpit.port}",
                VALERIA_VAULT_TIMEOUT="0.5",
                VALERIA_VAULT_RETRIES="1",
            )
        )
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        with pytest.raises(VaultError) as info:
            await run(settings, alice_token)
        task.cancel()
        assert info.value.reason == "unavailable"
        assert len(tarpit.conns) == 2  # one try and one retry, each abandoned after its timeout
        assert ticks >= 10  # the event loop kept running while hvac waited in a thread
    finally:
        tarpit.close()


def test_kv_path_templates():
    from valeria_hub.vault import kv_path

    assert kv_path("valeria/users/{username}/s3", "alice", None) == "valeria/users/alice/s3"
    assert kv_path("valeria/by-sub/{sub}/s3", "alice", "2f6c-uuid") == "valeria/by-sub/2f6c-uuid/s3"
    for bad in (None, "", "../bob", "a/b", ".."):
        with pytest.raises(VaultError):
            kv_path("valeria/by-sub/{sub}/s3", "alice", bad)


async def test_approle_auth_alternative(openbao, oidc_provider):
    """AppRole: the hub's own credential (a policy over all users' paths), instead of the user's JWT."""
    root = openbao.client()
    mount = "approle-hubtest"
    if f"{mount}/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle", path=mount)
    root.sys.create_or_update_policy(
        "valeria-hub-approle-test", f'path "{KV_MOUNT}/data/valeria/users/*" {{ capabilities = ["read"] }}'
    )
    root.auth.approle.create_or_update_approle(
        "hub", token_policies=["valeria-hub-approle-test"], token_ttl="5m", mount_point=mount
    )
    role_id = root.auth.approle.read_role_id("hub", mount_point=mount)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("hub", mount_point=mount)["data"]["secret_id"]
    settings = settings_for(
        openbao,
        VALERIA_VAULT_AUTH="approle",
        VALERIA_VAULT_AUTH_MOUNT=mount,
        VALERIA_VAULT_APPROLE_ROLE_ID=role_id,
        VALERIA_VAULT_APPROLE_SECRET_ID=secret_id,
    )
    assert secret_id not in repr(settings)

    async def no_user_token():
        return {"access_token": "unused-by-approle", "oauth_user": {"sub": oidc_provider.subjects()["bob"]}}

    plan = await plan_spawn(settings, VaultClient(settings), "bob", no_user_token)
    assert plan.uid == VAULT_USERS["bob"][0]
    bad = settings_for(
        openbao,
        VALERIA_VAULT_AUTH="approle",
        VALERIA_VAULT_AUTH_MOUNT=mount,
        VALERIA_VAULT_APPROLE_ROLE_ID=role_id,
        VALERIA_VAULT_APPROLE_SECRET_ID="wrong-" + secret_id,
    )
    with pytest.raises(VaultError) as info:
        await plan_spawn(bad, VaultClient(bad), "bob", no_user_token)
    assert secret_id not in str(info.value)


async def test_kubernetes_auth_without_service_account_token(openbao, tmp_path):
    # no Kubernetes API can run here for Vault's TokenReview: only the hub-side failure is tested
    settings = settings_for(
        openbao, VALERIA_VAULT_AUTH="kubernetes", VALERIA_VAULT_KUBE_TOKEN_PATH=str(tmp_path / "absent")
    )
    with pytest.raises(VaultError) as info:
        await run(settings, {"access_token": "x"})
    assert info.value.reason == "no-token"
