"""Spawning through the real hub (local spawner): the Vault-driven plan on success, a refusal with a
clear message and no server on every failure, token refresh before the spawn, and re-login when the
refresh token is revoked. Ends with a grep of the hub's log for every secret the session handled."""

from __future__ import annotations

import os

import pytest
import requests
from valeria_platform.openbao import KV_MOUNT, write_user_secrets

from tests.fixtures.hub import (
    RunningHub,
    hub_api,
    hub_base_env,
    hub_login,
    singleuser_processes,
    start_hub,
    wait_server,
)
from tests.fixtures.services import VAULT_USERS

pytestmark = pytest.mark.hub

SEEN_TOKENS: list[str] = []


def remember_tokens(hub: RunningHub, username: str) -> dict:
    state = hub.auth_state(username) or {}
    SEEN_TOKENS.extend(t for t in (state.get("access_token"), state.get("refresh_token")) if t)
    return state


def test_spawn_applies_vault_plan_after_refreshing_the_token(hub, oidc_provider):
    uid, gid, groups, access, secret = VAULT_USERS["alice"]
    session, r = hub_login(hub, oidc_provider, "alice")
    assert r.status_code == 200
    before = remember_tokens(hub, "alice")
    r = hub_api(hub, session, "POST", "/users/alice/server")
    assert r.status_code in (201, 202), r.text
    wait_server(hub, session, ready=True)
    after = remember_tokens(hub, "alice")
    # the token was about to expire (margin = lifetime): refreshed with the refresh-token grant
    assert after["access_token"] != before["access_token"]
    (proc,) = singleuser_processes(hub, "alice")
    env = proc.environ()
    assert env["AWS_ACCESS_KEY_ID"] == access and env["AWS_SECRET_ACCESS_KEY"] == secret
    home = hub.env["VALERIA_LOCAL_ROOT"] + "/alice/home"
    assert env["HOME"] == home and env["JUPYTERHUB_ROOT_DIR"] == home
    assert os.path.isdir(home) and os.stat(home).st_mode & 0o777 == 0o700
    assert env["VALERIA_SCRATCH_DIR"] == hub.env["VALERIA_LOCAL_ROOT"] + "/alice/scratch"
    assert env["AWS_ENDPOINT_URL_S3"] == hub.env["VALERIA_S3_ENDPOINT"]
    assert "PGPASSWORD" not in env and "VALERIA_OIDC_CLIENT_SECRET" not in env
    assert "runs as the hub's own uid" in hub.log_text() and f"uid {uid} / gid {gid}" in hub.log_text()
    r = hub_api(hub, session, "DELETE", "/users/alice/server")
    assert r.status_code in (202, 204)
    wait_server(hub, session, ready=False)


@pytest.mark.parametrize(
    "uid, message",
    [(0, "outside the allowed range"), (70000, "outside the allowed range")],
)
def test_bad_uid_in_vault_refuses_spawn_through_the_hub(hub, oidc_provider, openbao, uid, message):
    _, gid, groups, access, secret = VAULT_USERS["bob"]
    session, r = hub_login(hub, oidc_provider, "bob")
    assert r.status_code == 200
    bob_sub = oidc_provider.subjects()["bob"]
    client = openbao.client()
    client.secrets.kv.v2.create_or_update_secret(
        path=f"valeria/users/{bob_sub}/posix", secret={"uid": str(uid), "gid": str(gid)}, mount_point=KV_MOUNT
    )
    try:
        r = hub_api(hub, session, "POST", "/users/bob/server")
        assert r.status_code == 403, r.text
        assert message in r.json()["message"]
        assert secret not in r.text
        assert not hub.server_started("bob") and singleuser_processes(hub, "bob") == []
        # the spawn page tells the user too
        page = session.get(f"{hub.url}/hub/spawn", timeout=30)
        assert page.status_code == 403 and message in page.text and secret not in page.text
        assert not hub.server_started("bob") and singleuser_processes(hub, "bob") == []
    finally:
        write_user_secrets(openbao, bob_sub, access, secret, 1002, gid, groups)
    remember_tokens(hub, "bob")


def test_missing_secret_refuses_spawn_through_the_hub(hub, oidc_provider, openbao):
    _, gid, groups, access, secret = VAULT_USERS["bob"]
    session, r = hub_login(hub, oidc_provider, "bob")
    bob_sub = oidc_provider.subjects()["bob"]
    client = openbao.client()
    client.secrets.kv.v2.delete_metadata_and_all_versions(
        path=f"valeria/users/{bob_sub}/s3", mount_point=KV_MOUNT
    )
    try:
        r = hub_api(hub, session, "POST", "/users/bob/server")
        assert r.status_code == 403, r.text
        assert "missing" in r.json()["message"]
        assert not hub.server_started("bob") and singleuser_processes(hub, "bob") == []
    finally:
        write_user_secrets(openbao, bob_sub, access, secret, 1002, gid, groups)


