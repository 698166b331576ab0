"""Process handling of the local platform (valeria_platform.procs): children started through
LocalService are gone after stop, with their temp folders; a child that dies before it is ready
fails with its log; what a stopped hub leaves running is found and stopped; and the session's leak
check (tests/fixtures/leaks.py) sees a process left under the test folders."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

import pytest
from valeria_platform.moto_s3 import MotoS3
from valeria_platform.procs import (
    LocalService,
    ManagedProcess,
    ServiceError,
    child_env,
    process_ended,
    stop_hub_servers,
)
from valeria_platform.tcpproxy import TcpProxyProcess

from tests.fixtures.leaks import leftovers, processes_under


def _alive(pid: int) -> bool:
    return not process_ended(pid)


def _sleeper(**env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env=child_env(**env), start_new_session=True
    )


@pytest.mark.parametrize("launcher", [lambda: MotoS3(subprocess=True), lambda: TcpProxyProcess()])
def test_launcher_children_and_temp_folders_are_gone_after_stop(launcher) -> None:
    with launcher() as service:
        (pid,) = service.pids.values()
        workdir = service.workdir
        assert _alive(pid) and service.port
        assert "READY" in service.log_path.read_text()
    assert not _alive(pid)
    assert not workdir.exists()
    assert service.pids == {}


def test_a_child_that_dies_before_it_is_ready_fails_with_its_log() -> None:
    class Broken(LocalService):
        temp_prefix = "valeria-broken-"

        def start(self) -> Broken:
            self._spawn_ready("broken", "valeria_platform.no_such_module", timeout=30)
            return self

    service = Broken()
    with pytest.raises(ServiceError) as err:
        service.start()
    service.stop()
    message = str(err.value)
    assert (
        "broken exited (code 1)" in message and "No module named valeria_platform.no_such_module" in message
    )
    assert not service.workdir.exists()


def test_a_child_that_exits_before_it_is_ready_takes_its_helpers_along(tmp_path) -> None:
    """As a hub that cannot bind its port exits and leaves the proxy it started."""
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "print('HELPER', p.pid, flush=True); time.sleep(0.5); sys.exit(3)"
    )
    proc = ManagedProcess("failing", [sys.executable, "-c", script], tmp_path / "failing.log")
    proc.start()
    with pytest.raises(ServiceError, match=r"failing exited \(code 3\)"):
        proc.wait_for(lambda: False, 30)
    (line,) = [x for x in (tmp_path / "failing.log").read_text().splitlines() if x.startswith("HELPER ")]
    pid = int(line.split()[1])
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the helper of a process that failed to start is still running"


def test_stop_hub_servers_stops_that_hubs_servers_and_kernels_only() -> None:
    # port 9 (discard) is never a hub here: no other test's servers can match these URLs
    hub = f"http://127.0.0.1:9/t-{secrets.token_hex(4)}"
    server = _sleeper(JUPYTERHUB_API_URL=f"{hub}/hub/api", JUPYTERHUB_USER="alice")
    kernel = _sleeper(JUPYTERHUB_API_URL=f"{hub}/hub/api")
    other = _sleeper(JUPYTERHUB_API_URL=f"{hub}0/hub/api")  # another hub whose URL starts the same
    try:
        assert sorted(stop_hub_servers(hub, timeout=10)) == sorted([server.pid, kernel.pid])
        assert server.wait(5) is not None and kernel.wait(5) is not None
        assert other.poll() is None
    finally:
        for proc in (server, kernel, other):
            proc.kill()
            proc.wait(5)


def test_the_leak_check_finds_a_process_left_in_the_test_folders(tmp_path) -> None:
    root = str(tmp_path)
    before = {p.pid for p in processes_under(root)}
    left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], cwd=tmp_path)
    try:
        assert [p.pid for p in leftovers(root, before, grace=0)] == [left.pid]
    finally:
        left.kill()
        left.wait(5)
    assert leftovers(root, before, grace=5) == []
