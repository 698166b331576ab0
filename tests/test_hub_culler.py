"""The idle culler, exactly as the OpenShift template runs it (service and role from the rendered
Deployment), with short limits against real notebook servers: an idle server is stopped, a server
whose kernel is busy with a long computation (no output, so no kernel messages) is not."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.fixtures.hub import RunningHub, hub_api, hub_base_env, hub_login, start_hub, wait_server
from tests.test_openshift_templates import one, render

pytestmark = pytest.mark.hub

CULL_TIMEOUT = 10


#: the culler's settings when jupyterhub_config.py defines it from the environment (VALERIA_CULL_*)
CULLER_ENV = {"VALERIA_CULL_IDLE_TIMEOUT": str(CULL_TIMEOUT), "VALERIA_CULL_EVERY": "2"}


def culler_args() -> list[str]:
    """The hub's command-line options that define the culler in the rendered template, if it does."""
    objects = render("valeria-hub.yaml", CULL_IDLE_TIMEOUT=str(CULL_TIMEOUT), CULL_EVERY="2")
    command = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0].get("command", [])
    return [a for a in command if a.startswith(("--JupyterHub.services=", "--JupyterHub.load_roles="))]


async def run_busy_cell(hub: RunningHub, user: str, token: str, code: str) -> str:
    """Start a kernel on the user's server and send it `code` to execute; return the kernel id."""
    from tornado.httpclient import AsyncHTTPClient

    headers = {"Authorization": f"token {token}"}
    client = AsyncHTTPClient()
    r = await client.fetch(
        f"{hub.url}/user/{user}/api/kernels", method="POST", body="{}", headers=headers, request_timeout=60
    )
    kernel_id = json.loads(r.body)["id"]
    ws_url = hub.url.replace("http", "ws", 1) + f"/user/{user}/api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(HTTPRequest(ws_url, headers=headers, connect_timeout=60))
    msg_id = uuid.uuid4().hex
    await ws.write_message(
        json.dumps(
            {
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": user,
                           "session": uuid.uuid4().hex, "version": "5.3"},
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False},
            }
        )
    )  # fmt: skip
    # wait until the kernel says it is busy with our request
    while True:
        msg = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        if msg.get("msg_type") == "status" and msg["content"]["execution_state"] == "busy":
            if msg["parent_header"].get("msg_id") == msg_id:
                break
    ws.close()
    return kernel_id


def server_of(hub: RunningHub, session, user: str) -> dict | None:
    return hub_api(hub, session, "GET", "/user").json()["servers"].get("")


def test_culler_stops_idle_servers_and_spares_busy_kernels(tmp_path, oidc_provider, openbao):
    env = hub_base_env(oidc_provider, openbao, tmp_path, **CULLER_ENV)
    # the notebook servers report activity more often than the (short) cull timeout, as the
    # default 300 s report interval is shorter than the template's one-hour timeout
    extra = [
        *culler_args(),
        '--Spawner.environment={"JUPYTERHUB_ACTIVITY_INTERVAL": "2"}',
        '--Spawner.args=["--DatalakeExtension.busy_kernel_interval=1"]',
    ]
    hub = start_hub(tmp_path, env, name="hub-culler", args=extra)
    try:
        assert "Starting managed service idle-culler" in hub.log_text()
        sessions = {}
        for user in ("alice", "bob"):
            sessions[user], r = hub_login(hub, oidc_provider, user)
            assert r.status_code == 200
        assert hub_api(hub, sessions["bob"], "POST", "/users/bob/server").status_code in (201, 202)
        wait_server(hub, sessions["bob"], ready=True)
        r = hub_api(hub, sessions["bob"], "POST", "/users/bob/tokens", json={"expires_in": 600})
        token = r.json()["token"]
        # a long computation that prints nothing: the kernel sends no message while it runs
        kernel_id = asyncio.run(run_busy_cell(hub, "bob", token, "import time; time.sleep(300)"))

        # alice starts a server and leaves it alone
        assert hub_api(hub, sessions["alice"], "POST", "/users/alice/server").status_code in (201, 202)
        deadline = time.monotonic() + 120
        while "Culling server alice" not in hub.log_text() and time.monotonic() < deadline:
            time.sleep(1)
        assert "Culling server alice" in hub.log_text(), "the idle server was not culled"
        wait_server(hub, sessions["alice"], ready=False)
        # several more cull rounds past the timeout: the busy server stays
        until = time.monotonic() + 2 * CULL_TIMEOUT
        while time.monotonic() < until:
            assert server_of(hub, sessions["bob"], "bob") is not None, "the busy server was culled"
            time.sleep(1)
        import requests

        kernels = requests.get(
            f"{hub.url}/user/bob/api/kernels", headers={"Authorization": f"token {token}"}, timeout=30
        ).json()
        assert [(k["id"], k["execution_state"]) for k in kernels] == [(kernel_id, "busy")]
        assert hub_api(hub, sessions["bob"], "DELETE", "/users/bob/server").status_code in (202, 204)
        wait_server(hub, sessions["bob"], ready=False)
    finally:
        hub.stop()
