"""Copies and moves of files and whole folders between mounts (home, scratch, buckets).

Every transfer has the same shape, whatever the two sides are:

1. scan the source (what files, what folders, what sizes, what version of each) and refuse if
   the destination exists (asked of S3 itself, never of a cached listing), or if any source entry
   cannot be named safely at the destination (``paths.key_problem``: ``..``, ``.``, empty
   segments, a leading ``/``, control characters, over-long names; a file and a folder of the
   same name towards disk). Such a refusal is a 4xx naming the key, before anything is written;
2. copy each file with bounded concurrency (a fixed pool of workers fed from one queue;
   server-side ``CopyObject`` between buckets, streaming between S3 and disk), creating the
   folders (a marker object for every folder in S3). On disk every file and folder is created
   below the destination through directory descriptors opened with ``O_NOFOLLOW``, files with
   ``O_EXCL``: a link planted in the destination is never followed, an existing file never
   overwritten;
3. verify: every destination file exists with the source's size (one listing for S3);
4. only then, for a move, take the files' checkpoints along (``checkpoints=True``: as
   jupyter-server's rename does; best effort, one at a time) and delete the source entries that
   were copied and are unchanged since the scan (same ETag and size in S3, same size and mtime on
   disk). An entry a collaborator changed meanwhile stays, and the caller is told
   (:class:`SourceChanged`).

Any failure in 1-3 removes what this transfer wrote at the destination, and nothing else
(someone else may have written there meanwhile), and leaves the source untouched. Nested
symbolic links to folders are refused in a folder move or copy: following one would copy (and,
for a move, could delete from) a tree outside the folder the user picked.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import stat as stat_mod
from dataclasses import dataclass, field
from typing import Any

from tornado.web import HTTPError

from .metrics import counted_transfer
from .paths import MAX_KEY_BYTES, MAX_NAME_BYTES, join_path, key_problem
from .posix import PosixRoot
from .s3.backend import S3Bucket, run_bounded
from .s3.checkpoints import CHECKPOINT_ID, checkpoint_key
from .s3.models import FOLDER_MARKER, is_marker
from .s3.uploads import upload_file

#: files up to this size go through memory in one request; bigger ones are streamed
INLINE_LIMIT = 64 * 1024 * 1024
#: bytes per read when streaming a big object from S3 to disk (each read is assembled from
#: smaller pieces: 8 MiB reads peaked at 24-32 MiB, 1 MiB reads at 4 MiB)
STREAM_CHUNK = 1024 * 1024
POSIX_CHECKPOINT_DIR = ".ipynb_checkpoints"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHECKPOINT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Tree:
    kind: str  # "file" or "directory"
    #: (relative path, size); the single entry of a file is ("", size)
    files: list[tuple[str, int]] = field(default_factory=list)
    #: relative folder paths below the top (not "")
    dirs: list[str] = field(default_factory=list)
    #: S3 only: every key to delete when the source is moved away (markers included)
    keys: list[str] = field(default_factory=list)
    #: what each source entry was at scan time: S3 key -> (ETag, size); POSIX rel -> (size, mtime_ns)
    stamps: dict[str, tuple[Any, int]] = field(default_factory=dict)


def _checkpoint_name(name: str) -> str:
    """jupyter-server's FileCheckpoints name of a file's checkpoint, in ``.ipynb_checkpoints`` beside it."""
    base, ext = os.path.splitext(name)
    return f"{base}-{CHECKPOINT_ID}{ext}"


def _posix_checkpoint(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, POSIX_CHECKPOINT_DIR, _checkpoint_name(name))


class PosixSide:
    def __init__(self, root: PosixRoot, inner: str) -> None:
        self.root = root
        self.inner = inner
        #: relative paths of the files and folders this transfer created (for the clean-up)
        self.created_files: list[str] = []
        self.created_dirs: list[str] = []

    def path(self, rel: str = "") -> str:
        return self.root.os_path(join_path(self.inner, rel))

    def name(self, rel: str) -> str:
        """``rel`` as the user knows it (for messages)."""
        return join_path(self.inner, rel)

    async def exists(self) -> bool:
        return await asyncio.to_thread(os.path.lexists, self.path())

    def _scan(self) -> Tree | None:
        top = self.path()
        if not os.path.lexists(top):
            return None
        if not os.path.isdir(top):
            st = os.stat(top)
            return Tree("file", [("", st.st_size)], stamps={"": (st.st_mtime_ns, st.st_size)})
        tree = Tree("directory")
        for dirpath, dirnames, filenames in os.walk(top):
            rel_dir = os.path.relpath(dirpath, top)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            dirnames[:] = [d for d in dirnames if d != POSIX_CHECKPOINT_DIR]
            for d in dirnames:
                if os.path.islink(os.path.join(dirpath, d)):
                    raise HTTPError(400, f"Folder contains a link to another folder: {join_path(rel_dir, d)}")
                tree.dirs.append(join_path(rel_dir, d))
            for f in filenames:
                full = os.path.join(dirpath, f)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    raise HTTPError(400, f"Folder contains a broken link: {join_path(rel_dir, f)}") from None
                if not stat_mod.S_ISREG(st.st_mode):
                    raise HTTPError(400, f"Not a regular file: {join_path(rel_dir, f)}")
                tree.files.append((join_path(rel_dir, f), st.st_size))
                tree.stamps[join_path(rel_dir, f)] = (st.st_mtime_ns, st.st_size)
        return tree

    async def scan(self) -> Tree | None:
        return await asyncio.to_thread(self._scan)

    # -- safe creation below the destination (worker threads only) ------------------------------

    def _open_parent(self, rel: str) -> tuple[int, str]:
        """(descriptor of the folder that holds ``rel``, last name of ``rel``).

        Below the destination's top every folder is opened relative to its parent with
        ``O_NOFOLLOW``: a symbolic link (or a file) planted anywhere in the destination fails
        the transfer instead of redirecting it. The top's own parent is the folder the user
        picked, followed like any path in home.
        """
        top = self.path()
        if not rel:
            return os.open(os.path.dirname(top), _DIR_FLAGS & ~os.O_NOFOLLOW), os.path.basename(top)
        *parents, name = rel.split("/")
        real_top = os.path.realpath(top)
        real = os.path.realpath(os.path.join(top, *parents))
        if real != real_top and not real.startswith(real_top + os.sep):
            raise _planted(self.name(rel))
        try:
            fd = os.open(top, _DIR_FLAGS)
        except OSError as e:
            raise _planted(self.name(rel)) from e
        try:
            for part in parents:
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _planted(self.name(rel)) from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd, name

    def create(self, rel: str) -> int:
        """A new file at ``rel`` opened for writing (never an existing file, never through a link)."""
        fd, name = self._open_parent(rel)
        try:
            out = os.open(name, _NEW_FILE_FLAGS, 0o666, dir_fd=fd)
        except FileExistsError:
            raise HTTPError(409, f"Destination already exists: {self.name(rel)!r}") from None
        finally:
            os.close(fd)
        self.created_files.append(rel)
        return out

    def _mkdir(self, rel: str) -> None:
        fd, name = self._open_parent(rel)
        try:
            os.mkdir(name, dir_fd=fd)
        except FileExistsError:
            raise HTTPError(409, f"Destination already exists: {self.name(rel)!r}") from None
        finally:
            os.close(fd)
        self.created_dirs.append(rel)

    async def make_dirs(self, tree: Tree) -> None:
        def run() -> None:
            self._mkdir("")
            for d in sorted(tree.dirs):  # a parent sorts before its children
                self._mkdir(d)

        await asyncio.to_thread(run)

    async def verify(self, tree: Tree) -> None:
        def run() -> None:
            for rel, size in tree.files:
                fd, name = self._open_parent(rel)
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                finally:
                    os.close(fd)
                if not stat_mod.S_ISREG(st.st_mode) or st.st_size != size:
                    raise OSError(f"size mismatch after copy: {rel}")

        await asyncio.to_thread(run)

    async def checkpointed(self, tree: Tree) -> list[str]:
        """The files of ``tree`` that have a checkpoint."""
        return await asyncio.to_thread(
            lambda: [rel for rel, _ in tree.files if os.path.isfile(_posix_checkpoint(self.path(rel)))]
        )

    async def read_checkpoint(self, rel: str) -> bytes:
        return await asyncio.to_thread(_read, _posix_checkpoint(self.path(rel)))

    async def write_checkpoint(self, rel: str, data: bytes) -> None:
        """``rel``'s checkpoint, created like the files (through descriptors, never through a link)."""

        def run() -> None:
            fd, name = self._open_parent(rel)
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(POSIX_CHECKPOINT_DIR, dir_fd=fd)
                folder = os.open(POSIX_CHECKPOINT_DIR, _DIR_FLAGS, dir_fd=fd)
            finally:
                os.close(fd)
            try:
                out = os.open(_checkpoint_name(name), _CHECKPOINT_FLAGS, 0o666, dir_fd=folder)
            finally:
                os.close(folder)
            try:
                _write_all(out, data)
            finally:
                os.close(out)

        await asyncio.to_thread(run)

    async def remove_source(self, tree: Tree) -> list[str]:
        """Delete the scanned files still as scanned (size, mtime); returns those kept (changed)."""

        def run() -> list[str]:
            top = self.path()
            if tree.kind == "file" or os.path.islink(top):
                if _stamp(top) == tree.stamps.get(""):
                    os.unlink(top)
                    with contextlib.suppress(FileNotFoundError):  # a moved file's checkpoint goes too
                        os.unlink(_posix_checkpoint(top))
                    return []
                return [self.name("")]
            kept = []
            for rel, _ in tree.files:
                if _stamp(self.path(rel)) == tree.stamps.get(rel):
                    os.unlink(self.path(rel))
                else:
                    kept.append(self.name(rel))
            for d in [*sorted(tree.dirs, key=lambda d: d.count("/"), reverse=True), ""]:
                p = self.path(d)
                shutil.rmtree(os.path.join(p, POSIX_CHECKPOINT_DIR), ignore_errors=True)
                try:
                    os.rmdir(p)
                except OSError:  # something appeared meanwhile (or stays): keep it
                    pass
            return kept

        return await asyncio.to_thread(run)

    async def cleanup(self, tree: Tree) -> None:
        """Remove what this transfer created, deepest first; folders only once empty."""

        def run() -> None:
            for rel in reversed(self.created_files):
                fd, name = self._open_parent(rel)
                try:
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    pass
                finally:
                    os.close(fd)
            for rel in reversed(self.created_dirs):
                fd, name = self._open_parent(rel)
                try:
                    os.rmdir(name, dir_fd=fd)
                except OSError:  # not empty: someone else wrote there meanwhile
                    pass
                finally:
                    os.close(fd)

        await asyncio.to_thread(run)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _planted(name: str) -> HTTPError:
    return HTTPError(409, f"Destination changed during the copy (a link or file is in the way): {name!r}")


