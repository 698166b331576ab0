"""Benchmark-only jupyter-server extension: measures the server's own event-loop stalls.

Loaded (by ``bench/run.py`` only, through ``ServerApp.jpserver_extensions``) into every
contender's server, so all are measured the same way from the inside. ``GET /valeria-bench/stall``
returns the report since the previous call and starts a new window.
"""

from __future__ import annotations

import json

from jupyter_server.base.handlers import JupyterHandler
from tornado import web
from tornado.ioloop import IOLoop
from valeria_platform.loopstall import LoopStallMonitor

MONITOR = LoopStallMonitor(interval=0.001)


class StallHandler(JupyterHandler):
    auth_resource = "contents"

    @web.authenticated
    def get(self) -> None:
        report = MONITOR.reset()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(report.as_dict()))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "stallext"}]


def _load_jupyter_server_extension(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"].rstrip("/")
    serverapp.web_app.add_handlers(".*$", [(base + "/valeria-bench/stall", StallHandler)])
    IOLoop.current().add_callback(MONITOR.start)
    serverapp.log.info("stallext: measuring event-loop stalls every %.0f ms", MONITOR.interval * 1000)
