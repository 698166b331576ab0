"""Copies and moves of files and whole folders between mounts (home, scratch, buckets).

Every transfer has the same shape, whatever the two sides are:

1. scan the source (what files, what folders, what sizes) and refuse if the destination exists;
2. copy each file with bounded concurrency (server-side ``CopyObject`` between buckets, streaming
   between S3 and disk), creating the folders (marker objects for empty folders in S3);
3. verify: every destination file exists with the source's size (one listing for S3);
4. only then, for a move, delete exactly the source entries that were copied.

Any failure in 1-3 removes what was written at the destination (best effort) and leaves the
source untouched. Nested symbolic links to folders are refused in a folder move or copy: following
one would copy (and, for a move, could delete from) a tree outside the folder the user picked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat as stat_mod
from dataclasses import dataclass, field

from tornado.web import HTTPError

from .metrics import counted_transfer
from .posix import PosixRoot
from .s3.backend import S3Bucket, gather_bounded
from .s3.models import FOLDER_MARKER, is_marker

#: files up to this size go through memory in one request; bigger ones are streamed by s3fs
INLINE_LIMIT = 64 * 1024 * 1024
POSIX_CHECKPOINT_DIR = ".ipynb_checkpoints"


@dataclass
class Tree:
    kind: str  # "file" or "directory"
    #: (relative path, size); the single entry of a file is ("", size)
    files: list[tuple[str, int]] = field(default_factory=list)
    #: relative folder paths below the top (not "")
    dirs: list[str] = field(default_factory=list)
    #: S3 only: every key to delete when the source is moved away (markers included)
    keys: list[str] = field(default_factory=list)


def _join(a: str, b: str) -> str:
    return f"{a}/{b}" if a and b else (a or b)


class PosixSide:
    def __init__(self, root: PosixRoot, inner: str) -> None:
        self.root = root
        self.inner = inner

    def path(self, rel: str = "") -> str:
        return self.root.os_path(_join(self.inner, rel))

    async def exists(self) -> bool:
        return await asyncio.to_thread(os.path.lexists, self.path())

    def _scan(self) -> Tree | None:
        top = self.path()
        if not os.path.lexists(top):
            return None
        if not os.path.isdir(top):
            return Tree("file", [("", os.stat(top).st_size)])
        tree = Tree("directory")
        for dirpath, dirnames, filenames in os.walk(top):
            rel_dir = os.path.relpath(dirpath, top)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            dirnames[:] = [d for d in dirnames if d != POSIX_CHECKPOINT_DIR]
            for d in dirnames:
                if os.path.islink(os.path.join(dirpath, d)):
                    raise HTTPError(400, f"Folder contains a link to another folder: {_join(rel_dir, d)}")
                tree.dirs.append(_join(rel_dir, d))
            for f in filenames:
                full = os.path.join(dirpath, f)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    raise HTTPError(400, f"Folder contains a broken link: {_join(rel_dir, f)}") from None
                if not stat_mod.S_ISREG(st.st_mode):
                    raise HTTPError(400, f"Not a regular file: {_join(rel_dir, f)}")
                tree.files.append((_join(rel_dir, f), st.st_size))
        return tree

    async def scan(self) -> Tree | None:
        return await asyncio.to_thread(self._scan)

    async def make_dirs(self, tree: Tree) -> None:
        def run() -> None:
            os.makedirs(self.path(), exist_ok=False)
            for d in tree.dirs:
                os.makedirs(self.path(d), exist_ok=True)

        await asyncio.to_thread(run)

    async def verify(self, tree: Tree) -> None:
        def run() -> None:
            for rel, size in tree.files:
                if os.path.getsize(self.path(rel)) != size:
                    raise OSError(f"size mismatch after copy: {rel}")

        await asyncio.to_thread(run)

    async def remove_source(self, tree: Tree) -> None:
        def run() -> None:
            top = self.path()
            if tree.kind == "file" or os.path.islink(top):
                os.unlink(top)
                return
            for rel, _ in tree.files:
                os.unlink(self.path(rel))
            for d in [*sorted(tree.dirs, key=lambda d: d.count("/"), reverse=True), ""]:
                p = self.path(d)
                shutil.rmtree(os.path.join(p, POSIX_CHECKPOINT_DIR), ignore_errors=True)
                try:
                    os.rmdir(p)
                except OSError:  # something appeared meanwhile: keep it
                    pass

        await asyncio.to_thread(run)

    async def cleanup(self, tree: Tree) -> None:
        def run() -> None:
            top = self.path()
            if tree.kind == "file":
                if os.path.lexists(top):
                    os.unlink(top)
            else:
                shutil.rmtree(top, ignore_errors=True)

        await asyncio.to_thread(run)


class S3Side:
    def __init__(self, bucket: S3Bucket, inner: str) -> None:
        self.bucket = bucket
        self.inner = inner

    def key(self, rel: str = "") -> str:
        return _join(self.inner, rel)

    async def exists(self) -> bool:
        try:
            await self.bucket.head(self.inner)
            return True
        except FileNotFoundError:
            return await self.bucket.folder_exists(self.inner + "/")

    async def scan(self) -> Tree | None:
        try:
            entry = await self.bucket.head(self.inner)
            return Tree("file", [("", entry.size)], keys=[self.inner])
        except FileNotFoundError:
            pass
        prefix = self.inner + "/"
        entries = await self.bucket.list_tree(prefix)
        if not entries:
            return None
        tree = Tree("directory", keys=[e.key for e in entries])
        dirs: set[str] = set()
        for e in entries:
            rel = e.key[len(prefix) :]
            if not rel:  # a console-made "folder/" object: the folder itself
                continue
            if is_marker(rel) and e.size == 0:  # empty markers only: a real ".keep" file is data
                folder = rel[:-1] if rel.endswith("/") else rel.rpartition("/")[0]
            else:
                tree.files.append((rel, e.size))
                folder = rel.rpartition("/")[0]
            parts = folder.split("/") if folder else []
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        tree.dirs = sorted(dirs)
        return tree

    async def make_dirs(self, tree: Tree) -> None:
        """Marker objects for the folders that would otherwise not exist (no file below them)."""
        has_files = {""}
        for rel, _ in tree.files:
            parts = rel.split("/")[:-1]
            for i in range(len(parts) + 1):
                has_files.add("/".join(parts[:i]))
        empty = [d for d in ["", *tree.dirs] if d not in has_files]
        for d in empty:
            await self.bucket.write(_join(self.key(d), FOLDER_MARKER), b"")

    async def verify(self, tree: Tree) -> None:
        if tree.kind == "file":
            sizes = {"": (await self.bucket.head(self.inner)).size}
        else:
            prefix = self.inner + "/"
            sizes = {e.key[len(prefix) :]: e.size for e in await self.bucket.list_tree(prefix)}
        for rel, size in tree.files:
            if sizes.get(rel) != size:
                raise OSError(f"size mismatch after copy: {rel}")

    async def remove_source(self, tree: Tree) -> None:
        await self.bucket.delete_keys(tree.keys)

    async def cleanup(self, tree: Tree) -> None:
        if tree.kind == "file":
            keys = [self.inner]
        else:
            keys = [e.key for e in await self.bucket.list_tree(self.inner + "/")]
        if keys:
            await self.bucket.delete_keys(keys)


Side = PosixSide | S3Side


async def copy_file(src: Side, dst: Side, rel: str, size: int, inline_limit: int = INLINE_LIMIT) -> None:
    """Copy one file, choosing the cheapest path for the pair of sides.

    Between disk and S3, files up to ``inline_limit`` bytes are read whole (in a thread) and sent in
    one request; bigger ones are streamed by s3fs (multipart above its chunk size).
    """
    if isinstance(src, S3Side) and isinstance(dst, S3Side):
        await dst.bucket.copy_in(src.bucket.bucket, src.key(rel), dst.key(rel), size)
    elif isinstance(src, PosixSide) and isinstance(dst, S3Side):
        if size <= inline_limit:
            data = await asyncio.to_thread(_read, src.path(rel))
            await dst.bucket.write(dst.key(rel), data)
        else:
            fs = dst.bucket.fs
            try:
                await fs._put_file(src.path(rel), f"{dst.bucket.bucket}/{dst.key(rel)}")
            finally:
                dst.bucket.invalidate(dst.key(rel))
    elif isinstance(src, S3Side) and isinstance(dst, PosixSide):
        target = dst.path(rel)
        if size <= inline_limit:
            data, _ = await src.bucket.read(src.key(rel))
            await asyncio.to_thread(_write, target, data)
        else:
            await asyncio.to_thread(os.makedirs, os.path.dirname(target), exist_ok=True)
            await src.bucket.fs._get_file(f"{src.bucket.bucket}/{src.key(rel)}", target)
    else:
        target = dst.path(rel)
        await asyncio.to_thread(_copy_local, src.path(rel), target)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "xb") as f:
        f.write(data)


def _copy_local(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(src, dst)


@counted_transfer
async def transfer(
    src: Side,
    dst: Side,
    *,
    move: bool,
    concurrency: int = 8,
    inline_limit: int = INLINE_LIMIT,
    log: logging.Logger | None = None,
) -> Tree:
    """Copy (and for ``move``, then delete) ``src`` to ``dst``; see the module docstring."""
    log = log or logging.getLogger(__name__)
    tree = await src.scan()
    if tree is None:
        raise FileNotFoundError("source does not exist")
    if await dst.exists():
        raise HTTPError(409, "Destination already exists")
    try:
        if tree.kind == "file":
            await copy_file(src, dst, "", tree.files[0][1], inline_limit)
        else:
            await dst.make_dirs(tree)
            copies = [copy_file(src, dst, rel, size, inline_limit) for rel, size in tree.files]
            await gather_bounded(copies, concurrency)
        await dst.verify(tree)
    except BaseException:
        try:
            await dst.cleanup(tree)
        except Exception as e:  # the source is intact; a half-written destination is only clutter
            log.warning("Could not clean up a failed copy at the destination: %s", type(e).__name__)
        raise
    if move:
        try:
            await src.remove_source(tree)
        except Exception as e:
            # the data is safe at both places; say so rather than pretend the move failed cleanly
            raise SourceNotRemoved(e) from e
    return tree


class SourceNotRemoved(Exception):
    """The copy was made and verified, but (part of) the source could not be deleted."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause
