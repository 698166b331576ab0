"""KeycloakAuthenticator: oauthenticator's GenericOAuthenticator plus what Keycloak needs.

- OIDC discovery from `<realm>/.well-known/openid-configuration` (oauthenticator has none), async,
  TLS verified (optional CA bundle), retried on the next request if Keycloak was down.
- Proactive refresh: oauthenticator's own `refresh_user` only refreshes after userinfo answers
  4xx; this one refreshes with the refresh-token grant whenever the access token is within
  `refresh_margin` (plus a per-token jitter) seconds of expiry; a spawn refreshes only a token that
  would not outlive its Vault login (`spawn_token_validity`). A refused refresh (revoked or expired
  refresh token) returns False: the user must log in again. A refresh that fails because Keycloak
  is slow or down keeps the user on the still-valid token (tried again on a later request); only
  an expired token whose refresh fails is a 503.
- Logout ends the Keycloak session: end-session endpoint with `id_token_hint`.
- A hub user name is bound to the OIDC subject (`sub`) that first logged in with it: the auth
  state keeps `sub` (also after logout, without the tokens), and a login or refresh whose `sub`
  differs is refused. Where a realm lets names be freed and taken again (renames, deleted and
  re-created accounts, first broker login), the new holder of a name never gets the old one's hub
  user, and Vault paths follow `sub` anyway (configure-vault.sh).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from urllib.parse import urlencode

import jwt
from jupyterhub.handlers.base import BaseHandler
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler, OAuthLogoutHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.simple_httpclient import HTTPTimeoutError
from traitlets import Bool, Dict, Integer, Set, Unicode, default

from .audit import audited_login, remember_login_name
from .errors import SpawnRefused
from .metrics import TOKEN_REFRESHES, counted_refresh, timed_keycloak_fetch
from .oidc import DiscoveryError, discovery_url, parse_discovery

# JupyterHub 6.1 bug: BaseHandler.refresh_auth reads self._token_authenticated, which is only set
# for token-authenticated requests; a cookie-authenticated API spawn whose refresh fails then dies
# with AttributeError (500) instead of "login again" (403). The rest of JupyterHub reads it with
# getattr(..., False): give the class that default.
if not hasattr(BaseHandler, "_token_authenticated"):
    BaseHandler._token_authenticated = False

_KEYCLOAK_DOWN = "The login service (Keycloak) is not reachable right now. Please try again in a few minutes."
_OTHER_ACCOUNT = (
    "This user name belongs to another account on this hub, so the login was refused; "
    "contact the platform administrators."
)


def _jwt_exp(token: str | None) -> float | None:
    """The `exp` claim of a JWT, unverified (only used to schedule a refresh, never to trust)."""
    if not token:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
        return float(claims["exp"])
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
        return None


def _never_sent(error: BaseException) -> str | None:
    """Why a request to Keycloak was certainly never sent (so repeating it is safe), else None."""
    if isinstance(error, HTTPClientError) and error.code == 599:
        # tornado's simple client: the request waited in its queue, or the TCP connect timed out.
        # A refused connection is not retried: Keycloak is down, and waiting will not fix it now.
        # ("Timeout while connecting to <host>:<port>" names the address)
        if error.message.startswith(("Timeout in request queue", "Timeout while connecting")):
            return error.message
    return None


class KeycloakLoginHandler(OAuthLoginHandler):
    """Discover the realm's endpoints before redirecting to the authorization endpoint."""

    async def get(self):
        await self.authenticator.discover()
        return super().get()


class KeycloakCallbackHandler(OAuthCallbackHandler):
    """oauthenticator's callback; an error is logged without the query (code, state)."""

    def _request_summary(self) -> str:
        # tornado logs "<status> <summary>: <message>" for an HTTPError (a 503 when Keycloak does
        # not answer): its summary holds the whole URI, authorization code included
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"


class KeycloakLogoutHandler(OAuthLogoutHandler):
    """Log out of the hub, forget the tokens, and end the Keycloak session too."""

    _end_session_url: str | None = None

    async def handle_logout(self):
        await super().handle_logout()
        user = self.current_user
        if user is None:
            return
        auth_state = await user.get_auth_state()
        self._end_session_url = await self.authenticator.end_session_url(auth_state)
        if auth_state:
            # the tokens die with the Keycloak session; keeping them would only invite misuse.
            # The subject stays: it binds this user name to its account for the next login.
            await user.save_auth_state({"sub": auth_state["sub"]} if auth_state.get("sub") else None)

    async def render_logout_page(self):
        if self._end_session_url:
            self.redirect(self._end_session_url)
            return
        return await super().render_logout_page()


