"""The local platform listens on loopback only: every listening socket of its daemons (Ceph's
monitor, OSD and RGW, the OIDC stand-in, OpenBao, PostgreSQL, and their children) is bound to
127.0.0.1 or ::1. Measured before the fix: ceph-osd listened on 0.0.0.0 (four ports)."""

from __future__ import annotations

import ipaddress
import socket

import psutil
import pytest

pytestmark = pytest.mark.ceph


def _tree(pid: int) -> set[int]:
    try:
        process = psutil.Process(pid)
        return {pid, *(child.pid for child in process.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def listening(pids: set[int]) -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every listening TCP socket and bound UDP socket."""
    found = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.pid not in pids or not conn.laddr:
            continue
        if conn.type == socket.SOCK_STREAM and conn.status != psutil.CONN_LISTEN:
            continue
        if conn.type == socket.SOCK_DGRAM and conn.raddr:
            continue
        found.append((conn.pid, psutil.Process(conn.pid).name(), conn.laddr.ip, conn.laddr.port))
    return found


def test_every_platform_daemon_listens_on_loopback_only(ceph_cluster, oidc_provider, openbao, postgres):
    pids: set[int] = set()
    for pid in [*ceph_cluster.pids.values(), oidc_provider.pid, openbao.pid, postgres.pid]:
        assert pid, "a platform daemon is not running"
        pids |= _tree(pid)
    sockets = listening(pids)
    names = {name for _, name, _, _ in sockets}
    assert {"ceph-mon", "ceph-osd", "radosgw"} <= names, sockets
    exposed = [s for s in sockets if not ipaddress.ip_address(s[2]).is_loopback]
    assert exposed == [], f"listening beyond loopback: {exposed}"
