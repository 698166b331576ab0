"""PostgreSQL for the hub database: password auth on loopback, SQLAlchemy URL without password."""

from __future__ import annotations

import psycopg2
import pytest
import sqlalchemy as sa
from valeria_platform.postgres import PostgresServer


def test_connect_with_the_url_and_separate_password(postgres: PostgresServer) -> None:
    url = postgres.url("jupyterhub")
    assert url.startswith("postgresql+psycopg2://jupyterhub@127.0.0.1:")
    assert postgres.hub_password not in url
    engine = sa.create_engine(url, connect_args={"password": postgres.hub_password})
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (x int)"))
        conn.execute(sa.text("INSERT INTO t VALUES (42)"))
        assert conn.execute(sa.text("SELECT current_user, sum(x) FROM t")).one() == ("jupyterhub", 42)
    engine.dispose()


def test_wrong_password_is_refused(postgres: PostgresServer) -> None:
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        postgres.connect("jupyterhub", user="jupyterhub", password="wrong")


def test_create_database_is_idempotent(postgres: PostgresServer) -> None:
    postgres.create_database("jupyterhub", "jupyterhub", postgres.hub_password)
    with postgres.connect("jupyterhub", user="jupyterhub", password=postgres.hub_password) as conn:
        assert conn.server_version >= 150000
