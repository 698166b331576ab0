"""One bucket: listing (with a short cache), object reads and writes, bulk deletes, server-side copies.

Small calls go through s3fs's async ``_call_s3`` (aiobotocore); paginated listings, whose parsing
would stall the event loop, and server-side copies, which come by the hundred, run in worker
threads (``threaded.py``) when the bucket is given them. Either way nothing blocks the loop and
the request count is exactly what this module asks for: a folder listing is one ListObjectsV2
per 1,000 entries and never a HEAD per entry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from ..metrics import count_listing_lookup
from .models import (
    FOLDER_MARKER,
    Listing,
    ObjectEntry,
    entry_from_head,
    listing_from_pages,
    tree_from_pages,
)
from .threaded import Pager, ThreadedS3

T = TypeVar("T")

#: largest object CopyObject can copy in one request; bigger ones need a multipart copy
MAX_SINGLE_COPY = 5 * 1024**3


class ListingCache:
    """Folder listings kept ``ttl`` seconds, dropped for a whole bucket on any write through us.

    Expired entries are dropped, not only ignored: each :meth:`put` sweeps them once a ``ttl`` has
    passed since the last sweep, so a long-lived server browsing many folders does not keep every
    listing it ever made.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, Listing]] = {}
        self._swept = time.monotonic()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, bucket: str, prefix: str) -> Listing | None:
        hit = self._entries.get((bucket, prefix))
        fresh = hit is not None and time.monotonic() - hit[0] <= self.ttl
        count_listing_lookup(fresh)
        if hit is not None and not fresh:
            del self._entries[(bucket, prefix)]
        return hit[1] if fresh else None

    def put(self, bucket: str, prefix: str, listing: Listing) -> None:
        if self.ttl <= 0:
            return
        now = time.monotonic()
        if now - self._swept > self.ttl:
            self._swept = now
            for k in [k for k, (t, _) in self._entries.items() if now - t > self.ttl]:
                del self._entries[k]
        self._entries[(bucket, prefix)] = (now, listing)

    def invalidate(self, bucket: str) -> None:
        for k in [k for k in self._entries if k[0] == bucket]:
            del self._entries[k]


