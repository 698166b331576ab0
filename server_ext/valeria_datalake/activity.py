"""A busy kernel is activity: the idle culler must never stop a server in the middle of a computation.

jupyter-server's `last_activity()` (what jupyterhub-singleuser reports to the hub, and what the
idle culler reads) only moves on HTTP requests and kernel *messages*. A kernel computing for an
hour without printing sends none, so its server looked idle and was culled mid-run (measured with
the culler at a 10 s timeout). Every `interval` seconds this marks "now" in the server's
`last_activity_times` (a source `last_activity()` reads) while any kernel is busy.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tornado.ioloop import PeriodicCallback

#: key in ServerApp.web_app.settings["last_activity_times"]
KEY = "valeria_busy_kernels"


def busy_kernels(kernel_manager: Any) -> int:
    """How many kernels are executing right now (execution_state tracked by jupyter-server)."""
    kernels = getattr(kernel_manager, "_kernels", {})
    return sum(1 for k in list(kernels.values()) if getattr(k, "execution_state", None) == "busy")


def mark_if_busy(serverapp: Any) -> bool:
    """Record now as activity when a kernel is busy; True if it did."""
    if not busy_kernels(serverapp.kernel_manager):
        return False
    serverapp.web_app.settings.setdefault("last_activity_times", {})[KEY] = datetime.now(timezone.utc)
    return True


def start_busy_kernel_activity(serverapp: Any, interval: float) -> PeriodicCallback:
    """Mark busy kernels as activity every `interval` seconds (started on the server's loop)."""
    callback = PeriodicCallback(lambda: mark_if_busy(serverapp), interval * 1000)
    callback.start()
    return callback
