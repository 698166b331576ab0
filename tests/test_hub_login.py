"""The whole hub, over HTTP: JupyterHub (hub_config/jupyterhub_config.py, env only) +
configurable-http-proxy + the OIDC realm + OpenBao + PostgreSQL, all real, on loopback."""

from __future__ import annotations

import pytest

from tests.fixtures.hub import hub_api, hub_login

pytestmark = pytest.mark.hub


def test_allowed_user_logs_in(hub, oidc_provider):
    session, r = hub_login(hub, oidc_provider, "alice")
    assert r.status_code == 200 and r.url == f"{hub.url}/hub/home"
    me = hub_api(hub, session, "GET", "/user").json()
    assert me["name"] == "alice" and me["admin"] is False
    assert "/researchers" in me["groups"]
    # the user, and their encrypted tokens, are in the PostgreSQL database
    state = hub.auth_state("alice")
    assert state["oauth_user"]["preferred_username"] == "alice"
    assert state["access_token"] and state["refresh_token"] and state["id_token"]
    assert state["expires_at"] > 0


def test_admin_group_makes_admin(hub, oidc_provider):
    session, r = hub_login(hub, oidc_provider, "bob")
    assert r.status_code == 200
    me = hub_api(hub, session, "GET", "/user").json()
    assert me["name"] == "bob" and me["admin"] is True


def test_user_outside_groups_is_refused(hub, oidc_provider):
    session, r = hub_login(hub, oidc_provider, "carol")
    assert r.status_code == 403
    assert r.url.startswith(f"{hub.url}/hub/oauth_callback")
    assert hub_api(hub, session, "GET", "/user").status_code == 403
    assert hub.query("SELECT name FROM users WHERE name = 'carol'") == []
