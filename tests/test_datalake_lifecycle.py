"""The extension's life cycle: shutdown aborts unfinished uploads; JupyterLab does not phone home.

* In process: pytest-jupyter's server, shut down through jupyter-server's own hook.
* Out of process: a real ``jupyter server`` started from the repository's config file
  (``JUPYTER_CONFIG_PATH=server_ext/jupyter-config``, as ``make setup`` installs it), stopped with
  SIGTERM as Kubernetes stops a notebook pod.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from valeria_datalake.extension import DatalakeExtension
from valeria_platform.jupyterlab import chunk_model

from tests.fixtures.s3 import (
    OWN,
    SHARED_RO,
    SHARED_RW,
    USER,
    World,
    datalake_server_config,
    free_port,
    on_server_loop,
)

REPO = Path(__file__).resolve().parent.parent
CONFIG_PATH = REPO / "server_ext" / "jupyter-config"
VENV_BIN = Path(sys.executable).parent
MiB = 1024 * 1024


@pytest.fixture
def jp_server_config(moto_world: World, tmp_path, monkeypatch):
    return datalake_server_config(moto_world.site, tmp_path, monkeypatch)


# -- in process ----------------------------------------------------------------------------------


def test_the_extension_is_an_extension_app_with_a_shutdown_hook(jp_serverapp):
    points = jp_serverapp.extension_manager.extension_points
    assert isinstance(points["valeria_datalake"].app, DatalakeExtension)
    assert "valeria_datalake" in jp_serverapp.extension_manager.extension_apps


@on_server_loop
async def test_server_shutdown_aborts_unfinished_uploads_and_closes_s3(jp_serverapp, api, moto_world):
    d = moto_world.unique("shutdown")
    cm = jp_serverapp.contents_manager
    for key in (f"{d}/a.bin", f"{d}/b.bin"):  # two tabs, each 9 MiB into a bigger file
        path = f"{OWN}/{key}"
        for n in range(1, 10):
            code, m = await api("PUT", path, chunk_model(path, n, os.urandom(MiB)))
            assert code in (200, 201), m
    assert len(moto_world.open_uploads(d)) == 2  # a part of each is already in S3
    moto_world.site.counter.reset()

    # what ServerApp._cleanup runs on SIGTERM, on POST /api/shutdown and in pytest-jupyter's teardown
    await jp_serverapp.cleanup_extensions()

    assert moto_world.site.counter.stats()["ops"].get("AbortMultipartUpload") == 2
    assert moto_world.open_uploads(d) == []
    assert cm.s3.is_closed  # S3 clients closed (no filesystem, listing threads or upload timers)


# -- a real server from the repository's config file ----------------------------------------------


class RealServer:
    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.token = "lifecycle-test-token"
        home = tmp_path / "home"
        home.mkdir()
        run_env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "AWS_", "VALERIA_"))}
        run_env.update(
            env,
            HOME=str(tmp_path),
            JUPYTER_CONFIG_PATH=str(CONFIG_PATH),
            JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
            JUPYTER_DATA_DIR=str(tmp_path / "data"),
            JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        )
        self.log = (tmp_path / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "jupyter"),
                "server",
                "--no-browser",
                "--allow-root",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={home}",
            ],
            env=run_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = tmp_path / "server.log"

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if self.request("GET", "api/status")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("server did not start")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def real_server(tmp_path, moto_world):
    server = RealServer(tmp_path, moto_world.site.env(USER, (SHARED_RO, SHARED_RW)))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_sigterm_aborts_unfinished_uploads(real_server, moto_world):
    d = moto_world.unique("sigterm")
    path = f"{OWN}/{d}/big.bin"
    for n in range(1, 10):
        code, body = real_server.request("PUT", f"api/contents/{path}", chunk_model(path, n, os.urandom(MiB)))
        assert code in (200, 201), body
    assert len(moto_world.open_uploads(d)) == 1
    assert real_server.stop() == 0  # SIGTERM, as Kubernetes stops the pod
    assert moto_world.open_uploads(d) == []
    log = real_server.log_path.read_text()
    assert "aborting 1 unfinished upload" in log, log[-3000:]


def test_jupyterlab_does_not_phone_home(real_server):
    code, page = real_server.request("GET", "lab")
    assert code == 200
    html = page.decode()
    start = html.index('id="jupyter-config-data"')
    config = json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])
    assert config["news"] == {"disabled": True}
    code, news = real_server.request("GET", "lab/api/news")
    assert code == 200 and json.loads(news) == {"news": []}
    code, update = real_server.request("GET", "lab/api/update")
    assert code == 200 and json.loads(update) == {"notification": None}


def lab_settings(tmp_path: Path, *argv: str) -> list:
    """(news_url, update checker class name) of JupyterLab in a server initialized from the
    repository's config file, in a fresh process (extension apps are per process)."""
    args = [
        "--allow-root",
        "--no-browser",
        f"--port={free_port()}",
        f"--ServerApp.root_dir={tmp_path}",
        *argv,
    ]
    script = (
        "import json, sys\n"
        "from jupyter_server.serverapp import ServerApp\n"
        "app = ServerApp.instance()\n"
        "app.initialize(argv=sys.argv[1:])\n"
        "points = app.extension_manager.extension_points.values()\n"
        "(lab,) = [p.app for p in points if type(p.app).__name__ == 'LabApp']\n"
        "print(json.dumps([lab.news_url, lab.check_for_updates_class.__name__]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "AWS_"))}
    env.update(
        HOME=str(tmp_path),
        JUPYTER_CONFIG_PATH=str(CONFIG_PATH),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_lab_news_and_update_check_are_off_unless_the_admin_configured_them(tmp_path):
    assert lab_settings(tmp_path) == [None, "NeverCheckForUpdate"]
    feed = "https://news.example.org/feed.xml"
    assert lab_settings(tmp_path, f"--LabApp.news_url={feed}") == [feed, "NeverCheckForUpdate"]
    assert lab_settings(tmp_path, "--DatalakeExtension.quiet_jupyterlab=False") == [
        "https://jupyterlab.github.io/assets/feed.xml",
        "CheckForUpdate",
    ]
