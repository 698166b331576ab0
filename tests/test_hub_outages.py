"""A lecture while Vault or Keycloak is slow or briefly down. A TCP proxy (valeria_platform.tcpproxy)
sits in front of each, on loopback: it adds latency or refuses connections, the services themselves
are untouched. Spawns that cannot get their identity are refused with the clear message and within
the configured timeout (every request here has a bound), the others succeed, and the hub recovers
by itself when the service is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from valeria_platform.oidc import OIDCProvider
from valeria_platform.openbao import OpenBao, configure_vault, write_user_secrets
from valeria_platform.tcpproxy import TcpProxy

from tests.fixtures.hub import (
    RunningHub,
    hub_api,
    hub_base_env,
    hub_login,
    singleuser_processes,
    start_hub,
    wait_server,
)
from tests.fixtures.services import OIDC_CLIENT_ID, VAULT_USERS, test_users

pytestmark = pytest.mark.hub

VAULT_DOWN = "The secrets service (Vault) is not answering"
KEYCLOAK_DOWN = "The login service (Keycloak) is not reachable"
ACCESS_TTL = 60


@dataclass
class Outages:
    hub: RunningHub
    oidc: OIDCProvider
    keycloak: TcpProxy
    vault: TcpProxy


@pytest.fixture(scope="module")
def outages(tmp_path_factory) -> Iterator[Outages]:
    """Realm and OpenBao of their own, each behind a proxy; a hub that refreshes before every spawn."""
    workdir = tmp_path_factory.mktemp("outages")
    keycloak = TcpProxy().start()
    vault_proxy = TcpProxy().start()
    # access tokens live a minute: the Keycloak test waits for one to expire during the outage
    oidc = OIDCProvider(
        users=test_users(), workdir=workdir / "oidc", public_base=keycloak.url, access_token_ttl=ACCESS_TTL
    )
    bao = OpenBao(workdir=workdir / "openbao")
    hub = None
    try:
        oidc.start()
        keycloak.target_port = oidc.port
        bao.start()
        vault_proxy.target_port = bao.port
        configure_vault(bao, oidc.issuer, audience=OIDC_CLIENT_ID)
        subjects = oidc.subjects()  # Vault paths follow the immutable OIDC subject
        for user, (uid, gid, groups, access, secret) in VAULT_USERS.items():
            write_user_secrets(bao, subjects[user], access, secret, uid, gid, groups)
        env = hub_base_env(
            oidc,
            bao,
            workdir,
            VALERIA_VAULT_ADDR=vault_proxy.url,
            VALERIA_VAULT_TIMEOUT="1",
            VALERIA_VAULT_RETRIES="1",
            # every spawn refreshes the access token first: Keycloak is on the spawn path
            VALERIA_TOKEN_REFRESH_MARGIN=str(oidc.access_token_ttl),
            # and every request a second after the last refresh does too
            VALERIA_AUTH_REFRESH_AGE="1",
        )
        # a lecture's notebook servers start slowly on a loaded machine (measured: > 30 s, the
        # JupyterHub default, with 50 starting at once): VALERIA_HTTP_TIMEOUT's default, 120 s
        hub = start_hub(workdir, env, name="hub-outages", args=["--Spawner.http_timeout=120"])
        yield Outages(hub, oidc, keycloak, vault_proxy)
    finally:
        if hub is not None:
            hub.stop()
        for service in (vault_proxy, keycloak, bao, oidc):
            service.stop()


def spawn(o: Outages, session, user: str):
    return hub_api(o.hub, session, "POST", f"/users/{user}/server")


def assert_refused(o: Outages, session, user: str, message: str) -> None:
    """The spawn is refused with a 503 naming the service (within the request's bound), nothing runs."""
    r = spawn(o, session, user)
    assert r.status_code == 503 and message in r.json()["message"], r.text
    assert singleuser_processes(o.hub, user) == []


def stop(o: Outages, session, user: str) -> None:
    assert hub_api(o.hub, session, "DELETE", f"/users/{user}/server").status_code in (202, 204)
    wait_server(o.hub, session, ready=False)


def test_vault_slow_or_down_refuses_spawns_clearly_and_recovers(outages: Outages):
    o = outages
    alice, _ = hub_login(o.hub, o.oidc, "alice")
    bob, _ = hub_login(o.hub, o.oidc, "bob")
    assert spawn(o, alice, "alice").status_code in (201, 202)  # before the incident
    wait_server(o.hub, alice, ready=True)

    o.vault.latency = 2.0  # slower than VALERIA_VAULT_TIMEOUT: every call times out
    try:
        assert_refused(o, bob, "bob", VAULT_DOWN)
    finally:
        o.vault.latency = 0.0
    o.vault.down()
    try:
        assert_refused(o, bob, "bob", VAULT_DOWN)
    finally:
        o.vault.up()

    # back: the same user spawns without any action on the hub; alice was never disturbed
    assert spawn(o, bob, "bob").status_code in (201, 202)
    wait_server(o.hub, bob, ready=True)
    assert hub_api(o.hub, alice, "GET", "/user").json()["servers"][""]["ready"] is True
    for session, user in ((alice, "alice"), (bob, "bob")):
        stop(o, session, user)
    secret = VAULT_USERS["bob"][4]
    assert secret not in o.hub.log_text()


def test_keycloak_slow_or_down_refuses_spawns_clearly_and_recovers(outages: Outages):
    o = outages
    alice, _ = hub_login(o.hub, o.oidc, "alice")
    before = o.keycloak.total("/realms/valeria/protocol/openid-connect/token")

    o.keycloak.latency = 2.0  # slow but within the hub's 10 s request timeout: the spawn works
    try:
        assert spawn(o, alice, "alice").status_code in (201, 202)
        wait_server(o.hub, alice, ready=True)
    finally:
        o.keycloak.latency = 0.0
    # the token was refreshed through the slow realm
    assert o.keycloak.total("/realms/valeria/protocol/openid-connect/token") > before
    stop(o, alice, "alice")

    o.keycloak.down()
    down_at = time.monotonic()
    try:
        # the access token is still valid: the user goes on with it, the refresh is retried later
        time.sleep(1.5)  # past auth_refresh_age: this request tries to refresh
        assert hub_api(o.hub, alice, "GET", "/user").status_code == 200
        assert spawn(o, alice, "alice").status_code in (201, 202)  # Vault takes the valid token
        wait_server(o.hub, alice, ready=True)
        stop(o, alice, "alice")
        # once it has expired: spawns are refused clearly, and a request that needs a refresh says
        # the service is down; the user is not logged out
        time.sleep(max(0.0, down_at + ACCESS_TTL + 1 - time.monotonic()))
        assert_refused(o, alice, "alice", KEYCLOAK_DOWN)
        r = hub_api(o.hub, alice, "GET", "/user")
        assert r.status_code == 503 and KEYCLOAK_DOWN in r.json()["message"], r.text
    finally:
        o.keycloak.up()
    assert hub_api(o.hub, alice, "GET", "/user").status_code == 200

    assert spawn(o, alice, "alice").status_code in (201, 202)
    wait_server(o.hub, alice, ready=True)
    stop(o, alice, "alice")