class S3Side:
    def __init__(self, bucket: S3Bucket, inner: str) -> None:
        self.bucket = bucket
        self.inner = inner
        #: keys this transfer wrote (for the clean-up)
        self.written: list[str] = []

    def key(self, rel: str = "") -> str:
        return join_path(self.inner, rel)

    def name(self, rel: str) -> str:
        return self.key(rel)

    async def exists(self) -> bool:
        try:
            await self.bucket.head(self.inner)
            return True
        except FileNotFoundError:
            return await self.bucket.folder_exists(self.inner + "/", use_cache=False)

    async def scan(self) -> Tree | None:
        try:
            entry = await self.bucket.head(self.inner)
            return Tree(
                "file", [("", entry.size)], keys=[self.inner], stamps={self.inner: (entry.etag, entry.size)}
            )
        except FileNotFoundError:
            pass
        prefix = self.inner + "/"
        entries = await self.bucket.list_tree(prefix)
        if not entries:
            return None
        tree = Tree("directory", keys=[e.key for e in entries])
        tree.stamps = {e.key: (e.etag, e.size) for e in entries}
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

    async def write(self, rel: str, data: bytes) -> None:
        self.written.append(self.key(rel))
        await self.bucket.write(self.key(rel), data)

    async def make_dirs(self, tree: Tree) -> None:
        """A marker object for every folder copied here, the top one included.

        Not only the empty ones: a folder whose last file is later moved or deleted must stay a
        folder, as it does on disk (the differential test found a moved-in folder vanishing when
        its only file was moved out).
        """
        await run_bounded(["", *tree.dirs], lambda d: self.write(join_path(d, FOLDER_MARKER), b""), 8)

    async def verify(self, tree: Tree) -> None:
        self.bucket.invalidate()  # once for the whole batch of copies (``copy_file``)
        if tree.kind == "file":
            sizes = {"": (await self.bucket.head(self.inner)).size}
        else:
            prefix = self.inner + "/"
            sizes = {e.key[len(prefix) :]: e.size for e in await self.bucket.list_tree(prefix)}
        for rel, size in tree.files:
            if sizes.get(rel) != size:
                raise OSError(f"size mismatch after copy: {rel}")

    async def checkpointed(self, tree: Tree) -> list[str]:
        """The files of ``tree`` that have a checkpoint: one HeadObject, or one listing per 1,000."""
        if tree.kind == "file":
            try:
                await self.bucket.head(checkpoint_key(self.inner))
                return [""]
            except FileNotFoundError:
                return []
        prefix = checkpoint_key(self.inner + "/")
        found = {e.key[len(prefix) :] for e in await self.bucket.list_tree(prefix)}
        return [rel for rel, _ in tree.files if rel in found]

    async def read_checkpoint(self, rel: str) -> bytes:
        return (await self.bucket.read(checkpoint_key(self.key(rel))))[0]

    async def write_checkpoint(self, rel: str, data: bytes) -> None:
        await self.bucket.write(checkpoint_key(self.key(rel)), data)

    async def remove_source(self, tree: Tree) -> list[str]:
        """Delete the scanned keys still as scanned (ETag, size); returns those kept (changed)."""
        if tree.kind == "file":
            try:
                entry = await self.bucket.head(self.inner)
            except FileNotFoundError:
                return []
            now = {entry.key: (entry.etag, entry.size)}
        else:
            now = {e.key: (e.etag, e.size) for e in await self.bucket.list_tree(self.inner + "/")}
        unchanged = [k for k in tree.keys if k in now and now[k] == tree.stamps.get(k)]
        kept = [k for k in tree.keys if k in now and now[k] != tree.stamps.get(k)]
        await self.bucket.delete_keys(unchanged)
        return kept

    async def cleanup(self, tree: Tree) -> None:
        if self.written:
            await self.bucket.delete_keys(self.written)


