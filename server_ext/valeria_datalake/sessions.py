"""Sessions whose kernels know their notebook: ``VALERIA_NOTEBOOK`` in the kernel's environment.

jupyter-server sets ``JPY_SESSION_NAME`` to the session's name joined to the nearest existing
local folder of its path; JupyterLab names sessions after the file, so for a notebook in a bucket
(or in scratch, which is not below home) that is ``<home>/<notebook>``. This session manager adds
``VALERIA_NOTEBOOK``: ``s3://bucket/key`` for a bucket notebook, the real local path otherwise,
read by ``valeria_datalake.here()``.
"""

from __future__ import annotations

import os

from jupyter_server.services.sessions.sessionmanager import SessionManager


def notebook_location(cm: object, api_path: str) -> str | None:
    """``s3://bucket/key`` or the local path of ``api_path``; None if the manager is not ours."""
    locate = getattr(cm, "locate", None)
    if locate is None:
        return None
    try:
        loc = locate(api_path)
    except Exception:  # an illegal path gets no location (its session fails elsewhere)
        return None
    if loc.kind == "bucket":
        return f"s3://{loc.bucket}/{loc.inner}"
    if loc.kind == "scratch" and cm.scratch is not None:
        return os.path.join(cm.scratch.root_dir, loc.inner)
    if loc.kind == "home":
        return os.path.join(cm.root_dir, loc.inner)
    return None


class DatalakeSessionManager(SessionManager):
    """jupyter-server's session manager, plus ``VALERIA_NOTEBOOK`` for the kernel."""

    def get_kernel_env(self, path, name=None):  # type: ignore[override]
        env = super().get_kernel_env(path, name)
        where = notebook_location(self.contents_manager, path or "") if path else None
        if where:
            env["VALERIA_NOTEBOOK"] = where
        return env
