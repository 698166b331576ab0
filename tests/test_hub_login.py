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
    # admin through the role valeria-admin of the group /hub-admins, not JupyterHub's admin flag
    assert me["name"] == "bob" and me["admin"] is False and "/hub-admins" in me["groups"]
    assert "admin-ui" in me["scopes"] and "admin:auth_state" not in me["scopes"]


def test_user_outside_groups_is_refused(hub, oidc_provider):
    session, r = hub_login(hub, oidc_provider, "carol")
    assert r.status_code == 403
    assert r.url.startswith(f"{hub.url}/hub/oauth_callback")
    assert hub_api(hub, session, "GET", "/user").status_code == 403
    assert hub.query("SELECT name FROM users WHERE name = 'carol'") == []


def test_admin_cannot_read_other_users_tokens(hub, oidc_provider):
    """Hub admins keep the admin panel but not admin:auth_state (users' access/refresh/ID tokens)."""
    hub_login(hub, oidc_provider, "alice")
    assert hub.auth_state("alice")["access_token"]
    session, r = hub_login(hub, oidc_provider, "bob")
    assert r.status_code == 200
    alice = hub_api(hub, session, "GET", "/users/alice")
    assert alice.status_code == 200 and "auth_state" not in alice.json()
    for token in ("access_token", "refresh_token", "id_token"):
        assert hub.auth_state("alice")[token] not in alice.text
    # bob cannot give himself the scope either: JupyterHub refuses (400) a token with scopes he lacks
    minted = hub_api(hub, session, "POST", "/users/bob/tokens", json={"scopes": ["admin:auth_state"]})
    assert minted.status_code == 400 and "admin:auth_state" in minted.text
    # the admin panel and what it shows still work
    assert session.get(f"{hub.url}/hub/admin", timeout=30).status_code == 200
    names = {u["name"] for u in hub_api(hub, session, "GET", "/users").json()}
    assert {"alice", "bob"} <= names


def test_renamed_account_is_refused(hub, oidc_provider):
    """A name freed and taken by another account (same preferred_username, new `sub`) is not the
    old user: the hub keeps the first subject and refuses the newcomer, also after a logout."""
    session, r = hub_login(hub, oidc_provider, "erin")
    assert r.status_code == 200
    first_sub = oidc_provider.subjects()["erin"]
    assert hub.auth_state("erin")["sub"] == first_sub
    session.get(f"{hub.url}/hub/logout", timeout=30)
    new_sub = oidc_provider.recreate_user("erin")
    assert new_sub != first_sub
    session, r = hub_login(hub, oidc_provider, "erin")
    assert r.status_code == 403 and "belongs to another account" in r.text
    assert hub_api(hub, session, "GET", "/user").status_code == 403
    assert hub.auth_state("erin")["sub"] == first_sub
