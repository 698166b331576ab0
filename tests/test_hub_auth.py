"""KeycloakAuthenticator against the real OIDC realm: discovery, proactive refresh, revocation,
Keycloak down. The only stand-in is the JupyterHub `User` holding the auth state (a dict here)."""

from __future__ import annotations

import time

import jwt
import pytest
from tornado import web
from valeria_hub.auth import KeycloakAuthenticator
from valeria_hub.errors import SpawnRefused
from valeria_platform.procs import free_port

from tests.fixtures.services import HUB_CALLBACK, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET

pytestmark = pytest.mark.hub


class StoredUser:
    """What the authenticator needs of jupyterhub.user.User: a name and its auth state."""

    def __init__(self, name: str, auth_state: dict | None):
        self.name = name
        self.state = auth_state
        self.saves = 0

    async def get_auth_state(self):
        return self.state

    async def save_auth_state(self, state):
        self.saves += 1
        self.state = state


def make_authenticator(realm_url: str, margin: int = 60) -> KeycloakAuthenticator:
    return KeycloakAuthenticator(
        realm_url=realm_url,
        client_id=OIDC_CLIENT_ID,
        client_secret=OIDC_CLIENT_SECRET,
        oauth_callback_url=HUB_CALLBACK,
        enable_auth_state=True,
        manage_groups=True,
        allowed_groups={"/researchers"},
        admin_groups={"/hub-admins"},
        refresh_margin=margin,
    )


async def login_state(authenticator, oidc_provider, username: str) -> dict:
    """A real token response for `username`, turned into auth state the way authenticate() does."""
    await authenticator.discover()
    tokens = oidc_provider.login(username, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, HUB_CALLBACK)
    model = await authenticator._token_to_auth_model(tokens)
    return model


async def test_discovery_sets_keycloak_endpoints(oidc_provider):
    auth = make_authenticator(oidc_provider.issuer)
    await auth.discover()
    assert auth.authorize_url == oidc_provider.endpoint("auth")
    assert auth.token_url == oidc_provider.endpoint("token")
    assert auth.userdata_url == oidc_provider.endpoint("userinfo")
    assert auth.end_session_endpoint == oidc_provider.endpoint("logout")
    assert auth.enable_pkce and auth.validate_server_cert


async def test_groups_map_to_allowed_and_admin(oidc_provider):
    auth = make_authenticator(oidc_provider.issuer)
    bob = await login_state(auth, oidc_provider, "bob")
    assert bob["admin"] is True and "/researchers" in bob["groups"]
    assert await auth.check_allowed("bob", bob)
    carol = await login_state(auth, oidc_provider, "carol")
    assert not carol["admin"] and not await auth.check_allowed("carol", carol)


async def test_groups_compared_by_full_path(oidc_provider):
    """/elsewhere/researchers and /x/hub-admins are other groups: no login, no admin."""
    auth = make_authenticator(oidc_provider.issuer)
    mallory = await login_state(auth, oidc_provider, "mallory")
    assert mallory["groups"] == ["/elsewhere/researchers", "/x/hub-admins"]
    assert not mallory["admin"] and not await auth.check_allowed("mallory", mallory)


async def test_fresh_token_is_not_refreshed(oidc_provider):
    auth = make_authenticator(oidc_provider.issuer, margin=10)
    model = await login_state(auth, oidc_provider, "alice")
    user = StoredUser("alice", model["auth_state"])
    assert await auth.refresh_user(user) is True
    assert (await auth.fresh_auth_state(user))["access_token"] == model["auth_state"]["access_token"]


async def test_refresh_user_hook_is_honoured(oidc_provider):
    """oauthenticator's documented hook: True/False/auth model decide, None keeps our refresh."""
    auth = make_authenticator(oidc_provider.issuer, margin=10)
    model = await login_state(auth, oidc_provider, "alice")
    user = StoredUser("alice", model["auth_state"])
    seen = []

    async def hook(authenticator, hook_user, auth_state):
        seen.append((hook_user.name, auth_state["access_token"]))
        return answers.pop(0)

    answers = [False, None]
    auth.refresh_user_hook = hook
    assert await auth.refresh_user(user) is False  # the hook says: log in again
    assert await auth.refresh_user(user) is True  # None: the default (a fresh token)
    assert seen == [("alice", model["auth_state"]["access_token"])] * 2


