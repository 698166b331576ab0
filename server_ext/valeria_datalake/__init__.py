"""Notebook side of Valeria JupyterHub: home, scratch and every datalake bucket in one file browser."""

from __future__ import annotations

from typing import Any

from .manager import DatalakeContentsManager

__all__ = ["DatalakeContentsManager"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "valeria_datalake"}]


def _link_jupyter_server_extension(serverapp: Any) -> None:
    from .extension import link

    link(serverapp)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .extension import load

    load(serverapp)
