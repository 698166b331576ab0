"""Big listings made off the event loop: a blocking botocore client in a few worker threads.

Parsing a 1,000-key ListObjectsV2 page (XML, dates) costs about 20 ms of CPU; aiobotocore does it
on the event loop, so a 10,000-object folder stalled every kernel and tab of the server for
150-250 ms. Here the whole paginated listing, and its conversion to entries, runs in a worker
thread with a sync client configured exactly like the async one (``client.client_options``);
the loop only awaits the result. Same requests, same count: one ListObjectsV2 per 1,000 keys.
Small calls (reads, writes, probes) stay on s3fs's async client, where they cost less than a
thread hop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from botocore.exceptions import ClientError
from s3fs.errors import translate_boto_error

from .client import S3Settings, make_sync_client
from .models import Listing, ObjectEntry, listing_from_pages, tree_from_pages

T = TypeVar("T")

#: default worker threads (``DatalakeContentsManager.s3_list_threads``)
LIST_THREADS = 4
#: default copy threads (``DatalakeContentsManager.server_copy_concurrency``)
COPY_THREADS = 32


class Pager:
    """The ListObjectsV2 requests of one paginated listing, stopping after ``limit`` keys.

    Shared by the threaded and the async listing loops: ``while (req := pager.next_request()):
    pager.add(call(**req))``. With a limit, the listing costs ceil(limit/1000) requests at most
    (the last one asks only for what is left) and :attr:`truncated` says whether S3 held more.
    """

    def __init__(self, prefix: str, delimiter: str | None = None, limit: int | None = None) -> None:
        self.prefix = prefix
        self.delimiter = delimiter
        self.limit = limit
        self.received = 0
        self._token: str | None = None
        self._done = False
        #: S3 has more keys than the limit let us list
        self.truncated = False

    def next_request(self) -> dict[str, Any] | None:
        if self._done:
            return None
        max_keys = 1000 if self.limit is None else min(1000, self.limit - self.received)
        kwargs: dict[str, Any] = {"Prefix": self.prefix, "MaxKeys": max_keys}
        if self.delimiter:
            kwargs["Delimiter"] = self.delimiter
        if self._token:
            kwargs["ContinuationToken"] = self._token
        return kwargs

    def add(self, page: dict[str, Any]) -> None:
        self.received += len(page.get("Contents") or ()) + len(page.get("CommonPrefixes") or ())
        self._token = page.get("NextContinuationToken")
        more = bool(page.get("IsTruncated") and self._token)
        if not more:
            self._done = True
        elif self.limit is not None and self.received >= self.limit:
            self._done = self.truncated = True


def list_pages(
    client: Any, bucket: str, prefix: str, delimiter: str | None, limit: int | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """ListObjectsV2 pages below ``prefix`` (1,000 keys each) up to ``limit`` keys, and whether
    S3 holds more than that."""
    pager = Pager(prefix, delimiter, limit)
    pages = []
    while (request := pager.next_request()) is not None:
        page = client.list_objects_v2(Bucket=bucket, **request)
        page.pop("ResponseMetadata", None)
        pager.add(page)
        pages.append(page)
    return pages, pager.truncated


def folder_listing(client: Any, bucket: str, prefix: str, limit: int | None = None) -> Listing:
    """One folder level (``Delimiter="/"``), internals dropped (see ``models.listing_from_pages``),
    at most ``limit`` entries."""
    return listing_from_pages(prefix, *list_pages(client, bucket, prefix, "/", limit))


def tree_entries(client: Any, bucket: str, prefix: str) -> list[ObjectEntry]:
    """Every object at or below ``prefix``; checkpoints left out unless ``prefix`` is inside them."""
    return tree_from_pages(prefix, list_pages(client, bucket, prefix, None)[0])


def copy_object(client: Any, bucket: str, key: str, src_bucket: str, src_key: str, acl: str) -> None:
    """One CopyObject (objects under 5 GiB); errors as s3fs raises them (``FileNotFoundError``...)."""
    extra = {"ACL": acl} if acl else {}
    try:
        client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": src_bucket, "Key": src_key}, **extra)
    except ClientError as e:
        raise translate_boto_error(e) from e


class ThreadedS3:
    """Run blocking S3 work in worker threads sharing one botocore client (thread-safe).

    ``workers`` threads make listings, ``copy_workers`` others make server-side copies, so a
    folder rename never delays a listing. The client is created on first use, in a worker
    thread, with a connection pool big enough for both. :meth:`close` stops the threads and the
    client's connection pool.
    """

    def __init__(
        self, settings: S3Settings, workers: int = LIST_THREADS, copy_workers: int = COPY_THREADS
    ) -> None:
        pool = max(settings.max_pool_connections, workers + copy_workers)
        self._settings = dataclasses.replace(settings, max_pool_connections=pool)
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="valeria-s3")
        self._copy_executor = ThreadPoolExecutor(max(1, copy_workers), thread_name_prefix="valeria-s3-copy")
        self._client: Any = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def client(self) -> Any:
        """The botocore client once built (:meth:`warm_up`), else None; e.g. to register events."""
        return self._client

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = make_sync_client(self._settings)
            return self._client

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return fn(self._get_client(), *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(client, *args)`` in a worker thread; its result or exception, on the loop."""
        return await self._run_in(self._executor, fn, args)

    async def _run_in(self, executor: ThreadPoolExecutor, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._closed:
            raise RuntimeError("S3 worker threads already closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, partial(self._call, fn, args))

    async def warm_up(self) -> None:
        """Build the client now (in a worker thread), rather than on the first listing."""
        await self.run(lambda client: None)

    async def list_folder(self, bucket: str, prefix: str, limit: int | None = None) -> Listing:
        return await self.run(folder_listing, bucket, prefix, limit)

    async def list_tree(self, bucket: str, prefix: str) -> list[ObjectEntry]:
        return await self.run(tree_entries, bucket, prefix)

    async def copy(self, bucket: str, key: str, src_bucket: str, src_key: str) -> None:
        """Server-side copy of ``src_bucket/src_key`` (under 5 GiB) to ``bucket/key``, with the
        configured object ACL (as s3fs adds it to its own writes)."""
        args = (bucket, key, src_bucket, src_key, self._settings.object_acl)
        await self._run_in(self._copy_executor, copy_object, args)

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._copy_executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
