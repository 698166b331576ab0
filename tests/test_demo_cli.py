"""``make demo``'s command: starts every service, prints the URL and logins, reuses its state on
a second run (here with PostgreSQL as the hub database), and stops everything on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from valeria_platform.oidc import NODE_DIR
from valeria_platform.procs import free_port

pytestmark = [pytest.mark.hub, pytest.mark.ceph]


class DemoRun:
    """``python -m valeria_platform.demo`` in a subprocess, its output collected line by line."""

    def __init__(self, state: Path, port: int, *extra: str) -> None:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(NODE_DIR / "node_modules" / ".bin"), env.get("PATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "valeria_platform.demo", "--state", str(state), "--hub-port", str(port),
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"the demo never printed {text!r}; output:\n{self.output}")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def terminate(self, timeout: float = 90) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(5)
        return code


def _alive(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.cmdline()[:3])}")
        except psutil.NoSuchProcess:
            pass
    return out


def _hub_version(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hub/api", timeout=5) as r:
        return r.read().decode()


def test_demo_starts_prints_logins_restarts_from_state_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()

    first = DemoRun(state, port)
    try:
        first.wait_for("started in")
        out = first.output
        for n in range(1, 5):
            assert f"[{n}/4]" in out
        assert f"http://127.0.0.1:{port}" in out
        assert "alice / demo" in out and "bob   / demo" in out
        assert '"version"' in _hub_version(port)
        children = first.descendants()
        names = " ".join(" ".join(p.cmdline()[:2]) for p in children)
        for daemon in (
            "radosgw",
            "ceph-mon",
            "ceph-osd",
            "keycloak_realm.mjs",
            "bao",
            "jupyterhub",
            "configurable-http-proxy",
        ):
            assert daemon in names, f"{daemon} is not running under the demo: {names}"
        pids = json.loads((state / "pids.json").read_text())
        assert {"ceph client.rgw.a", "oidc provider", "openbao", "jupyterhub"} <= set(pids), pids
        assert set(pids.values()) <= {p.pid for p in children}
        # a second demo on the same state folder refuses at once and leaves the first one alone
        clash = DemoRun(state, free_port())
        assert clash.proc.wait(timeout=60) == 1
        clash._reader.join(5)
        assert "already running" in clash.output, clash.output
        assert (state / "pids.json").exists() and '"version"' in _hub_version(port)
        first_seconds = float(re.search(r"started in ([\d.]+) s", out).group(1))
    finally:
        code = first.terminate()
    assert code == 0, first.output
    assert "stopped." in first.output
    assert not (state / "pids.json").exists()
    assert _alive(children) == [], "the demo left processes behind"
    with pytest.raises(OSError):
        _hub_version(port)
    crypt_key = (state / "hub" / "crypt-key").read_text()
    assert (state / "hub" / "jupyterhub.sqlite").exists(), "SQLite is the default hub database"

    # second run: same state folder, PostgreSQL this time
    second = DemoRun(state, port, "--postgres")
    try:
        second.wait_for("started in")
        assert "[5/5]" in second.output
        assert '"version"' in _hub_version(port)
        second_seconds = float(re.search(r"started in ([\d.]+) s", second.output).group(1))
        db_url = re.search(r"hub db +(postgresql\+psycopg2://\S+)", second.output).group(1)
        # the hub created its tables in PostgreSQL
        engine = sa.create_engine(db_url, connect_args={"password": (state / "hub-db-password").read_text()})
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
        engine.dispose()
        assert {"users", "servers", "oauth_clients"} <= tables, tables
        children = second.descendants()
    finally:
        code = second.terminate()
    assert code == 0, second.output
    assert _alive(children) == []
    assert (state / "hub" / "crypt-key").read_text() == crypt_key, "a restart must reuse the hub's keys"
    hub_log = (state / "logs" / "hub.log").read_text()
    assert (state / "hub-db-password").read_text() not in hub_log
    print(f"demo start: first run {first_seconds:.1f} s, second run (with PostgreSQL) {second_seconds:.1f} s")
