"""The server's S3 clients and the state every bucket mount shares, created on first use.

One ``s3fs.S3FileSystem`` (async, on the server's loop), the listing threads (``threaded.py``),
the chunked uploads (``uploads.py``) and the folder-listing cache. Bucket mounts are made per
request and cheap; what must outlive a request lives here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..heap import freeze_startup_heap
from .backend import ListingCache
from .client import S3Settings, close_s3_filesystem, make_s3_filesystem
from .threaded import ThreadedS3


class S3Connection:
    def __init__(self, settings: Callable[[], S3Settings], config: Any) -> None:
        """``config``: the contents manager, whose traitlets (``s3_list_threads``,
        ``server_copy_concurrency``, ``freeze_heap``, ``upload_part_size``, ``upload_idle_timeout``)
        are read when each client is created."""
        self.settings = settings
        self.config = config
        self.log: logging.Logger = config.log
        self.listings = ListingCache(config.listing_cache_ttl)
        self._fs: Any = None
        self._fs_lock = asyncio.Lock()
        self._uploads: Any = None
        self._threaded: ThreadedS3 | None = None
        #: bytes received so far by each chunked upload into a bucket, by (bucket, key)
        self.chunked_sizes: dict[tuple[str, str], int] = {}

    @property
    def is_closed(self) -> bool:
        """No client, thread pool or upload timer is alive (none made yet, or :meth:`close`d)."""
        return self._fs is None and self._threaded is None and self._uploads is None

    async def filesystem(self) -> Any:
        """The S3 filesystem, created on first use on the server's event loop."""
        async with self._fs_lock:
            if self._fs is None:
                fs = make_s3_filesystem(self.settings())
                if self.config.freeze_heap:
                    await self._build_clients_and_freeze(fs)
                self._fs = fs
            return self._fs

    async def _build_clients_and_freeze(self, fs: Any) -> None:
        """Build both S3 clients now, then freeze the heap (``heap.py``), once per process."""
        try:
            await fs.set_session()  # s3fs would build its aiobotocore client on the first call
            threaded = self.threaded()
            if threaded is not None:
                await threaded.warm_up()
        except Exception as e:  # the first real call will report it
            self.log.debug("Building the S3 clients failed: %s", type(e).__name__)
            return
        frozen = freeze_startup_heap()
        if frozen:
            self.log.debug("Froze %d startup objects out of garbage collection", frozen)

    def threaded(self) -> ThreadedS3 | None:
        """Worker threads for paginated listings (``threaded.py``), created on first use."""
        workers = self.config.s3_list_threads
        if workers <= 0:
            return None
        if self._threaded is None:
            self._threaded = ThreadedS3(
                self.settings(), workers=workers, copy_workers=self.config.server_copy_concurrency
            )
        return self._threaded

    async def uploads(self) -> Any:
        """Chunked uploads into buckets (``uploads.py``), created on first use."""
        if self._uploads is None:
            from .uploads import MultipartUploads

            self._uploads = MultipartUploads(
                await self.filesystem(),
                part_size=self.config.upload_part_size,
                idle_timeout=self.config.upload_idle_timeout,
                log=self.log,
            )
            self._uploads.start()
        return self._uploads

    def upload_in_progress(self, bucket: str, key: str) -> bool:
        return self._uploads is not None and self._uploads.in_progress(bucket, key)

    def pending_uploads(self) -> int:
        return len(self._uploads.pending()) if self._uploads is not None else 0

    async def close(self) -> None:
        """Abort pending uploads' timers and close the S3 connection pool."""
        if self._uploads is not None:
            await self._uploads.close()
            self._uploads = None
        if self._threaded is not None:
            self._threaded.close()
            self._threaded = None
        if self._fs is not None:
            await close_s3_filesystem(self._fs)
            self._fs = None