Side = PosixSide | S3Side


def refuse_unsafe(tree: Tree, src: Side, dst: Side) -> None:
    """A 4xx naming the first source entry that cannot be written safely at ``dst``; else nothing.

    Runs on the scan, before anything is written: a hostile key fails the whole transfer and
    leaves the source untouched (rather than a partial copy that silently drops files).
    """
    to_disk = isinstance(dst, PosixSide)
    for rel in [*(r for r, _ in tree.files if r), *tree.dirs]:
        problem = key_problem(rel, MAX_NAME_BYTES if to_disk else None)
        if problem is None and not to_disk and len(dst.key(rel).encode("utf-8")) > MAX_KEY_BYTES:
            problem = f"a key longer than {MAX_KEY_BYTES} bytes at the destination"
        if problem is not None:
            raise HTTPError(400, f"Refused, nothing was copied: {src.name(rel)!r} contains {problem}")
    if to_disk:
        folders = set(tree.dirs)
        for rel, _ in tree.files:
            if rel in folders:
                raise HTTPError(
                    409,
                    f"Refused, nothing was copied: {src.name(rel)!r} is both a file and a folder",
                )


async def copy_file(src: Side, dst: Side, rel: str, size: int, inline_limit: int = INLINE_LIMIT) -> None:
    """Copy one file, choosing the cheapest path for the pair of sides.

    Between disk and S3, files up to ``inline_limit`` bytes are read whole (in a thread) and sent in
    one request; bigger ones are streamed: towards S3 as a multipart upload whose parts are read
    in worker threads (``uploads.upload_file``), towards disk chunk by chunk, written in threads.
    """
    if isinstance(src, S3Side) and isinstance(dst, S3Side):
        dst.written.append(dst.key(rel))
        await dst.bucket.copy_in(src.bucket.bucket, src.key(rel), dst.key(rel), size, invalidate=False)
    elif isinstance(src, PosixSide) and isinstance(dst, S3Side):
        if size <= inline_limit:
            data = await asyncio.to_thread(_read, src.path(rel))
            await dst.write(rel, data)
        else:
            dst.written.append(dst.key(rel))
            try:
                await upload_file(dst.bucket.fs, dst.bucket.bucket, dst.key(rel), src.path(rel), size)
            finally:
                dst.bucket.invalidate(dst.key(rel))
    elif isinstance(src, S3Side) and isinstance(dst, PosixSide):
        if size <= inline_limit:
            data, _ = await src.bucket.read(src.key(rel))
            await asyncio.to_thread(_write_new, dst, rel, data)
        else:
            await _stream_to_disk(src, dst, rel)
    else:
        await asyncio.to_thread(_copy_local, src.path(rel), dst, rel)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_new(dst: PosixSide, rel: str, data: bytes) -> None:
    fd = dst.create(rel)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


