"""JupyterLab's chunked uploads as S3 multipart uploads.

JupyterLab uploads a large file as 1 MiB base64 chunks numbered 1..n, then -1 for the last one,
one request at a time, with no upload id and no total size. Appending to an S3 object is not
possible, and re-uploading the object for every chunk is O(n²) bytes, so the chunks are buffered
into parts of at least ``part_size`` bytes, each part is uploaded as soon as it fills, and the
multipart upload is completed on chunk -1. Until then the object does not exist: an interrupted
upload leaves nothing visible, and is aborted on error, when chunk 1 of a new upload to the same
path arrives, and after ``idle_timeout`` seconds without a chunk. A file that never fills a part
is written with one PutObject at chunk -1. Memory held per upload is about one part.

:func:`upload_file` sends a local file (a copy or move from home or scratch into a bucket) the
same way: parts read in worker threads with ``preadv`` straight into the buffer that is sent,
``workers`` parts in flight, so memory is one part per worker whatever the file's size.

One instance serves one notebook server, which belongs to one user: uploads are keyed by
(bucket, key), and the chunks for one (bucket, key) are handled one at a time (a per-path lock):
chunk 1 of a new upload waits until the previous upload's chunk in flight is done, so the
multipart upload it may be creating is known, and aborted, instead of orphaned.
All S3 calls go through s3fs's async API; nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from tornado import web

from .backend import run_bounded

#: S3 refuses parts under 5 MiB (except the last) and allows at most 10,000 parts.
MIN_PART_SIZE = 5 * 1024 * 1024
#: defaults of ``DatalakeContentsManager.upload_part_size`` and ``upload_idle_timeout``
PART_SIZE = 8 * 1024 * 1024
IDLE_TIMEOUT = 3600.0
MAX_PARTS = 10_000


async def _create(fs: Any, bucket: str, key: str) -> str:
    resp = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=key)
    return resp["UploadId"]


async def _upload_part(
    fs: Any, bucket: str, key: str, upload_id: str, number: int, body: Any
) -> dict[str, Any]:
    resp = await fs._call_s3(
        "upload_part", Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
    )
    return {"PartNumber": number, "ETag": resp["ETag"]}


async def _complete_parts(
    fs: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]]
) -> None:
    await fs._call_s3(
        "complete_multipart_upload",
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},
    )


class UploadError(web.HTTPError):
    """A chunked upload that cannot go on; the S3 side has already been aborted."""


@dataclass
class _Upload:
    bucket: str
    key: str
    next_chunk: int = 1
    upload_id: str | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)
    buffer: io.BytesIO = field(default_factory=io.BytesIO)
    buffered: int = 0
    size: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: bool = False


class MultipartUploads:
    """Chunked uploads in progress for one notebook server.

    ``fs`` is an ``s3fs.S3FileSystem`` (used through its async ``_call_s3``), ``part_size`` the
    smallest part uploaded (>= 5 MiB), ``idle_timeout`` seconds after which an upload that
    received no chunk is aborted by :meth:`abort_idle` (run periodically once :meth:`start`
    was called).
    """

    def __init__(
        self,
        fs: Any,
        *,
        part_size: int = PART_SIZE,
        idle_timeout: float = IDLE_TIMEOUT,
        log: logging.Logger | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part size)")
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        self.fs = fs
        self.part_size = part_size
        self.idle_timeout = idle_timeout
        self.log = log or logging.getLogger(__name__)
        self._uploads: dict[tuple[str, str], _Upload] = {}
        #: one lock per (bucket, key) with chunks in flight, and how many requests hold or await it
        self._path_locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        self._reaper: asyncio.Task | None = None

    # -- public API ---------------------------------------------------------------------------

    def in_progress(self, bucket: str, key: str) -> bool:
        """Whether a chunked upload to ``bucket/key`` has started and not finished."""
        return (bucket, key) in self._uploads

    def pending(self) -> list[tuple[str, str]]:
        """(bucket, key) of every upload in progress."""
        return list(self._uploads)

    async def add_chunk(self, bucket: str, key: str, chunk: int, data: bytes) -> bool:
        """Take chunk number ``chunk`` (1..n, then -1 for the last) of ``bucket/key``.

        Returns True when chunk -1 completed the object. Raises :class:`UploadError` (4xx) for
        chunks out of order, and re-raises S3 errors; in both cases the upload is aborted first.
        """
        if not isinstance(chunk, int) or isinstance(chunk, bool) or (chunk < 1 and chunk != -1):
            await self.abort(bucket, key)
            raise UploadError(400, f"Invalid chunk number {chunk!r}: expected 1, 2, ... then -1")
        async with self._path_lock(bucket, key):
            return await self._add_chunk(bucket, key, chunk, data)

    @contextlib.asynccontextmanager
    async def _path_lock(self, bucket: str, key: str):
        """Serialize the requests for one (bucket, key); the lock is forgotten when unused."""
        ident = (bucket, key)
        lock, users = self._path_locks.get(ident, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._path_locks[ident] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._path_locks[ident]
            if users <= 1:
                del self._path_locks[ident]
            else:
                self._path_locks[ident] = (lock, users - 1)

    async def _add_chunk(self, bucket: str, key: str, chunk: int, data: bytes) -> bool:
        ident = (bucket, key)
        if chunk == 1:
            previous = self._uploads.pop(ident, None)
            if previous is not None:
                self.log.info("New upload to %s/%s: aborting the unfinished one", bucket, key)
                async with previous.lock:  # free: the reaper may hold it, never a chunk (path lock)
                    await self._abort_upload(previous)
            upload = self._uploads[ident] = _Upload(bucket, key)
        else:
            upload = self._uploads.get(ident)
            if upload is None:
                raise UploadError(
                    409,
                    f"No upload of {key!r} in progress (expired or interrupted): upload the file again",
                )
        async with upload.lock:
            if upload.done or self._uploads.get(ident) is not upload:
                raise UploadError(409, f"The upload of {key!r} was aborted: upload the file again")
            if chunk != -1 and chunk != upload.next_chunk:
                expected = upload.next_chunk
                await self._drop(upload)
                raise UploadError(
                    400, f"Chunk {chunk} of {key!r} out of order (expected {expected}): upload aborted"
                )
            upload.last_activity = time.monotonic()
            try:
                upload.buffer.write(data)
                upload.buffered += len(data)
                upload.size += len(data)
                if upload.buffered >= self.part_size:
                    await self._flush_part(upload)
                if chunk == -1:
                    await self._complete(upload)
                    return True
                upload.next_chunk += 1
                upload.last_activity = time.monotonic()
                return False
            except BaseException:
                await self._drop(upload)
                raise

    async def abort(self, bucket: str, key: str) -> bool:
        """Abort the upload to ``bucket/key`` if one is in progress; True if there was one."""
        upload = self._uploads.get((bucket, key))
        if upload is None:
            return False
        async with upload.lock:
            await self._drop(upload)
        return True

    async def abort_idle(self) -> int:
        """Abort every upload that received no chunk for ``idle_timeout`` seconds; returns how many."""
        now = time.monotonic()
        stale = [u for u in list(self._uploads.values()) if now - u.last_activity >= self.idle_timeout]
        aborted = 0
        for upload in stale:
            if upload.lock.locked():  # a chunk is being written right now: not idle
                continue
            aborted += 1
            self.log.warning(
                "Aborting the upload of %s/%s: no chunk for %.0f s",
                upload.bucket,
                upload.key,
                self.idle_timeout,
            )
            async with upload.lock:
                await self._drop(upload)
        return aborted

    def start(self, interval: float | None = None) -> None:
        """Run :meth:`abort_idle` every ``interval`` seconds (default: a tenth of the idle timeout)."""
        if self._reaper is None or self._reaper.done():
            every = interval if interval is not None else max(0.05, min(60.0, self.idle_timeout / 10))
            # an empty context: started from the first chunk's request, the task would otherwise
            # keep that request's context (jupyter-server's CallContext: its handler and body) for
            # the server's whole life
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap_forever(every), context=contextvars.Context()
            )

    async def close(self) -> None:
        """Stop the periodic task and abort every unfinished upload (server shutdown)."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for bucket, key in self.pending():
            with contextlib.suppress(Exception):
                await self.abort(bucket, key)

    # -- internals ----------------------------------------------------------------------------

    async def _reap_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.abort_idle()
            except Exception:  # keep reaping: one failed abort must not stop the others
                self.log.exception("Aborting idle uploads failed")

    async def _flush_part(self, upload: _Upload) -> None:
        if upload.upload_id is None:
            upload.upload_id = await _create(self.fs, upload.bucket, upload.key)
        number = len(upload.parts) + 1
        if number > MAX_PARTS:
            raise UploadError(413, f"{upload.key!r} is too large: more than {MAX_PARTS} parts")
        body = self._take_buffer(upload)
        try:
            upload.parts.append(
                await _upload_part(self.fs, upload.bucket, upload.key, upload.upload_id, number, body)
            )
        finally:
            # frees the part now: the HTTP stack keeps a reference to the body object until its
            # next request, which held a second part in memory while the next one filled
            body.close()

    async def _complete(self, upload: _Upload) -> None:
        if upload.upload_id is None:
            # Never filled a part: one plain PutObject, nothing to clean up on failure.
            body = self._take_buffer(upload)
            try:
                await self.fs._call_s3("put_object", Bucket=upload.bucket, Key=upload.key, Body=body)
            finally:
                body.close()
        else:
            if upload.buffered:
                await self._flush_part(upload)
            await _complete_parts(self.fs, upload.bucket, upload.key, upload.upload_id, upload.parts)
        upload.done = True
        self._uploads.pop((upload.bucket, upload.key), None)
        self.log.info(
            "Uploaded %s/%s: %d bytes in %d part(s)",
            upload.bucket,
            upload.key,
            upload.size,
            max(1, len(upload.parts)),
        )

    async def _drop(self, upload: _Upload) -> None:
        """Forget ``upload`` and abort it on S3 (caller holds its lock)."""
        if self._uploads.get((upload.bucket, upload.key)) is upload:
            del self._uploads[(upload.bucket, upload.key)]
        await self._abort_upload(upload)

    async def _abort_upload(self, upload: _Upload) -> None:
        upload.done = True
        upload.buffer = io.BytesIO()
        upload.buffered = 0
        upload_id, upload.upload_id = upload.upload_id, None
        if upload_id is None:
            return
        await _abort(self.fs, upload.bucket, upload.key, upload_id, self.log)

    @staticmethod
    def _take_buffer(upload: _Upload) -> io.BytesIO:
        """The buffered part, rewound, and a fresh buffer in its place.

        A ``BytesIO`` that owns its memory goes to aiohttp without a copy; ``bytes`` (or a
        ``BytesIO`` sharing a ``bytes``) would be copied once more on the way out.
        """
        body = upload.buffer
        body.seek(0)
        upload.buffer = io.BytesIO()
        upload.buffered = 0
        return body


