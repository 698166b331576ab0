"""Server extension entry: installs the datalake contents manager and registers extra handlers."""

from __future__ import annotations

from typing import Any

from .manager import DatalakeContentsManager


def link(serverapp: Any) -> None:
    """Make ``DatalakeContentsManager`` the contents manager, unless the admin chose another.

    Runs while extensions are linked, which is before ``ServerApp.init_configurables`` creates
    the contents manager, so setting the class here takes effect.
    """
    configured = "contents_manager_class" in serverapp.config.get("ServerApp", {})
    if configured:
        serverapp.log.info(
            "valeria_datalake: keeping the configured contents manager %s",
            serverapp.contents_manager_class.__name__,
        )
        return
    serverapp.contents_manager_class = DatalakeContentsManager


def register_handlers(serverapp: Any) -> None:
    """Extra HTTP handlers of the extension (streaming downloads of bucket files go here)."""
    handlers: list[tuple[str, Any, dict[str, Any]]] = []
    if handlers:
        serverapp.web_app.add_handlers(".*$", handlers)


def _close_on_shutdown(serverapp: Any, cm: DatalakeContentsManager) -> None:
    """Close the S3 connection pool when the server cleans up its extensions."""
    cleanup_extensions = serverapp.cleanup_extensions

    async def cleanup_then_close() -> None:
        try:
            await cleanup_extensions()
        finally:
            await cm.close()

    serverapp.cleanup_extensions = cleanup_then_close


def load(serverapp: Any) -> None:
    cm = serverapp.contents_manager
    if isinstance(cm, DatalakeContentsManager):
        register_handlers(serverapp)
        _close_on_shutdown(serverapp, cm)
        serverapp.log.info(
            "valeria_datalake: home %s, scratch %s, buckets as %s*",
            cm.root_dir,
            cm.scratch_dir if cm.scratch is not None else "(none)",
            cm.bucket_prefix,
        )
    else:
        serverapp.log.info("valeria_datalake: not active (contents manager is %s)", type(cm).__name__)
