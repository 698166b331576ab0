"""The local spawner's servers of one class never share a port. JupyterHub's random_port() binds to
port 0 and closes, so the kernel may hand the same port out again; with 50 servers starting at
once one collided per bench run (the second server exits "address in use", the hub finds the first
one on that port and routes the student to someone else's server: a 404 on the first /lab).
The kernel's repeat is planted by replacing jupyterhub.utils.random_port as valeria_hub.local
imports it (the kernel's choice cannot be forced otherwise)."""

from __future__ import annotations

import pytest
from valeria_hub import local

pytestmark = pytest.mark.hub


def test_a_port_handed_out_twice_is_not_given_to_a_second_server(monkeypatch):
    handed = iter([41000, 41000, 41000, 41001])
    monkeypatch.setattr(local, "random_port", lambda: next(handed))
    monkeypatch.setattr(local, "_PORTS_IN_USE", set())
    first, second = local.distinct_port(), local.distinct_port()
    assert (first, second) == (41000, 41001)


async def test_a_stopped_server_gives_its_port_back(monkeypatch):
    monkeypatch.setattr(local, "random_port", lambda: 41002)
    monkeypatch.setattr(local, "_PORTS_IN_USE", set())

    class Base:
        async def start(self):
            return ("127.0.0.1", self.port)

        async def stop(self, now=False):
            return None

    class Spawner(local.DistinctPortMixin, Base):
        port = 0

    spawner = Spawner()
    assert await spawner.start() == ("127.0.0.1", 41002)
    assert local._PORTS_IN_USE == {41002}
    await spawner.stop()
    assert local._PORTS_IN_USE == set()
