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
