"""The user's own list of shared buckets: ``~/.config/valeria/shared-buckets.json`` in their home.

Ceph RGW's ListBuckets returns only the buckets a user owns, so a bucket a colleague shared by
bucket policy is invisible unless the admin lists it (``VALERIA_SHARED_BUCKETS``). The user adds
it here instead, from JupyterLab's "Add a shared bucket…" dialog (``api.py``). The file lives in
home, so it survives server restarts; it is read and written in a worker thread (home is NFS),
written atomically (a temporary file in the same folder, then ``os.replace``), and a corrupt file
is never overwritten: adding or removing then fails with a 409 that names the file.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

from tornado.web import HTTPError

#: format version written in the file
VERSION = 1


def default_path() -> str:
    """``$XDG_CONFIG_HOME/valeria/shared-buckets.json``, else ``~/.config/valeria/shared-buckets.json``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "valeria", "shared-buckets.json")


class UnreadableList(Exception):
    """The file exists but is not a list this code wrote (left untouched)."""


def _read(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        data = json.loads(text)
        names = data["buckets"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise UnreadableList(str(path)) from None
    return list(dict.fromkeys(names))


def _write(path: Path, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"version": VERSION, "buckets": names}, indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".shared-buckets.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class UserBucketList:
    """Read, add and remove bucket names in one user's JSON file (async; I/O in worker threads)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    async def names(self) -> list[str]:
        """The names in the file; [] when it is missing or unreadable (discovery must not fail)."""
        try:
            return await asyncio.to_thread(_read, self.path)
        except (UnreadableList, OSError):
            return []

    async def _change(self, name: str, add: bool) -> bool:
        async with self._lock:
            try:
                names = await asyncio.to_thread(_read, self.path)
            except UnreadableList:
                raise HTTPError(
                    409, f"Your shared-bucket list is not valid JSON, fix or delete it: {self.path}"
                ) from None
            if (name in names) == add:
                return False
            names = [*names, name] if add else [n for n in names if n != name]
            await asyncio.to_thread(_write, self.path, names)
            return True

    async def add(self, name: str) -> bool:
        """Add ``name``; False if it was already there."""
        return await self._change(name, add=True)

    async def remove(self, name: str) -> bool:
        """Remove ``name``; False if it was not there."""
        return await self._change(name, add=False)
