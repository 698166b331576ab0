"""Keycloak hiccups during a token refresh, against the real realm behind a TCP proxy that makes it
slow or stops it (valeria_platform.tcpproxy).

oauthenticator's contract for `refresh_user`: True keeps the user, False sends them to the login
page, an auth model replaces the stored one; JupyterHub calls it at most every `auth_refresh_age`
seconds per user. A refresh that fails because Keycloak is slow or down says nothing about the user:
while the stored access token is still valid the user stays logged in and the refresh is tried again
on a later request (the bench saw a class's polls answered 503 when the realm timed out under load).
Only an expired token whose refresh fails is a 503, and a refused refresh token is a new login.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from valeria_platform.tcpproxy import TcpProxy

from tests.test_hub_auth import StoredUser, login_state, make_authenticator

pytestmark = pytest.mark.hub


def through(proxy: TcpProxy, url: str) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))


@pytest.fixture
def realm_proxy(oidc_provider):
    proxy = TcpProxy(oidc_provider.port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


async def test_refresh_timeout_keeps_a_still_valid_token(oidc_provider, realm_proxy, caplog):
    auth = make_authenticator(oidc_provider.issuer, margin=60)
    auth.http_request_kwargs = {"connect_timeout": 1.0, "request_timeout": 1.0}
    model = await login_state(auth, oidc_provider, "alice")
    state = {**model["auth_state"], "expires_at": time.time() + 30}  # due for a refresh, still valid
    user = StoredUser("alice", dict(state))
    auth.token_url = through(realm_proxy, auth.token_url)
    realm_proxy.latency = 3.0  # Keycloak answers after the hub's request timeout
    caplog.set_level(logging.WARNING)
    auth.log.propagate = True
    assert await auth.refresh_user(user) is True  # still logged in, with the token it has
    assert user.state == state and user.saves == 0
    assert "alice" in caplog.text and "retried" in caplog.text
    # Keycloak stopped (connection refused): the same
    realm_proxy.latency = 0.0
    realm_proxy.down()
    assert await auth.refresh_user(user) is True
    assert user.state == state
    # Keycloak back: the next refresh is a real grant, and the refresh token was never spent
    realm_proxy.up()
    refreshed = await auth.refresh_user(user)
    assert isinstance(refreshed, dict) and refreshed["name"] == "alice"
    assert refreshed["auth_state"]["access_token"] != state["access_token"]


async def test_refresh_failure_with_an_expired_token_is_a_503(oidc_provider, realm_proxy):
    auth = make_authenticator(oidc_provider.issuer, margin=60)
    model = await login_state(auth, oidc_provider, "alice")
    user = StoredUser("alice", {**model["auth_state"], "expires_at": time.time() - 1})
    auth.token_url = through(realm_proxy, auth.token_url)
    realm_proxy.down()
    with pytest.raises(web.HTTPError) as info:
        await auth.refresh_user(user)
    assert info.value.status_code == 503


async def test_refused_refresh_token_is_a_logout_even_with_a_valid_token(oidc_provider):
    auth = make_authenticator(oidc_provider.issuer, margin=60)
    model = await login_state(auth, oidc_provider, "bob")
    oidc_provider.revoke_user("bob")  # 400 invalid_grant: the session is over
    user = StoredUser("bob", {**model["auth_state"], "expires_at": time.time() + 30})
    assert await auth.refresh_user(user) is False


async def test_spawn_does_not_refresh_a_token_that_was_just_refreshed(oidc_provider):
    """JupyterHub refreshes before a spawn (`refresh_pre_spawn`), then the pipeline asks for a token
    for the Vault login: a token valid for minutes needs no second grant (two per spawn before)."""
    auth = make_authenticator(oidc_provider.issuer, margin=300)  # every token is "due": always refresh
    model = await login_state(auth, oidc_provider, "alice")
    user = StoredUser("alice", dict(model["auth_state"]))
    refreshed = await auth.refresh_user(user)  # the pre-spawn refresh: one grant
    assert isinstance(refreshed, dict)
    token = user.state["access_token"]
    assert token == refreshed["auth_state"]["access_token"]
    assert (await auth.fresh_auth_state(user))["access_token"] == token  # no second grant
    # a token about to expire is still refreshed for the spawn
    user.state["expires_at"] = time.time() + auth.spawn_token_validity - 5
    assert (await auth.fresh_auth_state(user))["access_token"] != token


async def test_spawn_goes_on_with_a_valid_token_when_keycloak_hiccups(oidc_provider, realm_proxy):
    auth = make_authenticator(oidc_provider.issuer, margin=60)
    model = await login_state(auth, oidc_provider, "alice")
    state = {**model["auth_state"], "expires_at": time.time() + auth.spawn_token_validity - 5}
    user = StoredUser("alice", dict(state))
    auth.token_url = through(realm_proxy, auth.token_url)
    realm_proxy.down()
    assert (await auth.fresh_auth_state(user))["access_token"] == state["access_token"]


def test_refresh_moments_are_spread_over_the_jitter_window():
    """A class that logged in in the same minute holds tokens expiring in the same minute: each
    token gets its own point in [margin, margin + jitter] seconds before expiry, stable per token."""
    from valeria_hub.auth import KeycloakAuthenticator

    auth = KeycloakAuthenticator(refresh_margin=60, refresh_jitter=60)
    expires_at = time.time() + 90  # inside the jitter window
    states = [{"access_token": f"token-{i}", "expires_at": expires_at} for i in range(50)]
    fresh = [auth.token_is_fresh(s) for s in states]
    assert 5 < sum(fresh) < 45, fresh
    assert fresh == [auth.token_is_fresh(s) for s in states]  # the same answer on every request
    # outside the window nothing changes: past margin + jitter fresh, within the margin due
    assert all(auth.token_is_fresh({**s, "expires_at": time.time() + 130}) for s in states)
    assert not any(auth.token_is_fresh({**s, "expires_at": time.time() + 50}) for s in states)


async def test_requests_never_sent_are_retried(oidc_provider, realm_proxy):
    """A request that waited in tornado's queue past connect_timeout (here a client with a single
    connection) was never sent, so sending it again is safe, even a one-time authorization code
    (bench: 503 at the OAuth callback)."""
    auth = make_authenticator(oidc_provider.issuer, margin=60)
    auth.http_client = AsyncHTTPClient(force_instance=True, max_clients=1)
    auth.http_request_kwargs = {"connect_timeout": 0.5, "request_timeout": 10.0}
    users = []
    for name in ("alice", "bob"):
        model = await login_state(auth, oidc_provider, name)
        users.append(StoredUser(name, {**model["auth_state"], "expires_at": time.time() - 1}))
    auth.token_url = through(realm_proxy, auth.token_url)
    auth.userdata_url = through(realm_proxy, auth.userdata_url)
    realm_proxy.latency = 1.0  # each request holds the only connection for a second
    first, second = await asyncio.gather(*(auth.refresh_user(u) for u in users))
    assert isinstance(first, dict) and isinstance(second, dict), (first, second)
    assert {first["name"], second["name"]} == {"alice", "bob"}


async def test_a_class_waits_for_a_connection_instead_of_a_503(oidc_provider, realm_proxy):
    """tornado bounds the wait for one of its connections by connect_timeout (5 s): 500 students
    logging in at once waited longer and got 503 at the OAuth callback even with retries. The
    hub's own queue waits up to http_queue_timeout; connect/request timeouts count from the send."""
    auth = make_authenticator(oidc_provider.issuer, margin=60)
    auth.http_max_clients = 1
    auth.http_retries = 0
    auth.http_request_kwargs = {"connect_timeout": 0.5, "request_timeout": 10.0}
    users = []
    for name in ("alice", "bob", "alice", "bob"):
        model = await login_state(auth, oidc_provider, name)
        users.append(StoredUser(name, {**model["auth_state"], "expires_at": time.time() - 1}))
    auth.token_url = through(realm_proxy, auth.token_url)
    realm_proxy.latency = 0.5  # every request holds the only connection for half a second
    results = await asyncio.gather(*(auth.refresh_user(u) for u in users))
    assert all(isinstance(r, dict) for r in results), results


