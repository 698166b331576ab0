"""The one interface every mount (home, scratch, each bucket) implements.

The contents manager (``manager.py``) parses an API path into a mount and a path inside it
(``inner``, ``""`` for the mount's top folder), then calls one of these methods. Models returned
carry full API paths. Moves and copies between two different mounts are not a mount's business:
the transfer engine (``transfer.py``) runs them on the :meth:`Mount.side` of each.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from tornado.web import HTTPError

from ..paths import join_path


def dotted(inner: str) -> bool:
    """Some segment of ``inner`` starts with a dot (jupyter-server's rule for hidden, by name)."""
    return any(part.startswith(".") for part in inner.split("/") if part)


class Mount(ABC):
    """One folder of the file browser backed by one storage (a POSIX root or a bucket)."""

    #: ``"home"``, ``"scratch"`` or ``"bucket"`` (for messages and metrics, never for branching)
    kind: str
    #: the mount's folder as an API path (``""`` for home)
    api_root: str = ""
    #: False: every write is refused before any request (a bucket shared read-only)
    writable: bool = True
    #: a folder a static file handler serves ``/files/`` from; None: :meth:`open` streams them
    local_root: str | None = None

    def api_path(self, inner: str) -> str:
        return join_path(self.api_root, inner)

    @contextlib.contextmanager
    def errors(self, inner: str, action: str) -> Iterator[None]:
        """Storage errors inside the block → ``HTTPError`` naming the API path (none for POSIX,
        whose manager already speaks HTTP)."""
        yield

    # -- reads -----------------------------------------------------------------------------------

    @abstractmethod
    async def get(
        self, inner: str, content: bool, type: str | None, format: str | None, require_hash: bool
    ) -> dict[str, Any]:
        """A contents model of a file or folder (``require_hash``: with ``hash``/``hash_algorithm``)."""

    @abstractmethod
    async def file_exists(self, inner: str) -> bool: ...

    @abstractmethod
    async def dir_exists(self, inner: str) -> bool: ...

    @abstractmethod
    async def is_hidden(self, inner: str) -> bool: ...

    async def taken_names(self, inner: str) -> set[str] | None:
        """Every name in the folder ``inner`` if one cheap request tells (for ``increment_filename``);
        None: ask name by name."""
        return None

    async def open(self, inner: str) -> Any:
        """A download stream (``s3/download.ObjectStream``) for mounts without a :attr:`local_root`."""
        raise HTTPError(404, f"Not a file: {self.api_path(inner)}")

    # -- writes (within this mount) --------------------------------------------------------------

    @abstractmethod
    async def save(self, model: dict[str, Any], inner: str) -> dict[str, Any]: ...

    @abstractmethod
    async def delete(self, inner: str) -> None:
        """Delete a file or a folder (its checkpoints are :meth:`delete_all_checkpoints`'s job)."""

    @abstractmethod
    async def rename(self, old: str, new: str) -> None:
        """Move within the mount (checkpoints follow in :meth:`rename_all_checkpoints`)."""

    @abstractmethod
    async def check_parent(self, inner: str) -> None:
        """Refuse (4xx) to create ``inner`` where its folder cannot hold it; before any write."""

    def check_name(self, inner: str) -> None:
        """Refuse (4xx) a name this mount cannot hold; called before any write."""
        return None  # every name is fine unless a mount says otherwise

    # -- transfers -------------------------------------------------------------------------------

    @abstractmethod
    def side(self, inner: str) -> Any:
        """The transfer engine's view of ``inner`` (``transfer.PosixSide`` or ``transfer.S3Side``)."""

    # -- checkpoints -----------------------------------------------------------------------------

    @abstractmethod
    async def create_checkpoint(self, inner: str) -> dict[str, Any]: ...

    @abstractmethod
    async def list_checkpoints(self, inner: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def restore_checkpoint(self, checkpoint_id: str, inner: str) -> None: ...

    @abstractmethod
    async def delete_checkpoint(self, checkpoint_id: str, inner: str) -> None: ...

    @abstractmethod
    async def delete_all_checkpoints(self, inner: str) -> None:
        """Drop the checkpoints of a deleted (or moved away) file or folder."""

    @abstractmethod
    async def rename_all_checkpoints(self, old: str, new: str) -> None:
        """Make the checkpoints follow a rename within this mount."""

    # -- kernels ---------------------------------------------------------------------------------

    @abstractmethod
    async def kernel_path(self, inner: str) -> str:
        """Where a kernel for the notebook ``inner`` starts, relative to home."""