def test_jwt_expiry_read_with_pyjwt():
    from valeria_hub.auth import _jwt_exp

    token = jwt.encode({"sub": "s", "exp": 2_000_000_000}, "k" * 32, algorithm="HS256")
    assert _jwt_exp(token) == 2_000_000_000.0
    for bad in (None, "", "not-a-jwt", jwt.encode({"sub": "s"}, "k" * 32, algorithm="HS256")):
        assert _jwt_exp(bad) is None


async def test_expiring_token_is_refreshed_with_the_refresh_grant(oidc_provider):
    auth = make_authenticator(oidc_provider.issuer, margin=10)
    model = await login_state(auth, oidc_provider, "alice")
    state = dict(model["auth_state"])
    state["expires_at"] = time.time() + 5  # within the margin: refresh now, before it expires
    user = StoredUser("alice", state)
    refreshed = await auth.refresh_user(user)
    assert isinstance(refreshed, dict) and refreshed["name"] == "alice"
    new = refreshed["auth_state"]
    assert new["access_token"] != state["access_token"]
    assert new["expires_at"] > time.time() + 10
    assert new["refresh_token"]
    # the spawn pipeline's source does the same and stores the result
    user = StoredUser("alice", {**new, "expires_at": time.time() - 1})
    fresh = await auth.fresh_auth_state(user)
    assert fresh["access_token"] != new["access_token"] and user.state == fresh  # stored


async def test_revoked_refresh_token_means_login_again(oidc_provider):
    auth = make_authenticator(oidc_provider.issuer, margin=10)
    model = await login_state(auth, oidc_provider, "bob")
    oidc_provider.revoke_user("bob")
    user = StoredUser("bob", {**model["auth_state"], "expires_at": time.time() - 1})
    assert await auth.refresh_user(user) is False
    with pytest.raises(SpawnRefused) as info:
        await auth.fresh_auth_state(user)
    assert info.value.reason == "login-expired"
    assert await auth.refresh_user(StoredUser("bob", None)) is False


async def test_keycloak_down(oidc_provider):
    down = make_authenticator(f"http://127.0.0.1:{free_port()}/realms/valeria")
    with pytest.raises(web.HTTPError) as info:
        await down.discover()
    assert info.value.status_code == 503 and "Keycloak" in info.value.log_message
    # discovered earlier, then the token endpoint goes away: a refresh is a 503, not a logout
    auth = make_authenticator(oidc_provider.issuer, margin=10)
    model = await login_state(auth, oidc_provider, "alice")
    auth.token_url = f"http://127.0.0.1:{free_port()}/token"
    user = StoredUser("alice", {**model["auth_state"], "expires_at": time.time() - 1})
    with pytest.raises(web.HTTPError) as info:
        await auth.refresh_user(user)
    assert info.value.status_code == 503


async def test_issuer_mismatch_refused(oidc_provider, caplog):
    # a realm URL that serves another issuer's discovery document is not trusted
    auth = make_authenticator(oidc_provider.issuer + "/")
    await auth.discover()  # a trailing slash is the same issuer
    other = make_authenticator(oidc_provider.issuer.replace("127.0.0.1", "localhost"))
    other.log.propagate = True
    with pytest.raises(web.HTTPError):
        await other.discover()
    assert "not the configured realm" in caplog.text
    assert other.authorize_url != oidc_provider.endpoint("auth")


async def test_end_session_url_carries_id_token_hint(oidc_provider):
    auth = make_authenticator(oidc_provider.issuer)
    auth.post_logout_redirect_url = "http://127.0.0.1:8000/hub/login"
    model = await login_state(auth, oidc_provider, "alice")
    url = await auth.end_session_url(model["auth_state"])
    assert url.startswith(oidc_provider.endpoint("logout") + "?")
    assert "id_token_hint=" + model["auth_state"]["id_token"] in url
    assert "post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8000%2Fhub%2Flogin" in url