class ContentTooLarge(Exception):
    """An object too big to be sent inline in a contents model (``S3Bucket.read``'s ``limit``)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


#: (bucket, key) of hidden hostile keys already logged: each is logged once per process (at most
#: this many remembered: a bucket full of them logs again rather than growing the set forever)
_LOGGED_HIDDEN: set[tuple[str, str]] = set()
_LOGGED_HIDDEN_MAX = 10_000


class S3Bucket:
    """Operations on one bucket, by key. Errors propagate as s3fs/botocore exceptions."""

    def __init__(
        self,
        fs: Any,
        bucket: str,
        cache: ListingCache,
        log: logging.Logger | None = None,
        threaded: ThreadedS3 | None = None,
        listing_limit: int | None = None,
    ) -> None:
        self.fs = fs
        #: most entries a folder listing asks S3 for (None: all of them)
        self.listing_limit = listing_limit
        #: worker threads for paginated listings (None: list on the loop through s3fs)
        self.threaded = threaded
        self.bucket = bucket
        self.cache = cache
        self.log = log or logging.getLogger(__name__)

    async def call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        return await self.fs._call_s3(method, Bucket=self.bucket, **kwargs)

    def invalidate(self, key: str = "") -> None:
        """Forget this bucket's cached listings after a write (``key``: the key written, if one)."""
        self.cache.invalidate(self.bucket)

    # -- reads -----------------------------------------------------------------------------------

    async def list_dir(self, prefix: str, use_cache: bool = True) -> Listing:
        """One folder level; ``prefix`` is ``""`` or ends with ``/``. At most ``listing_limit``
        entries, in ceil(limit/1000) requests; ``Listing.truncated`` says when S3 holds more."""
        if use_cache:
            hit = self.cache.get(self.bucket, prefix)
            if hit is not None:
                return hit
        if self.threaded is not None:
            listing = await self.threaded.list_folder(self.bucket, prefix, self.listing_limit)
        else:
            listing = listing_from_pages(prefix, *await self._pages(prefix, "/", self.listing_limit))
        self._log_hidden(listing)
        self.cache.put(self.bucket, prefix, listing)
        return listing

    def _log_hidden(self, listing: Listing) -> None:
        for key in listing.hidden:
            if (self.bucket, key) not in _LOGGED_HIDDEN:
                if len(_LOGGED_HIDDEN) >= _LOGGED_HIDDEN_MAX:
                    _LOGGED_HIDDEN.clear()
                _LOGGED_HIDDEN.add((self.bucket, key))
                self.log.warning("Not listing s3://%s/%r: no safe path can name it", self.bucket, key)

    async def folder_exists(self, prefix: str, use_cache: bool = True) -> bool:
        """Whether some object is at or below ``prefix``; ``use_cache=False`` before any write
        that must not land in an existing folder (a listing up to ``ttl`` old may predate it)."""
        hit = self.cache.get(self.bucket, prefix) if use_cache else None
        if hit is not None:
            return hit.exists
        page = await self.call("list_objects_v2", Prefix=prefix, MaxKeys=1)
        return bool(page.get("KeyCount") or page.get("Contents"))

    async def list_tree(self, prefix: str) -> list[ObjectEntry]:
        """Every object at or below ``prefix`` (markers included), checkpoints excluded at the root."""
        if self.threaded is not None:
            return await self.threaded.list_tree(self.bucket, prefix)
        return tree_from_pages(prefix, (await self._pages(prefix, None, None))[0])

    async def _pages(
        self, prefix: str, delimiter: str | None, limit: int | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """``threaded.list_pages`` on the event loop, through s3fs (when no listing threads)."""
        pager, pages = Pager(prefix, delimiter, limit), []
        while (request := pager.next_request()) is not None:
            pages.append(await self.call("list_objects_v2", **request))
            pager.add(pages[-1])
        return pages, pager.truncated

    async def head(self, key: str) -> ObjectEntry:
        return entry_from_head(key, await self.call("head_object", Key=key))

    async def read(self, key: str, limit: int | None = None) -> tuple[bytes, ObjectEntry]:
        """The whole object; :class:`ContentTooLarge` (before reading the body) above ``limit`` bytes."""
        resp = await self.call("get_object", Key=key)
        body = resp["Body"]
        try:
            size = int(resp.get("ContentLength") or 0)
            if limit is not None and size > limit:
                raise ContentTooLarge(size)
            data = await body.read()
        finally:
            body.close()
        entry = entry_from_head(key, resp)
        if entry.size != len(data):
            raise OSError(f"short read of s3://{self.bucket}/{key}")
        return data, entry

    # -- writes ----------------------------------------------------------------------------------

    async def write(self, key: str, data: bytes, content_type: str | None = None) -> ObjectEntry:
        kwargs: dict[str, Any] = {"Key": key, "Body": data}
        if content_type:
            kwargs["ContentType"] = content_type
        try:
            resp = await self.call("put_object", **kwargs)
        finally:
            self.invalidate(key)
        return ObjectEntry(key, len(data), datetime.now(timezone.utc), (resp.get("ETag") or "").strip('"'))

    async def make_folder(self, prefix: str) -> None:
        """An empty folder is our marker object (S3 has no directories)."""
        await self.write(f"{prefix}{FOLDER_MARKER}", b"")

    async def copy_in(
        self, src_bucket: str, src_key: str, dst_key: str, size: int | None = None, invalidate: bool = True
    ) -> None:
        """Server-side copy into this bucket (multipart copy above 5 GiB, through s3fs).

        Single copies run in the worker threads when the bucket has them (``threaded.py`` says
        why). ``invalidate=False`` leaves the cached listings alone: a batch of copies (a folder
        transfer) invalidates once when it is done instead of once per object.
        """
        try:
            if size is not None and size < MAX_SINGLE_COPY and self.threaded is not None:
                await self.threaded.copy(self.bucket, dst_key, src_bucket, src_key)
            elif size is not None and size < MAX_SINGLE_COPY:
                await self.call("copy_object", Key=dst_key, CopySource={"Bucket": src_bucket, "Key": src_key})
            else:
                await self.fs._copy(f"{src_bucket}/{src_key}", f"{self.bucket}/{dst_key}")
        finally:
            if invalidate:
                self.invalidate(dst_key)

    async def delete_keys(self, keys: list[str]) -> None:
        """Delete ``keys`` in batches of 1,000; any per-key error fails the whole call."""
        try:
            for i in range(0, len(keys), 1000):
                batch = keys[i : i + 1000]
                if len(batch) == 1:
                    await self.call("delete_object", Key=batch[0])
                    continue
                resp = await self.call(
                    "delete_objects", Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
                errors = resp.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise ClientError(
                        {"Error": {"Code": first.get("Code", "InternalError"), "Message": "delete failed"}},
                        "DeleteObjects",
                    )
        finally:
            self.invalidate()


async def run_bounded(items: Iterable[T], work: Callable[[T], Awaitable[Any]], limit: int) -> None:
    """``await work(item)`` for every item, at most ``limit`` at once; the first failure cancels the rest.

    ``limit`` worker tasks take items from one shared iterator, so a 100,000-object folder makes
    ``limit`` tasks, not 100,000 (nor 100,000 coroutines held up front).
    """
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await work(item)

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, limit))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for t in workers:
            t.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