async def _stream_to_disk(src: S3Side, dst: PosixSide, rel: str) -> None:
    """One GetObject, written chunk by chunk (in a thread) to a file created safely at ``rel``."""
    resp = await src.bucket.call("get_object", Key=src.key(rel))
    body = resp["Body"]
    try:
        fd = await asyncio.to_thread(dst.create, rel)
        try:
            while data := await body.read(STREAM_CHUNK):
                await asyncio.to_thread(_write_all, fd, data)
        finally:
            os.close(fd)
    finally:
        body.close()


def _copy_local(src: str, dst: PosixSide, rel: str) -> None:
    fd = dst.create(rel)
    with open(fd, "wb") as out, open(src, "rb") as f:
        shutil.copyfileobj(f, out)
        shutil.copystat(f.fileno(), out.fileno())


@counted_transfer
async def transfer(
    src: Side,
    dst: Side,
    *,
    move: bool,
    concurrency: int = 8,
    inline_limit: int = INLINE_LIMIT,
    checkpoints: bool = False,
    log: logging.Logger | None = None,
) -> Tree:
    """Copy (and for ``move``, then delete) ``src`` to ``dst``; see the module docstring."""
    log = log or logging.getLogger(__name__)
    tree = await src.scan()
    if tree is None:
        raise FileNotFoundError("source does not exist")
    refuse_unsafe(tree, src, dst)
    if await dst.exists():
        raise HTTPError(409, "Destination already exists")
    try:
        if tree.kind == "file":
            await copy_file(src, dst, "", tree.files[0][1], inline_limit)
        else:
            await dst.make_dirs(tree)
            await run_bounded(
                tree.files, lambda f: copy_file(src, dst, f[0], f[1], inline_limit), concurrency
            )
        await dst.verify(tree)
    except BaseException:
        try:
            await dst.cleanup(tree)
        except Exception as e:  # the source is intact; a half-written destination is only clutter
            log.warning("Could not clean up a failed copy at the destination: %s", type(e).__name__)
        raise
    if move:
        if checkpoints:
            await carry_checkpoints(src, dst, tree, log)
        try:
            kept = await src.remove_source(tree)
        except Exception as e:
            # the data is safe at both places; say so rather than pretend the move failed cleanly
            raise SourceNotRemoved(e) from e
        if kept:
            raise SourceChanged(kept)
    return tree


async def carry_checkpoints(src: Side, dst: Side, tree: Tree, log: logging.Logger) -> None:
    """Copy the checkpoints of the moved files to the destination, one at a time (a checkpoint is
    as big as its file). Best effort: the files themselves are already safe at the destination.
    Found by the differential test: a notebook moved between home and a bucket lost its checkpoint."""
    try:
        for rel in await src.checkpointed(tree):
            await dst.write_checkpoint(rel, await src.read_checkpoint(rel))
    except Exception as e:
        log.warning("Could not take the checkpoints along in a move: %s", type(e).__name__)


class SourceNotRemoved(Exception):
    """The copy was made and verified, but (part of) the source could not be deleted."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class SourceChanged(Exception):
    """A move copied everything, but these source entries changed meanwhile and were kept."""

    def __init__(self, kept: list[str]) -> None:
        super().__init__(f"{len(kept)} source entries changed during the move")
        self.kept = kept
