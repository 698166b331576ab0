"""Benchmark-only jupyter-server extension: measures the server's own event-loop stalls.

Loaded (by ``bench/run.py`` only, through ``ServerApp.jpserver_extensions``) into every
contender's server, so all are measured the same way from the inside. ``GET /valeria-bench/stall``
returns the report since the previous call and starts a new window.
"""

from __future__ import annotations

import gc
import json
import time

from jupyter_server.base.handlers import JupyterHandler
from tornado import web
from tornado.ioloop import IOLoop
from valeria_platform.loopstall import LoopStallMonitor

MONITOR = LoopStallMonitor(interval=0.001)
#: longest garbage-collector pause since the last report, and when the current one started
_GC = {"max_ms": 0.0, "started": 0.0}


def _gc_timer(phase: str, info: dict) -> None:
    if phase == "start":
        _GC["started"] = time.perf_counter()
    else:
        _GC["max_ms"] = max(_GC["max_ms"], (time.perf_counter() - _GC["started"]) * 1000)


class StallHandler(JupyterHandler):
    auth_resource = "contents"

    @web.authenticated
    def get(self) -> None:
        report = MONITOR.reset().as_dict()
        report["max_gc_ms"], _GC["max_ms"] = round(_GC["max_ms"], 2), 0.0
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(report))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "stallext"}]


def _load_jupyter_server_extension(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"].rstrip("/")
    serverapp.web_app.add_handlers(".*$", [(base + "/valeria-bench/stall", StallHandler)])
    IOLoop.current().add_callback(MONITOR.start)
    gc.callbacks.append(_gc_timer)
    serverapp.log.info("stallext: measuring event-loop stalls every %.0f ms", MONITOR.interval * 1000)
