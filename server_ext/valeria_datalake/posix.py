"""Home and scratch: jupyter-server's own async large-file manager, rooted at one folder.

Behaviour (hidden files, symlinks followed, atomic writes, chunked uploads, ``.ipynb_checkpoints``,
trash) is exactly jupyter-server's. Only ``mounts/posix.PosixMount`` talks to these instances,
with paths relative to their root; the contents manager emits the events, with full API paths.
"""

from __future__ import annotations

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager


class PosixRoot(AsyncLargeFileManager):
    """A POSIX mount (home or scratch) of the datalake contents manager."""

    def emit(self, data):  # the routing manager emits, with the API path the user sees
        return None

    def os_path(self, inner: str) -> str:
        """The OS path of ``inner``; a 404 if it would leave the root (jupyter-server's check)."""
        return self._get_os_path(inner)
