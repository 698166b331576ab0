"""Upgrades and restarts while people work: the hub (with PostgreSQL) is stopped with SIGTERM and
started again while alice's server runs. Her server keeps running, the new hub re-adopts it (the
local spawner's persisted process identity), her browser session keeps working through the proxy
without a new login, and no second server is spawned."""

from __future__ import annotations

import json

import pytest
import requests
from valeria_hub.stages import parse_report

from tests.fixtures.hub import (
    RunningHub,
    hub_api,
    hub_login,
    postgres_hub_env,
    singleuser_processes,
    start_hub,
    wait_server,
    xsrf_cookie,
)

pytestmark = pytest.mark.hub


def open_server(hub: RunningHub, session: requests.Session, user: str) -> None:
    """Open the user's JupyterLab page as a browser does (the server's own OAuth dance with the hub)."""
    r = session.get(f"{hub.url}/user/{user}/lab", timeout=60)
    assert r.status_code == 200 and r.url.startswith(f"{hub.url}/user/{user}/"), (r.status_code, r.url)


def save(hub: RunningHub, session: requests.Session, user: str, path: str, text: str) -> requests.Response:
    """A save from the open notebook tab: PUT through the proxy with the page's XSRF cookie."""
    return session.put(
        f"{hub.url}/user/{user}/api/contents/{path}",
        data=json.dumps({"type": "file", "format": "text", "content": text}),
        headers={"X-XSRFToken": xsrf_cookie(session, f"/user/{user}/")},
        allow_redirects=False,
        timeout=60,
    )


def test_hub_restart_keeps_and_readopts_running_server(tmp_path, postgres, oidc_provider, openbao):
    env, db = postgres_hub_env(postgres, oidc_provider, openbao, tmp_path)
    hub = start_hub(tmp_path, env, name="hub-restart")
    hub.db = db
    try:
        session, r = hub_login(hub, oidc_provider, "alice")
        assert r.status_code == 200
        assert hub_api(hub, session, "POST", "/users/alice/server").status_code in (201, 202)
        wait_server(hub, session, ready=True)
        (before,) = singleuser_processes(hub, "alice")
        # the spawn logged its stage timings (read back by bench/hub_load.py)
        (stages,) = [parse_report(line) for line in hub.log_text().splitlines() if parse_report(line)]
        assert stages[0] == "alice"
        assert set(stages[1]) == {
            "token_refresh",
            "vault_login",
            "vault_read",
            "vault_revoke",
            "plan",
            "start",
        }
        open_server(hub, session, "alice")
        r = save(hub, session, "alice", "before.txt", "written before the restart")
        assert r.status_code == 201, r.text

        hub.proc.stop(timeout=20)  # SIGTERM to the hub and its proxy only, as a Deployment rollout
        assert before.is_running(), "the hub's shutdown stopped alice's server"

        hub = start_hub(tmp_path, env, name="hub-restart")
        hub.db = db
        assert "alice still running" in hub.log_text()
        # her open tab saves again: same cookies, no redirect to the login service
        r = save(hub, session, "alice", "after.txt", "written after the restart")
        assert r.status_code == 201, (r.status_code, r.headers.get("location"), r.text[:300])
        r = session.get(f"{hub.url}/user/alice/api/contents/before.txt", allow_redirects=False, timeout=30)
        assert r.status_code == 200 and r.json()["content"] == "written before the restart"
        me = hub_api(hub, session, "GET", "/user").json()
        assert me["servers"][""]["ready"] is True
        # the same process, and only it
        assert [p.pid for p in singleuser_processes(hub, "alice")] == [before.pid]
        assert hub.log_text().count("Spawning jupyterhub-singleuser") == 1
        assert hub_api(hub, session, "DELETE", "/users/alice/server").status_code in (202, 204)
        wait_server(hub, session, ready=False)
        assert not before.is_running()
    finally:
        hub.stop()


async def test_local_spawner_does_not_adopt_a_reused_pid():
    """After a reboot or container restart the stored pid may name another process: not ours."""
    import subprocess
    from types import SimpleNamespace

    from valeria_hub.local import LocalDatalakeSpawner, process_start_time

    stranger = subprocess.Popen(["sleep", "60"])
    try:
        spawner = LocalDatalakeSpawner(user=SimpleNamespace(name="alice", url="/user/alice/"))
        # the state of a server that had this pid, started at another time
        spawner.load_state({"pid": stranger.pid, "started": process_start_time(stranger.pid) - 1})
        assert await spawner.poll() == 0 and spawner.pid == 0 and spawner.get_state() == {}
        # an old state without a start time is not adopted either
        spawner.load_state({"pid": stranger.pid})
        assert await spawner.poll() == 0
        # the process it really started is
        spawner.load_state({"pid": stranger.pid, "started": process_start_time(stranger.pid)})
        assert await spawner.poll() is None
        assert spawner.get_state() == {"pid": stranger.pid, "started": process_start_time(stranger.pid)}
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.kill()
        stranger.wait()
