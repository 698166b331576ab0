"""The Keycloak stand-in behaves like a Keycloak realm where the hub and Vault look at it."""

from __future__ import annotations

import re
import time
from urllib.parse import urljoin

import jwt
import pytest
import requests
from valeria_platform.oidc import OIDCProvider, code_flow

from tests.fixtures.services import HUB_CALLBACK, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET


def _login(provider: OIDCProvider, user: str = "alice", **kw) -> dict:
    return provider.login(user, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, HUB_CALLBACK, **kw)


def _discovery(provider: OIDCProvider) -> dict:
    r = requests.get(provider.discovery_url, timeout=10)
    r.raise_for_status()
    return r.json()


def _verify(provider: OIDCProvider, token: str, audience: str = OIDC_CLIENT_ID) -> dict:
    jwks = jwt.PyJWKClient(_discovery(provider)["jwks_uri"])
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=provider.issuer)


def _refresh(provider: OIDCProvider, refresh_token: str) -> requests.Response:
    return requests.post(
        provider.endpoint("token"),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(OIDC_CLIENT_ID, OIDC_CLIENT_SECRET),
        timeout=10,
    )


def _authorize(provider: OIDCProvider, s: requests.Session, state: str) -> tuple[str, str]:
    """Start an authorization in browser session ``s``: ("form", html) if the IdP asks for the
    password, ("code", callback URL) if its session logs the user in directly."""
    r = s.get(
        provider.endpoint("auth"),
        params={
            "client_id": OIDC_CLIENT_ID,
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": HUB_CALLBACK,
            "state": state,
        },
        allow_redirects=False,
        timeout=10,
    )
    for _ in range(10):
        if r.status_code not in (302, 303):
            break
        location = urljoin(r.url, r.headers["location"])
        if location.startswith(HUB_CALLBACK):
            return "code", location
        r = s.get(location, allow_redirects=False, timeout=10)
    assert r.status_code == 200
    return ("form" if 'id="kc-form-login"' in r.text else "other"), r.text


def test_discovery_at_keycloak_paths(oidc_provider: OIDCProvider) -> None:
    d = _discovery(oidc_provider)
    assert oidc_provider.issuer.endswith("/realms/valeria")
    assert d["issuer"] == oidc_provider.issuer
    base = f"{oidc_provider.issuer}/protocol/openid-connect"
    assert d["authorization_endpoint"] == f"{base}/auth"
    assert d["token_endpoint"] == f"{base}/token"
    assert d["userinfo_endpoint"] == f"{base}/userinfo"
    assert d["jwks_uri"] == f"{base}/certs"
    assert d["end_session_endpoint"] == f"{base}/logout"
    assert d["revocation_endpoint"] == f"{base}/revoke"
    assert "refresh_token" in d["grant_types_supported"]
    keys = requests.get(d["jwks_uri"], timeout=10).json()["keys"]
    assert keys and all("d" not in k and "p" not in k for k in keys), "the JWKS must hold public keys only"


