"""Server extension entry: installs the datalake contents manager and closes it at shutdown.

The extension is a jupyter-server ``ExtensionApp`` (as JupyterLab's ``LabApp`` is) for one
reason: ``stop_extension`` is the server's own shutdown hook, awaited by ``ServerApp._cleanup``
on SIGTERM/SIGINT, on ``POST /api/shutdown`` and in pytest-jupyter's teardown. There the
contents manager aborts unfinished multipart uploads (parts already in S3 would otherwise be
stored, and billed, until a lifecycle rule drops them) and closes its S3 clients.

Linking it also turns off JupyterLab's calls home (news feed, update check), unless the admin
configured them: ``LabApp`` reads its config from ``jupyter_server_config.json`` or
``jupyter_lab_config.*``, never from ``jupyter_server_config.d/*.json`` (those are only scanned
for ``jpserver_extensions``), so the package's enabling file cannot carry it.

This module imports no S3 code: ``jupyter server extension list`` instantiates the app.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Integer, Unicode, default

#: LabApp settings that stop JupyterLab from fetching its news feed and checking PyPI for updates
QUIET_LAB = {
    "news_url": None,
    "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
}


def link(serverapp: Any) -> None:
    """Make ``DatalakeContentsManager`` the contents manager, unless the admin chose another.

    Runs while extensions are linked, which is before ``ServerApp.init_configurables`` creates
    the contents manager, so setting the class here takes effect.
    """
    from .manager import DatalakeContentsManager

    configured = "contents_manager_class" in serverapp.config.get("ServerApp", {})
    if configured:
        serverapp.log.info(
            "valeria_datalake: keeping the configured contents manager %s",
            serverapp.contents_manager_class.__name__,
        )
        return
    serverapp.contents_manager_class = DatalakeContentsManager
    if "session_manager_class" not in serverapp.config.get("ServerApp", {}):
        # kernels learn their notebook's real location, for valeria_datalake.here()
        from .sessions import DatalakeSessionManager

        serverapp.session_manager_class = DatalakeSessionManager


def quiet_jupyterlab(serverapp: Any) -> list[str]:
    """Set :data:`QUIET_LAB` on the linked ``LabApp``, for each trait its config does not set.

    Extensions are linked in name order, so JupyterLab's app has loaded its config (the server's
    and its own files and command line) and has not built its handlers yet. Returns the traits set.
    """
    labs = [
        point.app
        for point in serverapp.extension_manager.extension_points.values()
        if point.app is not None and type(point.app).__name__ == "LabApp"
    ]
    changed = []
    for lab in labs:
        configured = lab.config.get("LabApp", {})
        for trait, value in QUIET_LAB.items():
            if trait not in configured and lab.has_trait(trait):
                setattr(lab, trait, value)
                changed.append(trait)
    return changed


def active_manager(serverapp: Any) -> Any:
    """The server's contents manager if it is ours, else None."""
    from .manager import DatalakeContentsManager

    cm = getattr(serverapp, "contents_manager", None)
    return cm if isinstance(cm, DatalakeContentsManager) else None


class DatalakeExtension(ExtensionApp):
    """Home, scratch and every datalake bucket in the file browser (``valeria_datalake``)."""

    name = "valeria_datalake"
    description = "Home, scratch and every datalake S3 bucket in one Jupyter file browser"

    quiet_jupyterlab = Bool(
        True,
        config=True,
        help="Turn off JupyterLab's news feed and update check (LabApp.news_url = None, "
        "LabApp.check_for_updates_class = NeverCheckForUpdate) where the admin did not configure them: "
        "a notebook server on a research platform does not phone home.",
    )

    metrics_port = Integer(
        0,
        config=True,
        help="Also serve the Prometheus metrics (jupyter-server's and the datalake's) without a token "
        "on this port, which the hub's proxy does not route: for the cluster's Prometheus, fenced by a "
        "NetworkPolicy. 0: off (the token-protected /metrics stays). Default: $VALERIA_METRICS_PORT.",
    )
    metrics_ip = Unicode(
        "0.0.0.0",
        config=True,
        help="Address the metrics port listens on (all interfaces: Prometheus scrapes the pod's IP).",
    )

    @default("metrics_port")
    def _default_metrics_port(self) -> int:
        raw = os.environ.get("VALERIA_METRICS_PORT", "").strip()
        return int(raw) if raw.isdigit() else 0

    _metrics_server: Any = None

    busy_kernel_interval = Float(
        30.0,
        config=True,
        help="Every this many seconds, a busy kernel counts as activity of the server, so the hub's "
        "idle culler never stops a long silent computation (0 turns it off). Keep it well below "
        "the activity report interval (JUPYTERHUB_ACTIVITY_INTERVAL, 300 s by default).",
    )

    _busy_callback: Any = None

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        super()._link_jupyter_server_extension(serverapp)
        link(serverapp)
        if self.quiet_jupyterlab:
            changed = quiet_jupyterlab(serverapp)
            if changed:
                self.log.info("valeria_datalake: JupyterLab calls home off: %s", ", ".join(changed))

    def initialize_settings(self) -> None:
        if self.metrics_port:
            from .metrics import serve_metrics

            self._metrics_server = serve_metrics(self.metrics_ip, self.metrics_port, self.log)
        if self.busy_kernel_interval > 0:
            from .activity import start_busy_kernel_activity

            self._busy_callback = start_busy_kernel_activity(self.serverapp, self.busy_kernel_interval)
        cm = active_manager(self.serverapp)
        if cm is None:
            self.log.info(
                "valeria_datalake: not active (contents manager is %s)",
                type(self.serverapp.contents_manager).__name__,
            )
            return
        self.log.info(
            "valeria_datalake: home %s, scratch %s, buckets as %s*",
            cm.root_dir,
            cm.scratch_dir if cm.scratch is not None else "(none)",
            cm.bucket_prefix,
        )

    def initialize_handlers(self) -> None:
        """The JupyterLab extension's endpoint (``api.py``); bucket downloads come through /files/."""
        from .api import HANDLERS

        self.handlers.extend(HANDLERS)

    async def stop_extension(self) -> None:
        """Abort unfinished chunked uploads and close the S3 clients (server shutdown)."""
        if self._metrics_server is not None:
            server, self._metrics_server = self._metrics_server, None
            await asyncio.to_thread(server.shutdown)  # waits for its serving thread's poll
            server.server_close()
        if self._busy_callback is not None:
            self._busy_callback.stop()
        cm = active_manager(self.serverapp)
        if cm is None:
            return
        pending = cm.s3.pending_uploads()
        if pending:
            self.log.info("valeria_datalake: aborting %d unfinished upload(s)", pending)
        try:
            await cm.close()
        except Exception as e:  # the server's other clean-up (kernels) must still run
            self.log.warning("valeria_datalake: closing the S3 clients failed: %s", type(e).__name__)
