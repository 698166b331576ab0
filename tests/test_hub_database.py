"""PostgreSQL restarted under a running hub: requests during the outage get a clear 503 quickly (no
hang, no bare 500), and the hub reconnects by itself when the database is back."""

from __future__ import annotations

import secrets

import pytest
from valeria_platform.postgres import PostgresServer

from tests.fixtures.hub import hub_api, hub_base_env, hub_login, start_hub

pytestmark = pytest.mark.hub

DB_DOWN = "The hub database is not reachable right now"


def test_hub_survives_a_postgres_restart(tmp_path, oidc_provider, openbao):
    # a PostgreSQL of its own: the session's server is shared with other tests
    pg = PostgresServer(tmp_path / "pg").start()
    hub = None
    try:
        password = secrets.token_urlsafe(16)
        pg.create_database("hubdb", "hubuser", password)
        env = hub_base_env(
            oidc_provider,
            openbao,
            tmp_path,
            VALERIA_DB_URL=pg.url("hubdb", "hubuser"),
            VALERIA_DB_PASSWORD=password,
        )
        hub = start_hub(tmp_path, env, name="hub-db-restart")
        alice, r = hub_login(hub, oidc_provider, "alice")
        assert r.status_code == 200

        def during_the_outage() -> None:
            # a new login: a clear error page, not a hang and not a bare 500
            _, r = hub_login(hub, oidc_provider, "bob")
            assert r.status_code == 503 and DB_DOWN in r.text, (r.status_code, r.text[-500:])
            # an API call of a logged-in user: the same, as JSON (not "403: not logged in")
            r = hub_api(hub, alice, "GET", "/user")
            assert r.status_code == 503 and DB_DOWN in r.json()["message"], r.text[:300]
            assert password not in r.text

        pg.restart_after(during_the_outage)  # back on the same port, with its data
        # the hub reconnects by itself: the old session works, and so does a new login
        me = hub_api(hub, alice, "GET", "/user")
        assert me.status_code == 200 and me.json()["name"] == "alice"
        _, r = hub_login(hub, oidc_provider, "bob")
        assert r.status_code == 200
        assert hub.proc.running()
        assert password not in hub.log_text()
    finally:
        if hub is not None:
            hub.stop()
        pg.stop()
