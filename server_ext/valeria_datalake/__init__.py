"""Notebook side of Valeria JupyterHub: home, scratch and every datalake bucket in one file browser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .here import here

if TYPE_CHECKING:
    from .manager import DatalakeContentsManager

__version__ = "0.1.0"
__all__ = ["DatalakeContentsManager", "__version__", "here"]


def __getattr__(name: str) -> Any:
    # imported on first use: `jupyter server extension list` need not load s3fs and botocore
    if name == "DatalakeContentsManager":
        from .manager import DatalakeContentsManager

        return DatalakeContentsManager
    raise AttributeError(name)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    # an ExtensionApp, for its shutdown hook (stop_extension); extension.py imports no S3 code
    from .extension import DatalakeExtension

    return [{"module": "valeria_datalake", "app": DatalakeExtension}]
