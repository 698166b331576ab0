"""Checkpoints of bucket files, kept in the same bucket under a hidden prefix (never in local /tmp).

One checkpoint per file, like jupyter-server's file checkpoints: ``.valeria_checkpoints/<key>``.
Creating and restoring are server-side copies (no bytes through the notebook server).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .backend import S3Bucket, run_bounded
from .models import CHECKPOINT_PREFIX, ObjectEntry

CHECKPOINT_ID = "checkpoint"


def checkpoint_key(key: str) -> str:
    return f"{CHECKPOINT_PREFIX}{key}"


def _model(last_modified: datetime) -> dict[str, Any]:
    return {"id": CHECKPOINT_ID, "last_modified": last_modified}


class S3Checkpoints:
    """Checkpoint operations for one bucket, by object key."""

    def __init__(self, bucket: S3Bucket) -> None:
        self.bucket = bucket

    async def create(self, key: str) -> dict[str, Any]:
        await self.bucket.copy_in(self.bucket.bucket, key, checkpoint_key(key), size=0)
        return _model(datetime.now(timezone.utc))

    async def list(self, key: str) -> list[dict[str, Any]]:
        try:
            entry = await self.bucket.head(checkpoint_key(key))
        except FileNotFoundError:
            return []
        return [_model(entry.last_modified)]

    async def restore(self, key: str, checkpoint_id: str) -> None:
        if checkpoint_id != CHECKPOINT_ID:
            raise FileNotFoundError(checkpoint_id)
        await self.bucket.copy_in(self.bucket.bucket, checkpoint_key(key), key, size=0)

    async def delete(self, key: str, checkpoint_id: str) -> None:
        if checkpoint_id != CHECKPOINT_ID:
            raise FileNotFoundError(checkpoint_id)
        # S3 deletes are idempotent; a missing checkpoint is a 404 in home, so here too
        await self.bucket.head(checkpoint_key(key))
        await self.bucket.delete_keys([checkpoint_key(key)])

    async def _entries(self, key: str) -> list[ObjectEntry]:
        """The checkpoint of the file ``key`` or of every file below the folder ``key``: one listing
        (a rename or delete need not know which ``key`` was)."""
        ck = checkpoint_key(key)
        return [e for e in await self.bucket.list_tree(ck) if e.key == ck or e.key.startswith(f"{ck}/")]

    async def delete_all(self, key: str) -> None:
        """Drop the checkpoint(s) of a file or folder that was deleted or moved away."""
        keys = [e.key for e in await self._entries(key)]
        if keys:
            await self.bucket.delete_keys(keys)

    async def move_all(self, old: str, new: str, limit: int = 16) -> None:
        """Follow a rename: copy the checkpoint(s) to the new key(s), then drop the old ones."""
        entries = await self._entries(old)
        if not entries:
            return
        old_ck, new_ck = checkpoint_key(old), checkpoint_key(new)
        await run_bounded(
            entries,
            lambda e: self.bucket.copy_in(self.bucket.bucket, e.key, new_ck + e.key[len(old_ck) :], e.size),
            limit,
        )
        await self.bucket.delete_keys([e.key for e in entries])