async def _abort(fs: Any, bucket: str, key: str, upload_id: str, log: logging.Logger) -> None:
    """Abort a multipart upload; a failure is logged, never raised (S3's lifecycle rules drop
    unfinished uploads too)."""
    try:
        await fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except FileNotFoundError:
        pass  # already gone (completed or aborted elsewhere)
    except Exception as e:
        log.warning("Could not abort the upload of %s/%s: %s", bucket, key, type(e).__name__)


def _read_part(fd: int, offset: int, length: int) -> io.BytesIO:
    """``length`` bytes at ``offset`` read into a ``BytesIO`` that owns them (sent without a copy,
    see :meth:`MultipartUploads._take_buffer`); a file that shrank meanwhile is an error."""
    body = io.BytesIO()
    body.seek(length - 1)
    body.write(b"\0")
    with body.getbuffer() as view:
        got = 0
        while got < length:
            n = os.preadv(fd, [view[got:]], offset + got)
            if n == 0:
                raise OSError(f"file shrank while being uploaded (at byte {offset + got})")
            got += n
    body.seek(0)
    return body


async def upload_file(
    fs: Any,
    bucket: str,
    key: str,
    path: str,
    size: int,
    *,
    part_size: int = 8 * 1024 * 1024,
    workers: int = 4,
    log: logging.Logger | None = None,
) -> None:
    """Upload the first ``size`` bytes of the local file ``path`` to ``bucket/key``.

    One PutObject if it fits in one part, else a multipart upload of ``part_size`` parts (bigger
    if the file needs more than 10,000 of them), ``workers`` at once; every read runs in a worker
    thread and the event loop only hands buffers to aiohttp. Any failure aborts the upload: the
    object is written whole or not at all.
    """
    part_size = max(part_size, MIN_PART_SIZE, math.ceil(size / MAX_PARTS))
    fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if size <= part_size:
            body = await asyncio.to_thread(_read_part, fd, 0, size) if size else io.BytesIO()
            await fs._call_s3("put_object", Bucket=bucket, Key=key, Body=body)
            return
        upload_id = await _create(fs, bucket, key)
        parts: list[dict[str, Any]] = []

        async def send(number: int) -> None:
            offset = (number - 1) * part_size
            body = await asyncio.to_thread(_read_part, fd, offset, min(part_size, size - offset))
            parts.append(await _upload_part(fs, bucket, key, upload_id, number, body))

        try:
            await run_bounded(range(1, math.ceil(size / part_size) + 1), send, workers)
            await _complete_parts(fs, bucket, key, upload_id, sorted(parts, key=lambda p: p["PartNumber"]))
        except BaseException:
            await _abort(fs, bucket, key, upload_id, log or logging.getLogger(__name__))
            raise
    finally:
        os.close(fd)  # read-only: nothing to flush