def test_revoked_refresh_token_forces_new_login(hub, oidc_provider):
    session, r = hub_login(hub, oidc_provider, "alice")
    assert r.status_code == 200
    remember_tokens(hub, "alice")
    oidc_provider.revoke_user("alice")  # the admin ends every session and grant of alice
    r = hub_api(hub, session, "POST", "/users/alice/server")
    assert r.status_code == 403 and "login again" in r.json()["message"]
    assert not hub.server_started("alice") and singleuser_processes(hub, "alice") == []
    # in the browser, the spawn page says so too, and no server starts
    r = session.get(f"{hub.url}/hub/spawn", allow_redirects=False, timeout=30)
    assert r.status_code == 403 and "login again" in r.text
    assert not hub.server_started("alice") and singleuser_processes(hub, "alice") == []
    # logging in again needs the password: the realm session was ended with the grant
    r = session.get(f"{hub.url}/hub/oauth_login", timeout=30)
    assert 'id="kc-form-login"' in r.text
    session2, r = hub_login(hub, oidc_provider, "alice")
    assert r.status_code == 200 and hub_api(hub, session2, "GET", "/user").json()["name"] == "alice"
    remember_tokens(hub, "alice")


def test_logout_ends_the_keycloak_session(hub, oidc_provider):
    session, r = hub_login(hub, oidc_provider, "alice")
    state = remember_tokens(hub, "alice")
    r = session.get(f"{hub.url}/hub/logout", allow_redirects=False, timeout=30)
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(oidc_provider.endpoint("logout"))
    assert "id_token_hint=" + state["id_token"] in location
    # the realm's logout confirmation, as the browser submits it
    r = session.get(location, timeout=30)
    import re
    from urllib.parse import urljoin

    form = re.search(r'<form[^>]*id="op.logoutForm"[^>]*action="([^"]+)"', r.text) or re.search(
        r'<form[^>]*action="([^"]+)"[^>]*id="op.logoutForm"', r.text
    )
    assert form, r.text[:500]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', r.text))
    r = session.post(urljoin(r.url, form.group(1)), data={**fields, "logout": "yes"}, timeout=30)
    assert r.url.startswith(f"{hub.url}/hub/login")
    assert hub_api(hub, session, "GET", "/user").status_code == 403
    # the stored tokens are gone too; only the subject stays, binding the name to the account
    assert hub.auth_state("alice") == {"sub": oidc_provider.subjects()["alice"]}
    # the Keycloak session is over: logging in again asks for the password
    r = session.get(f"{hub.url}/hub/oauth_login", timeout=30)
    assert 'id="kc-form-login"' in r.text


def test_keycloak_down_at_login(tmp_path, oidc_provider, openbao):
    from valeria_platform.procs import free_port

    env = hub_base_env(
        oidc_provider,
        openbao,
        tmp_path,
        VALERIA_OIDC_REALM_URL=f"http://127.0.0.1:{free_port()}/realms/valeria",
    )
    down = start_hub(tmp_path, env, name="hub-keycloak-down")
    try:
        r = requests.get(f"{down.url}/hub/oauth_login", timeout=30, allow_redirects=False)
        assert r.status_code == 503
        assert "Keycloak" in r.text and "not reachable" in r.text
    finally:
        down.stop()


def test_vault_down_refuses_spawn_through_the_hub(tmp_path, oidc_provider, openbao):
    from valeria_platform.procs import free_port

    env = hub_base_env(
        oidc_provider,
        openbao,
        tmp_path,
        VALERIA_VAULT_ADDR=f"http://127.0.0.1:{free_port()}",
        VALERIA_VAULT_TIMEOUT="1",
        VALERIA_VAULT_RETRIES="1",
    )
    down = start_hub(tmp_path, env, name="hub-vault-down")
    try:
        session, r = hub_login(down, oidc_provider, "alice")
        assert r.status_code == 200
        r = hub_api(down, session, "POST", "/users/alice/server")
        assert r.status_code == 503, r.text
        assert "Vault" in r.json()["message"] and "not answering" in r.json()["message"]
        assert hub_api(down, session, "GET", "/user").json()["servers"] == {}
        assert singleuser_processes(down, "alice") == []
        assert down.log_text().count("Vault login failed") == 2  # one try, one bounded retry
    finally:
        down.stop()


def test_no_secret_in_the_hub_log(hub):
    log = hub.log_text()
    leaked = [s for s in hub.secrets if s in log]
    leaked += [user for user, v in VAULT_USERS.items() if v[4] in log]
    leaked += [t[:12] for t in SEEN_TOKENS if t in log]
    assert leaked == []
    assert SEEN_TOKENS, "the earlier tests must have captured tokens to look for"