def test_code_flow_gives_keycloak_shaped_tokens(oidc_provider: OIDCProvider) -> None:
    tokens = _login(oidc_provider, "bob")
    assert {"access_token", "id_token", "refresh_token", "expires_in"} <= set(tokens)
    assert 0 < tokens["expires_in"] <= 300

    id_claims = _verify(oidc_provider, tokens["id_token"])
    assert id_claims["preferred_username"] == "bob"
    assert id_claims["groups"] == ["/researchers", "/hub-admins"]
    assert id_claims["email"] == "bob@example.org"
    # Keycloak's sub is a UUID, not the username
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", id_claims["sub"])
    assert id_claims["sub"] == oidc_provider.subjects()["bob"]

    # the access token is a JWT verifiable with the realm's JWKS (what Vault's JWT auth does)
    at = _verify(oidc_provider, tokens["access_token"])
    assert at["preferred_username"] == "bob"
    assert at["groups"] == ["/researchers", "/hub-admins"]
    assert at["aud"] == OIDC_CLIENT_ID
    assert at["azp"] == OIDC_CLIENT_ID

    info = requests.get(
        oidc_provider.endpoint("userinfo"),
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert info.status_code == 200
    assert info.json()["preferred_username"] == "bob"
    assert info.json()["groups"] == ["/researchers", "/hub-admins"]


def test_wrong_password_is_refused_on_the_form(oidc_provider: OIDCProvider) -> None:
    with pytest.raises(PermissionError):
        _login(oidc_provider, "alice", password="not-her-password")
    with pytest.raises(PermissionError):
        _login(oidc_provider, "nobody", password="x")


def test_unknown_redirect_uri_is_refused(oidc_provider: OIDCProvider) -> None:
    r = requests.get(
        oidc_provider.endpoint("auth"),
        params={
            "client_id": OIDC_CLIENT_ID,
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": "http://evil.example/cb",
            "state": "s",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 400
    assert "evil.example" not in r.headers.get("location", "")


def test_userinfo_refuses_a_forged_token(oidc_provider: OIDCProvider) -> None:
    tokens = _login(oidc_provider, "alice")
    header, payload, sig = tokens["access_token"].split(".")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    claims["preferred_username"] = "bob"
    forged_payload = jwt.utils.base64url_encode(jwt.api_jws.json.dumps(claims).encode()).decode()
    forged = f"{header}.{forged_payload}.{sig}"
    for token in (forged, "garbage", ""):
        r = requests.get(
            oidc_provider.endpoint("userinfo"), headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_token"


def test_refresh_gives_new_tokens_and_rotates(oidc_provider: OIDCProvider) -> None:
    tokens = _login(oidc_provider, "alice")
    r = _refresh(oidc_provider, tokens["refresh_token"])
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["access_token"] != tokens["access_token"]
    assert new["refresh_token"] != tokens["refresh_token"]
    assert _verify(oidc_provider, new["access_token"])["preferred_username"] == "alice"
    assert _verify(oidc_provider, new["id_token"])["groups"] == ["/researchers"]
    # the new refresh token works in turn
    assert _refresh(oidc_provider, new["refresh_token"]).status_code == 200


def test_admin_revocation_forces_a_new_login(oidc_provider: OIDCProvider) -> None:
    s = requests.Session()
    tokens = code_flow(
        oidc_provider.issuer,
        "alice",
        oidc_provider.password_of("alice"),
        OIDC_CLIENT_ID,
        OIDC_CLIENT_SECRET,
        HUB_CALLBACK,
        session=s,
    )
    # while the IdP session lives, a new authorization needs no password (SSO)
    kind, where = _authorize(oidc_provider, s, "a")
    assert kind == "code" and "code=" in where

    assert oidc_provider.revoke_user("alice") > 0

    r = _refresh(oidc_provider, tokens["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    info = requests.get(
        oidc_provider.endpoint("userinfo"),
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert info.status_code == 401
    # the browser's IdP session is gone too: the login form is back
    assert _authorize(oidc_provider, s, "b")[0] == "form"
    # and logging in again works
    assert "access_token" in _login(oidc_provider, "alice")


def test_revoking_the_refresh_token_ends_the_grant(oidc_provider: OIDCProvider) -> None:
    tokens = _login(oidc_provider, "bob")
    r = requests.post(
        oidc_provider.endpoint("revoke"),
        auth=(OIDC_CLIENT_ID, OIDC_CLIENT_SECRET),
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        timeout=10,
    )
    assert r.status_code == 200
    assert _refresh(oidc_provider, tokens["refresh_token"]).status_code == 400


def test_logout_ends_the_idp_session(oidc_provider: OIDCProvider) -> None:
    s = requests.Session()
    tokens = code_flow(
        oidc_provider.issuer,
        "bob",
        oidc_provider.password_of("bob"),
        OIDC_CLIENT_ID,
        OIDC_CLIENT_SECRET,
        HUB_CALLBACK,
        session=s,
    )
    assert _authorize(oidc_provider, s, "before")[0] == "code"
    r = s.get(oidc_provider.endpoint("logout"), params={"id_token_hint": tokens["id_token"]}, timeout=10)
    assert r.status_code == 200
    # the confirmation form (auto-submitted by browsers when id_token_hint is given)
    form = re.search(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', r.text, re.S)
    assert form
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(2)))
    fields["logout"] = "yes"
    r = s.post(urljoin(r.url, form.group(1)), data=fields, timeout=10)
    assert r.status_code == 200 and "logged out" in r.text
    assert _authorize(oidc_provider, s, "c")[0] == "form"


def test_a_client_registered_at_run_time_can_log_in(oidc_provider: OIDCProvider) -> None:
    cb = "http://127.0.0.1:18123/hub/oauth_callback"
    oidc_provider.add_client("other-hub", "other-secret", [cb])
    tokens = oidc_provider.login("alice", "other-hub", "other-secret", cb)
    assert (
        _verify(oidc_provider, tokens["access_token"], audience="other-hub")["preferred_username"] == "alice"
    )
    # and its secret is checked
    with pytest.raises(requests.HTTPError):
        oidc_provider.login("alice", "other-hub", "wrong-secret", cb)


def test_the_log_holds_no_secret(oidc_provider: OIDCProvider) -> None:
    tokens = _login(oidc_provider, "alice")
    _refresh(oidc_provider, tokens["refresh_token"])
    log = oidc_provider.log_path.read_text()
    assert "login" in log
    for secret in [
        OIDC_CLIENT_SECRET,
        *(u["password"] for u in oidc_provider.users),
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["id_token"],
    ]:
        assert secret not in log
    # and the command line carries no secret either: only the config file's path
    cmdline = open(f"/proc/{oidc_provider.pid}/cmdline", "rb").read().decode()
    assert all(u["password"] not in cmdline for u in oidc_provider.users)
    assert OIDC_CLIENT_SECRET not in cmdline


def test_username_and_groups_come_without_asking_for_the_groups_scope(oidc_provider: OIDCProvider) -> None:
    tokens = _login(oidc_provider, "bob", scope="openid offline_access")
    claims = _verify(oidc_provider, tokens["id_token"])
    assert claims["preferred_username"] == "bob" and claims["groups"] == ["/researchers", "/hub-admins"]
    info = requests.get(
        oidc_provider.endpoint("userinfo"),
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    ).json()
    assert info["preferred_username"] == "bob" and info["groups"] == ["/researchers", "/hub-admins"]


def test_expired_access_token_is_refused_and_refresh_gives_a_valid_one(tmp_path) -> None:
    """A realm with 1-second access tokens: the expiry the hub's refresh logic must handle."""
    cb = "http://127.0.0.1:18125/cb"
    user = {"username": "dora", "password": "pw-dora", "email": "dora@example.org",
            "groups": ["/researchers"]}  # fmt: skip
    with OIDCProvider(users=[user], clients=[{"client_id": "c", "client_secret": "s", "redirect_uris": [cb]}],
                      access_token_ttl=1, workdir=tmp_path / "oidc") as provider:  # fmt: skip
        tokens = provider.login("dora", "c", "s", cb)
        assert tokens["expires_in"] <= 1
        time.sleep(2.1)
        r = requests.get(
            provider.endpoint("userinfo"),
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=10,
        )
        assert r.status_code == 401
        with pytest.raises(jwt.ExpiredSignatureError):
            jwks = jwt.PyJWKClient(_discovery(provider)["jwks_uri"])
            jwt.decode(
                tokens["access_token"],
                jwks.get_signing_key_from_jwt(tokens["access_token"]).key,
                algorithms=["RS256"],
                audience="c",
            )
        r = requests.post(
            provider.endpoint("token"),
            auth=("c", "s"),
            timeout=10,
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert r.status_code == 200, r.text
        fresh = r.json()["access_token"]
        # The fresh token lives 1 s too (whole-second exp), so asking userinfo with it races the
        # clock on a loaded machine: check instead that the realm signed it for dora and that it
        # expires after the old one (userinfo with a live token is covered by the login tests).
        old_claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        claims = jwt.decode(
            fresh,
            jwks.get_signing_key_from_jwt(fresh).key,
            algorithms=["RS256"],
            audience="c",
            leeway=3600,
        )
        assert claims["preferred_username"] == "dora"
        assert claims["exp"] > old_claims["exp"]
