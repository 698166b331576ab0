"""``DatalakeCheckpoints``: jupyter-server's checkpoints API, routed to the mount of each path.

The contents manager's ``checkpoints_class`` (as jupyter-server documents it): home and scratch
keep jupyter-server's ``.ipynb_checkpoints`` files, buckets a hidden prefix in the same bucket
(``s3/checkpoints.py``). jupyter-server's ``delete``/``rename`` template methods call
:meth:`delete_all_checkpoints`/:meth:`rename_all_checkpoints` after ``delete_file``/``rename_file``.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.contents.checkpoints import AsyncCheckpoints
from tornado.web import HTTPError


class DatalakeCheckpoints(AsyncCheckpoints):
    """Checkpoints of ``DatalakeContentsManager`` (its ``parent``), one mount at a time."""

    async def _file(self, path: str) -> tuple[Any, str]:
        mount, loc = await self.parent.mount_at(path)
        if mount is None or loc.is_mount_root:
            raise HTTPError(400, f"No checkpoints for a folder: {loc.api_path or '/'}")
        return mount, loc.inner

    async def create_checkpoint(self, contents_mgr, path):
        mount, inner = await self._file(path)
        return await mount.create_checkpoint(inner)

    async def restore_checkpoint(self, contents_mgr, checkpoint_id, path):
        mount, inner = await self._file(path)
        return await mount.restore_checkpoint(checkpoint_id, inner)

    async def list_checkpoints(self, path):
        mount, inner = await self._file(path)
        return await mount.list_checkpoints(inner)

    async def delete_checkpoint(self, checkpoint_id, path):
        mount, inner = await self._file(path)
        return await mount.delete_checkpoint(checkpoint_id, inner)

    async def rename_checkpoint(self, checkpoint_id, old_path, new_path):
        await self.rename_all_checkpoints(old_path, new_path)

    async def delete_all_checkpoints(self, path):
        mount, inner = await self._file(path)
        await mount.delete_all_checkpoints(inner)

    async def rename_all_checkpoints(self, old_path, new_path):
        """Checkpoints follow a rename within a mount; a move to another mount leaves them behind
        as a delete does (the transfer engine copies files, not their history)."""
        (src, old), (dst, new) = await self._file(old_path), await self._file(new_path)
        if src.api_root == dst.api_root:
            if old != new:
                await src.rename_all_checkpoints(old, new)
        else:
            await src.delete_all_checkpoints(old)
