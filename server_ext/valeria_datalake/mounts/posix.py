"""Home and scratch: a POSIX folder served by jupyter-server's own async large-file manager."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from tornado.web import HTTPError

from ..paths import join_path
from ..posix import PosixRoot
from ..transfer import PosixSide
from .base import Mount, dotted


class PosixMount(Mount):
    """A mount whose every operation is ``PosixRoot``'s (jupyter-server's), with API paths.

    ``reserved`` names the top-level entries a mount of the file browser shadows (``scratch``,
    ``datalake_*`` in home): they are hidden here and cannot be written.
    """

    def __init__(
        self,
        kind: str,
        root: PosixRoot,
        api_root: str = "",
        home_dir: str | None = None,
        reserved: Callable[[str], bool] | None = None,
    ) -> None:
        self.kind = kind
        self.root = root
        self.api_root = api_root
        self.root_dir = root.root_dir
        self.local_root = root.root_dir
        #: the server's root folder, which kernel paths are relative to
        self.home_dir = os.path.abspath(home_dir or root.root_dir)
        self.reserved = reserved

    def _shadowed(self, inner: str) -> bool:
        return self.reserved is not None and "/" not in inner and self.reserved(inner)

    @contextlib.contextmanager
    def errors(self, inner: str, action: str) -> Iterator[None]:
        """A path below a file (``notes.txt/x``) makes jupyter_core's ``is_hidden`` raise
        NotADirectoryError: a 500 for a client mistake. A 404."""
        try:
            yield
        except NotADirectoryError:
            raise HTTPError(404, f"No such file or directory: {self.api_path(inner)}") from None

    def check_name(self, inner: str) -> None:
        if self._shadowed(inner):
            raise HTTPError(400, f"Name reserved for a datalake folder: {inner}")

    def _rebase(self, model: dict[str, Any]) -> dict[str, Any]:
        """Paths relative to the POSIX root → API paths."""
        if not self.api_root:
            return model
        model["path"] = join_path(self.api_root, model["path"])
        if model["path"] == self.api_root:
            model["name"] = self.api_root
        if model.get("type") == "directory" and isinstance(model.get("content"), list):
            for child in model["content"]:
                child["path"] = join_path(self.api_root, child["path"])
        return model

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, inner, content=True, type=None, format=None, require_hash=False):
        if self._shadowed(inner):
            raise HTTPError(404, f"No such file or directory: {self.api_path(inner)}")
        with self.errors(inner, "read"):
            model = await self.root.get(
                inner, content=content, type=type, format=format, require_hash=require_hash
            )
        return self._rebase(model)

    async def file_exists(self, inner: str) -> bool:
        return not self._shadowed(inner) and await self.root.file_exists(inner)

    async def dir_exists(self, inner: str) -> bool:
        return not self._shadowed(inner) and await self.root.dir_exists(inner)

    async def is_hidden(self, inner: str) -> bool:
        try:
            return await self.root.is_hidden(inner)
        except NotADirectoryError:  # a path below a file (jupyter-server: 500): hidden by name only
            return dotted(inner)

    # -- writes ----------------------------------------------------------------------------------

    async def check_parent(self, inner: str) -> None:
        """The folder must exist (jupyter-server would say 500)."""
        parent = inner.rpartition("/")[0]
        if parent and not await self.root.dir_exists(parent):
            raise HTTPError(404, f"No such directory: {self.api_path(parent)}")

    async def save(self, model, inner):
        await self.check_parent(inner)
        if model.get("type") in ("file", "notebook") and await self.root.dir_exists(inner):
            # jupyter-server answers 500 ("Is a directory"); the differential test found it
            raise HTTPError(400, f"A folder of that name exists: {self.api_path(inner)}")
        return self._rebase(await self.root.save(model, inner))

    async def delete(self, inner: str) -> None:
        with self.errors(inner, "delete"):
            await self.root.delete_file(inner)

    async def rename(self, old: str, new: str) -> None:
        with self.errors(old, "rename"):
            await self.root.rename_file(old, new)

    def side(self, inner: str) -> PosixSide:
        return PosixSide(self.root, inner)

    # -- checkpoints: jupyter-server's own (``.ipynb_checkpoints`` next to the file) ---------------

    async def _checkpoint_call(self, inner: str, call):
        if not await self.root.file_exists(inner):  # jupyter-server answers 500 for a missing file
            raise HTTPError(404, f"No such file: {self.api_path(inner)}")
        try:
            return await call()
        except FileNotFoundError:
            raise HTTPError(404, f"No such file or checkpoint: {self.api_path(inner)}") from None

    async def create_checkpoint(self, inner):
        return await self._checkpoint_call(inner, lambda: self.root.create_checkpoint(inner))

    async def list_checkpoints(self, inner):
        return await self._checkpoint_call(inner, lambda: self.root.list_checkpoints(inner))

    async def restore_checkpoint(self, checkpoint_id, inner):
        async def restore() -> None:
            # jupyter-server copies the checkpoint without looking: a missing one was a 500
            if checkpoint_id not in [c["id"] for c in await self.root.list_checkpoints(inner)]:
                raise FileNotFoundError(checkpoint_id)
            await self.root.restore_checkpoint(checkpoint_id, inner)

        return await self._checkpoint_call(inner, restore)

    async def delete_checkpoint(self, checkpoint_id, inner):
        return await self._checkpoint_call(inner, lambda: self.root.delete_checkpoint(checkpoint_id, inner))

    async def delete_all_checkpoints(self, inner: str) -> None:
        await self.root.checkpoints.delete_all_checkpoints(inner)

    async def rename_all_checkpoints(self, old: str, new: str) -> None:
        await self.root.checkpoints.rename_all_checkpoints(old, new)

    # -- kernels ---------------------------------------------------------------------------------

    async def kernel_path(self, inner: str) -> str:
        folder = await self.root.get_kernel_path(inner)
        if os.path.abspath(self.root_dir) == self.home_dir:
            return folder
        # a relative path from home, which the kernel manager normalizes
        return os.path.relpath(self.root.os_path(folder), self.home_dir)