class KeycloakAuthenticator(GenericOAuthenticator):
    """Keycloak (or any OIDC provider with discovery) with proactive token refresh."""

    login_handler = KeycloakLoginHandler
    callback_handler = KeycloakCallbackHandler
    logout_handler = KeycloakLogoutHandler

    realm_url = Unicode(
        config=True,
        help="Keycloak realm URL, e.g. https://sso.example.org/realms/valeria. "
        "Endpoints are read from <realm_url>/.well-known/openid-configuration.",
    )
    ca_bundle = Unicode(
        "",
        config=True,
        help="PEM bundle that signs Keycloak's TLS certificate (empty: the system CAs). "
        "Certificate verification is always on.",
    )
    refresh_margin = Integer(
        60,
        config=True,
        help="Refresh the access token when it expires within this many seconds (plus the token's "
        "jitter). JupyterHub asks at most every `auth_refresh_age` seconds, so a margin above "
        "auth_refresh_age leaves room to try again when Keycloak failed to answer once.",
    )
    refresh_jitter = Integer(
        30,
        config=True,
        help="Spread refreshes: each access token is refreshed at its own moment between "
        "refresh_margin and refresh_margin + refresh_jitter seconds before it expires (derived from "
        "the token, so stable across requests). A class that logged in in the same minute would "
        "otherwise refresh in the same minute. 0: no spread.",
    )
    spawn_token_validity = Integer(
        30,
        config=True,
        help="A spawn refreshes the access token only if it expires within this many seconds: Vault "
        "checks the token once, at the JWT login, so it only has to outlive that login (retries "
        "included: VALERIA_VAULT_TIMEOUT × (1 + VALERIA_VAULT_RETRIES), 15 s by default). A token "
        "refreshed a moment ago by JupyterHub's pre-spawn refresh is used as it is.",
    )
    end_session = Bool(True, config=True, help="Also end the Keycloak session when a user logs out.")
    hub_admin_groups = Set(
        config=True,
        help="Full paths of the groups given the role valeria-admin (valeria_hub.roles); only said in "
        "the audit log's login lines, since the admin flag stays False.",
    )
    end_session_endpoint = Unicode("", help="Discovered end-session endpoint (not config).")
    post_logout_redirect_url = Unicode(
        "",
        config=True,
        help="Where Keycloak sends the browser after ending the session (registered with the client). "
        "Empty: no redirect parameter.",
    )

    http_max_clients = Integer(
        64,
        config=True,
        help="Concurrent requests to Keycloak (token, userinfo, refresh). tornado's default of 10 "
        "queues the rest, and the queue time counts against the 10 s request timeout: with a class "
        "starting at once, refreshes timed out and spawns were refused (bench/HUB_RESULTS.md).",
    )

    http_queue_timeout = Integer(
        30,
        config=True,
        help="Seconds a Keycloak request may wait for one of the http_max_clients connections before "
        "it fails (503). tornado's own queue gives up after connect_timeout (5 s): 500 students "
        "logging in at once waited longer and got 503 at the OAuth callback (bench/HUB_RESULTS.md). "
        "The connect and request timeouts count from when the request is sent.",
    )

    http_retries = Integer(
        2,
        config=True,
        help="Send a Keycloak request again (after about 0.5 s, then 1 s...) when it was never "
        "sent: it waited in tornado's queue past connect_timeout, or the TCP connect timed out. "
        "Safe even for a one-time authorization code (bench: 503 at the OAuth callback when a "
        "class logged in at once). Requests that were sent are never repeated.",
    )

    shared_refresh_seconds = Integer(
        30,
        config=True,
        help="For this many seconds after a refresh grant, requests that still hold the old refresh "
        "token get its result instead of using the token again (see _refresh_once).",
    )

    _discovered = False
    _discovery_lock: asyncio.Lock | None = None
    _slots: asyncio.Semaphore | None = None

    _refreshes = Dict(help="sha256(refresh token) -> (future of its refresh, monotonic time it ended or 0)")

    @default("http_client")
    def _http_client_default(self):
        # a client of our own: the shared AsyncHTTPClient() instance is capped at 10 requests
        return AsyncHTTPClient(force_instance=True, max_clients=self.http_max_clients)

    @default("login_service")
    def _login_service_default(self):
        return "Keycloak"

    @default("username_claim")
    def _username_claim_default(self):
        return "preferred_username"

    @default("auth_state_groups_key")
    def _auth_state_groups_key_default(self):
        return "oauth_user.groups"

    @default("http_request_kwargs")
    def _http_request_kwargs_default(self):
        kwargs = {"connect_timeout": 5.0, "request_timeout": 10.0}
        if self.ca_bundle:
            kwargs["ca_certs"] = self.ca_bundle
        return kwargs

    @default("validate_server_cert")
    def _validate_server_cert_default(self):
        return True

    @contextlib.asynccontextmanager
    async def _connection_slot(self):
        """One of http_max_clients connections, waited for up to http_queue_timeout seconds (the
        tornado client behind it has as many, so its own queue, bounded by connect_timeout, stays
        empty)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.http_max_clients)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.http_queue_timeout)
        except asyncio.TimeoutError:
            self.log.error(
                "A Keycloak request waited %d s for one of the %d connections, all busy: given up",
                self.http_queue_timeout,
                self.http_max_clients,
            )
            raise HTTPTimeoutError("in the hub's queue for Keycloak") from None
        try:
            yield
        finally:
            self._slots.release()

    async def discover(self) -> None:
        """Fill authorize/token/userinfo/end-session URLs from the realm's discovery document.

        Concurrent first calls share one fetch (first bench run: 162 discovery requests from a
        class logging in at once after a hub start)."""
        if self._discovered:
            return
        if self._discovery_lock is None:
            self._discovery_lock = asyncio.Lock()
        async with self._discovery_lock:
            if not self._discovered:
                await self._discover()

    async def _discover(self) -> None:
        url = discovery_url(self.realm_url)
        try:
            doc = await self.httpfetch(url, label="discovering the OIDC realm", validate_cert=True)
        except (HTTPClientError, OSError) as e:
            self.log.error("OIDC discovery at %s failed: %s", url, type(e).__name__)
            raise web.HTTPError(503, _KEYCLOAK_DOWN) from None
        try:
            found = parse_discovery(doc, self.realm_url)
        except DiscoveryError as e:
            self.log.error("OIDC discovery at %s: %s", url, e)
            raise web.HTTPError(503, _KEYCLOAK_DOWN) from None
        self.authorize_url = found.authorization_endpoint
        self.token_url = found.token_endpoint
        self.userdata_url = found.userinfo_endpoint
        self.end_session_endpoint = found.end_session_endpoint
        self._discovered = True
        self.log.info("OIDC realm %s discovered", self.realm_url)

    _timed_fetch = timed_keycloak_fetch(GenericOAuthenticator.httpfetch)

    async def httpfetch(self, url: str, *args, **kwargs):
        """oauthenticator's fetch (every Keycloak request goes through it), timed into the metrics
        and retried while the request was never sent (`http_retries`)."""
        for attempt in range(self.http_retries + 1):
            try:
                async with self._connection_slot():
                    return await self._timed_fetch(url, *args, **kwargs)
            except (HTTPClientError, OSError) as e:
                if attempt >= self.http_retries or not _never_sent(e):
                    raise
                delay = 0.5 * 2**attempt * (0.5 + random.random())
                self.log.warning(
                    "Keycloak request not sent (%s); sending it again in %.1f s", _never_sent(e), delay
                )
                await asyncio.sleep(delay)

    get_authenticated_user = audited_login(GenericOAuthenticator.get_authenticated_user)

    @remember_login_name
    async def authenticate(self, handler, data=None, **kwargs):
        await self.discover()
        try:
            auth_model = await super().authenticate(handler, data, **kwargs)
        except (HTTPClientError, OSError) as e:
            if isinstance(e, HTTPClientError) and e.code != 599 and e.code < 500:
                raise web.HTTPError(403, "The login was refused by Keycloak; please try again.") from None
            raise web.HTTPError(503, _KEYCLOAK_DOWN) from None
        if auth_model:
            user = handler.find_user(auth_model["name"]) if handler is not None else None
            stored = await user.get_auth_state() if user is not None else None
            if not self.same_subject(stored, auth_model):
                self.log.warning("Login as %s refused: not the subject stored for it", auth_model["name"])
                raise web.HTTPError(403, _OTHER_ACCOUNT)
        return auth_model

    @staticmethod
    def same_subject(stored: dict | None, auth_model: dict) -> bool:
        """False if the user name was first used by another subject; True for a new name (or one
        stored before subjects were kept), which this login then binds."""
        new = (auth_model.get("auth_state") or {}).get("sub")
        old = (stored or {}).get("sub")
        return bool(new) and (old is None or old == new)

    def build_auth_state_dict(self, token_info, user_info):
        auth_state = super().build_auth_state_dict(token_info, user_info)
        # the immutable subject: the Vault paths use it, and it binds the user name (authenticate)
        auth_state["sub"] = user_info.get("sub") if isinstance(user_info.get("sub"), str) else None
        now = time.time()
        expires_in = token_info.get("expires_in")
        if isinstance(expires_in, int | float) and expires_in > 0:
            auth_state["expires_at"] = now + float(expires_in)
        else:
            auth_state["expires_at"] = _jwt_exp(token_info.get("access_token"))
        return auth_state

    async def update_auth_model(self, auth_model: dict) -> dict:
        """Never JupyterHub's admin flag (its built-in admin role reads every user's tokens), unless
        `admin_groups` is configured; hub admins get the role valeria-admin through their group
        (valeria_hub.roles). False, not None, so a flag left by an earlier version is cleared."""
        auth_model = await super().update_auth_model(auth_model)
        auth_model["admin"] = False
        return auth_model

    async def get_user_groups(self, auth_state: dict) -> set:
        # Full group paths, compared exactly with the configured ones ("/researchers"): Keycloak's
        # group mapper must have "Full group path" on, so "/x/researchers" never passes as "/researchers"
        groups = await super().get_user_groups(auth_state)
        return {g for g in groups if isinstance(g, str)}

    @staticmethod
    def token_validity(auth_state: dict | None) -> float:
        """Seconds the stored access token is still valid (0 or less: expired or none)."""
        if not auth_state or not auth_state.get("access_token"):
            return 0.0
        expires_at = auth_state.get("expires_at") or _jwt_exp(auth_state.get("access_token"))
        return float(expires_at) - time.time() if expires_at else 0.0

    def _jitter(self, access_token: str) -> float:
        """This token's share of refresh_jitter, in [0, refresh_jitter), the same on every call."""
        if self.refresh_jitter <= 0:
            return 0.0
        digest = hashlib.sha256(access_token.encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 * self.refresh_jitter

    def token_is_fresh(self, auth_state: dict | None) -> bool:
        """True if the stored access token is valid beyond refresh_margin plus its jitter."""
        validity = self.token_validity(auth_state)
        if validity <= 0:
            return False
        return validity > self.refresh_margin + self._jitter(auth_state["access_token"])

    @counted_refresh
    async def refresh_user(self, user, handler=None, **kwargs):
        """True while the token is fresh; a new auth model after a refresh grant; False → log in again."""
        if not self.enable_auth_state:
            return True
        auth_state = await user.get_auth_state()
        if self.refresh_user_hook is not None:
            # oauthenticator's documented extension point: True, False or an auth model decide;
            # None means "the default behaviour", i.e. the proactive refresh below
            refreshed = await self._call_refresh_user_hook(user, auth_state)
            if refreshed is not None:
                return refreshed
        if not auth_state:
            return False
        if self.token_is_fresh(auth_state):
            return True
        refresh_token = auth_state.get("refresh_token")
        if not refresh_token:
            self.log.info(
                "Access token of %s expired and there is no refresh token: new login needed", user.name
            )
            return False
        try:
            return await self._refresh_once(user, refresh_token, handler)
        except web.HTTPError as e:
            if e.status_code != 503:
                raise
            # Keycloak slow or down: nothing is wrong with the user. Keep them on the token they
            # hold while it is valid; JupyterHub asks again after auth_refresh_age.
            stored = await user.get_auth_state()
            validity = self.token_validity(stored)
            if validity <= 0:
                raise
            self.log.warning(
                "Token refresh for %s failed (Keycloak not answering); the access token is valid for "
                "%.0f s more, kept; the refresh will be retried on a later request",
                user.name,
                validity,
            )
            TOKEN_REFRESHES.labels("kept").inc()
            return True

    async def _refresh_once(self, user, refresh_token: str, handler=None):
        """One refresh grant per refresh token, shared by every request that needs it meanwhile.

        A user's spawn and the page polling it refresh at the same moment; a refresh token used
        twice is reuse to a rotating IdP, which revokes the whole grant (Keycloak with "revoke
        refresh token" on, our stand-in always): the first bench run logged 41 of 50 students out
        mid-spawn. Callers that arrive while the grant runs, or until JupyterHub has stored its
        result (`shared_refresh_seconds`), get the same answer.
        """
        key = hashlib.sha256(refresh_token.encode()).hexdigest()
        now = time.monotonic()
        for k in [
            k for k, (_, at) in self._refreshes.items() if at and now - at > self.shared_refresh_seconds
        ]:
            del self._refreshes[k]
        if key in self._refreshes:
            return await asyncio.shield(self._refreshes[key][0])
        future = asyncio.ensure_future(self._refresh_grant(user, refresh_token, handler))
        self._refreshes[key] = (future, 0.0)
        try:
            return await asyncio.shield(future)
        finally:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._refreshes[key] = (future, time.monotonic())
            else:
                self._refreshes.pop(key, None)  # an error is not shared: the next request retries

    async def _refresh_grant(self, user, refresh_token: str, handler=None):
        await self.discover()
        params = self.build_refresh_token_request_params(refresh_token)
        try:
            token_info = await self.get_token_info(handler, params)
        except web.HTTPError as e:
            # oauthenticator turns an error_description in a 200 answer into 403
            self.log.info("Refresh of %s refused (%s): new login needed", user.name, e.status_code)
            return False
        except HTTPClientError as e:
            if e.code != 599 and 400 <= e.code < 500:
                self.log.info("Refresh token of %s refused (%s): new login needed", user.name, e.code)
                return False
            self.log.error("Token refresh for %s failed: Keycloak answered %s", user.name, e.code)
            raise web.HTTPError(503, _KEYCLOAK_DOWN) from None
        except OSError as e:
            self.log.error("Token refresh for %s failed: %s", user.name, type(e).__name__)
            raise web.HTTPError(503, _KEYCLOAK_DOWN) from None
        if not token_info.get("refresh_token"):
            token_info["refresh_token"] = refresh_token
        # The grant has rotated the refresh token: store the new tokens now, so that a failure of
        # the userinfo call below cannot leave only the spent one (run 3: a userinfo timeout, then
        # the next refresh reused the old token and the IdP revoked the session).
        previous = await user.get_auth_state() or {}
        await user.save_auth_state(self.build_auth_state_dict(token_info, previous.get("oauth_user") or {}))
        try:
            auth_model = await self._token_to_auth_model(token_info)
        except HTTPClientError as e:
            if e.code == 599 or e.code >= 500:
                # Keycloak slow or down (599: timeout, no answer): not the user's fault, no re-login
                self.log.error(
                    "Userinfo for %s after a refresh failed: Keycloak answered %s", user.name, e.code
                )
                raise web.HTTPError(503, _KEYCLOAK_DOWN) from None
            self.log.info(
                "Userinfo with a fresh token for %s failed (%s): new login needed", user.name, e.code
            )
            return False
        except OSError as e:
            self.log.error("Userinfo for %s after a refresh failed: %s", user.name, type(e).__name__)
            raise web.HTTPError(503, _KEYCLOAK_DOWN) from None
        if (
            not await self.check_allowed(auth_model["name"], auth_model)
            or auth_model["name"] != user.name
            or not self.same_subject(previous, auth_model)
        ):
            self.log.warning("%s is no longer allowed after a token refresh: new login needed", user.name)
            return False
        self.log.info("Refreshed the access token of %s", user.name)
        return auth_model

    async def fresh_auth_state(self, user) -> dict:
        """The user's auth state with an access token that outlives the Vault login, refreshing if
        it expires within spawn_token_validity seconds.

        Used by the spawn pipeline: raises SpawnRefused rather than spawn with an expired token.
        """
        auth_state = await user.get_auth_state()
        if self.token_validity(auth_state) > self.spawn_token_validity:
            return auth_state
        refreshed = await self.refresh_user(user)
        if refreshed is True:
            return await user.get_auth_state()
        if not refreshed:
            raise SpawnRefused("Your login has expired; please log in again.", reason="login-expired")
        await user.save_auth_state(refreshed["auth_state"])
        return refreshed["auth_state"]

    async def end_session_url(self, auth_state: dict | None) -> str | None:
        """The Keycloak end-session URL for this user's session, or None."""
        if not self.end_session:
            return None
        try:
            await self.discover()
        except web.HTTPError:
            return None
        if not self.end_session_endpoint:
            return None
        params = {"client_id": self.client_id}
        if auth_state and auth_state.get("id_token"):
            params["id_token_hint"] = auth_state["id_token"]
        if self.post_logout_redirect_url:
            params["post_logout_redirect_uri"] = self.post_logout_redirect_url
        sep = "&" if "?" in self.end_session_endpoint else "?"
        return self.end_session_endpoint + sep + urlencode(params)