def test_a_failed_callback_never_logs_its_code():
    """tornado logs an HTTPError's request line, query string included: a 503 at the OAuth callback
    wrote the authorization code and state to the hub log (bench, Keycloak timing out). The
    request is built by tornado itself; only its connection is a stand-in (nothing is sent), and
    the method is called on the request alone (a JupyterHub handler needs a whole hub)."""
    from types import SimpleNamespace
    from unittest import mock

    from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
    from valeria_hub.auth import KeycloakAuthenticator

    request = HTTPServerRequest(
        start_line=RequestStartLine(
            "GET", "/hub/oauth_callback?code=CODE-NOT-LOGGED&state=STATE-NOT-LOGGED", "HTTP/1.1"
        ),
        headers=HTTPHeaders({"Host": "127.0.0.1:8000"}),
        connection=mock.Mock(),
    )
    summary = KeycloakAuthenticator.callback_handler._request_summary(SimpleNamespace(request=request))
    assert "/hub/oauth_callback" in summary
    assert "CODE-NOT-LOGGED" not in summary and "STATE-NOT-LOGGED" not in summary


async def test_a_connect_timeout_counts_as_never_sent():
    """tornado's message names the address ("Timeout while connecting to 127.0.0.1:port"): the
    500-login bench showed such timeouts answered 503 without the retry. A listening socket whose
    accept queue is full (nobody accepts) makes a real connect time out."""
    import socket

    from tornado.httpclient import HTTPClientError
    from valeria_hub.auth import _never_sent

    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue; later SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(full.getsockname())
            fillers.append(s)
        url = f"http://127.0.0.1:{full.getsockname()[1]}/token"
        with pytest.raises(HTTPClientError) as info:
            await AsyncHTTPClient(force_instance=True).fetch(url, connect_timeout=0.5, request_timeout=5)
        assert info.value.code == 599 and "connecting" in str(info.value)
        assert _never_sent(info.value)
    finally:
        for s in [*fillers, full]:
            s.close()
