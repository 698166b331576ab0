"""Concurrent token refreshes of one user (a spawn and the page polling it) share one refresh grant:
using a rotating refresh token twice is reuse, and the IdP revokes the whole grant (the first
bench run logged most of a class out mid-spawn)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.test_hub_auth import StoredUser, login_state, make_authenticator

pytestmark = pytest.mark.hub


async def test_concurrent_refreshes_share_one_grant(oidc_provider):
    auth = make_authenticator(oidc_provider.issuer, margin=10)
    model = await login_state(auth, oidc_provider, "bob")
    state = {**model["auth_state"], "expires_at": time.time() + 5}  # within the margin
    spawn_path, polling = StoredUser("bob", dict(state)), StoredUser("bob", dict(state))
    results = await asyncio.gather(auth.refresh_user(spawn_path), auth.refresh_user(polling))
    assert all(isinstance(r, dict) for r in results), results  # nobody sent back to the login page
    assert results[0]["auth_state"]["access_token"] == results[1]["auth_state"]["access_token"]
    # a request that still held the old refresh token just after the grant gets the same answer
    late = await auth.refresh_user(StoredUser("bob", dict(state)))
    assert late["auth_state"]["access_token"] == results[0]["auth_state"]["access_token"]
    # and the new tokens work: the next refresh with the new refresh token succeeds
    newer = {**results[0]["auth_state"], "expires_at": time.time() + 5}
    again = await auth.refresh_user(StoredUser("bob", newer))
    assert isinstance(again, dict) and again["auth_state"]["access_token"] != newer["access_token"]


async def test_tokens_of_a_refresh_are_kept_when_userinfo_fails(oidc_provider):
    """The grant rotates the refresh token; if userinfo then fails (Keycloak timing out), the new
    tokens must still be stored, or the next refresh reuses the spent one and the IdP ends the
    session. The new access token is valid, so the user goes on with it meanwhile."""
    auth = make_authenticator(oidc_provider.issuer, margin=10)
    model = await login_state(auth, oidc_provider, "alice")
    user = StoredUser("alice", {**model["auth_state"], "expires_at": time.time() + 5})
    userinfo = auth.userdata_url
    auth.userdata_url = "http://127.0.0.1:9/userinfo"  # nothing listens: userinfo fails
    # the new access token is valid: the user goes on with it (test_hub_auth_transient.py)
    assert await auth.refresh_user(user) is True
    assert user.state["refresh_token"] != model["auth_state"]["refresh_token"]
    auth.userdata_url = userinfo  # Keycloak answers again: the stored tokens still work
    user.state["expires_at"] = time.time() + 5
    again = await auth.refresh_user(user)
    assert isinstance(again, dict) and again["name"] == "alice"
