"""Which buckets this user sees: ListBuckets plus the configured shared buckets, probed, cached.

* ListBuckets returns the buckets the user owns on Ceph RGW and AWS (moto returns every bucket of
  the account). Buckets shared by policy do not appear there: the hub passes them in
  ``VALERIA_SHARED_BUCKETS``, and the user adds more to their own list (``user_buckets.py``),
  read at each discovery.
* Every candidate is probed for read access with one ``ListObjectsV2 max-keys=1``, in parallel;
  a bucket the user cannot read is left out.
* Writability is decided without writing anything: a bucket that ListBuckets returns and that is
  not in the shared list is the user's own, hence writable. A shared bucket is probed with
  ``AbortMultipartUpload`` of an upload id that does not exist: S3 checks the write-side
  permission first, so ``AccessDenied`` means the user may not abort uploads and ``NoSuchUpload``
  means the user may write. A policy may grant ``s3:PutObject`` without
  ``s3:AbortMultipartUpload``, so after ``AccessDenied`` a second probe sends an empty
  ``UploadPart`` to the same made-up upload id, which needs ``s3:PutObject``: ``NoSuchUpload``
  (Ceph RGW, AWS) means writable, anything else (``AccessDenied``; moto answers 500) read-only.
  Nothing is created either way. ``writable`` is what the UI shows; S3 stays the authority, and
  a refused write is a clear 403.
* The result is cached ``ttl`` seconds (so a newly granted bucket appears without a restart); a
  failure is cached for a shorter time and logged once per distinct reason, never with a secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tornado.web import HTTPError

from .metrics import counted_discovery
from .s3.errors import classify, s3_error_code
from .s3.models import CHECKPOINT_PREFIX, EPOCH, as_utc

PROBE_UPLOAD_ID = "valeria-write-probe-00000000"
PROBE_KEY = f"{CHECKPOINT_PREFIX}.write-probe"
#: answers to the abort probe that mean "this permission is missing" (another may still allow writes)
#: seconds a discovery result is kept (``DatalakeContentsManager.bucket_cache_ttl``)
DISCOVERY_TTL = 60.0
DENIED = {"AccessDenied", "403"}
#: S3 error codes that mean the keys themselves are wrong (not just a missing permission)
CREDENTIAL_ERRORS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}


@dataclass(frozen=True)
class BucketInfo:
    name: str
    writable: bool
    created: datetime = EPOCH
    owned: bool = False


@dataclass(frozen=True)
class Discovery:
    """One discovery result: the visible buckets, or why S3 could not be asked."""

    buckets: dict[str, BucketInfo]
    #: set when ListBuckets failed and no shared bucket could be probed either
    error: HTTPError | None = None


class BucketDiscovery:
    def __init__(
        self,
        get_fs: Callable[[], Awaitable[Any]],
        shared: list[str],
        ttl: float = DISCOVERY_TTL,
        error_ttl: float = 10.0,
        concurrency: int = 8,
        log: logging.Logger | None = None,
        user_shared: Callable[[], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.get_fs = get_fs
        self.shared = [b for b in dict.fromkeys(s.strip() for s in shared) if b]
        #: the user's own shared-bucket list (``UserBucketList.names``), read at each discovery
        self.user_shared = user_shared
        self.ttl = ttl
        self.error_ttl = error_ttl
        self.concurrency = concurrency
        self.log = log or logging.getLogger(__name__)
        self._result: Discovery | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()
        self._last_problem: str | None = None

    def invalidate(self) -> None:
        self._result = None

    async def get(self, max_age: float | None = None) -> Discovery:
        """The cached result if younger than ``max_age`` (default: the TTL), else a fresh one."""
        async with self._lock:
            r = self._result
            limit = self.ttl if max_age is None else max_age
            if r is not None and r.error is not None:
                limit = min(limit, self.error_ttl)
            if r is None or time.monotonic() - self._at > limit:
                self._result = await self._discover()
                self._at = time.monotonic()
            return self._result

    def _problem(self, what: str, exc: BaseException | None = None) -> None:
        reason = what if exc is None else f"{what}: {type(exc).__name__} ({s3_error_code(exc)})"
        if reason != self._last_problem:
            self.log.warning("Datalake bucket discovery: %s", reason)
            self._last_problem = reason

    @counted_discovery
    async def _discover(self) -> Discovery:
        try:
            fs = await self.get_fs()
        except ValueError as e:  # no credentials: the datalake is simply off
            self._problem(str(e))
            return Discovery({}, HTTPError(403, "No S3 credentials configured for the datalake"))
        except Exception as e:
            self._problem("cannot create the S3 client", e)
            return Discovery({}, HTTPError(503, "The datalake storage (S3) is unavailable"))

        shared = list(dict.fromkeys([*self.shared, *(await self.user_shared() if self.user_shared else [])]))
        listed: dict[str, datetime] = {}
        list_error: BaseException | None = None
        try:
            resp = await fs._call_s3("list_buckets")
            listed = {b["Name"]: as_utc(b.get("CreationDate")) for b in resp.get("Buckets", [])}
        except Exception as e:
            list_error = e
        if list_error is not None:
            status = classify(list_error)
            bad_credentials = s3_error_code(list_error) in CREDENTIAL_ERRORS
            if status >= 500 or bad_credentials or not shared:
                what = "S3 unreachable" if status >= 500 else "credentials rejected by S3"
                self._problem(what, list_error)
                message = {503: "The datalake storage (S3) is unreachable", 403: "S3 refused the credentials"}
                return Discovery({}, HTTPError(status, message.get(status, "S3 error")))
            self._problem("ListBuckets refused, using the shared bucket list only", list_error)

        candidates = list(dict.fromkeys([*listed, *shared]))
        sem = asyncio.Semaphore(self.concurrency)

        async def probe(name: str) -> BucketInfo | None:
            async with sem:
                return await self._probe(fs, name, listed, shared)

        results = await asyncio.gather(*(probe(n) for n in candidates))
        buckets = {b.name: b for b in results if b is not None}
        if list_error is None:
            self._last_problem = None
        self.log.debug("Datalake buckets: %s", sorted(buckets))
        return Discovery(buckets)

    async def probe(self, name: str) -> BucketInfo | None:
        """Probe one bucket as discovery does (read, then write): None when the user cannot read it."""
        fs = await self.get_fs()
        return await self._probe(fs, name, {}, [name])

    async def _probe(
        self, fs: Any, name: str, listed: dict[str, datetime], shared: list[str]
    ) -> BucketInfo | None:
        try:
            await fs._call_s3("list_objects_v2", Bucket=name, MaxKeys=1)
        except Exception as e:
            self.log.info("Datalake bucket %r not readable (%s), left out", name, s3_error_code(e))
            return None
        owned = name in listed and name not in shared
        writable = owned or await self._probe_write(fs, name)
        return BucketInfo(name, writable, listed.get(name, EPOCH), owned)

    async def _probe_write(self, fs: Any, name: str) -> bool:
        """May the user write to ``name``? Asked without writing (see the module docstring)."""
        probe = {"Bucket": name, "Key": PROBE_KEY, "UploadId": PROBE_UPLOAD_ID}
        try:
            await fs._call_s3("abort_multipart_upload", **probe)
        except Exception as e:
            code = s3_error_code(e)
            if code in ("NoSuchUpload", "404"):
                return True
            if code not in DENIED:
                return False
        else:
            return True
        # abort refused: maybe PutObject is granted without AbortMultipartUpload
        try:
            await fs._call_s3("upload_part", PartNumber=1, Body=b"", **probe)
        except Exception as e:
            return s3_error_code(e) == "NoSuchUpload"  # not "404": moto answers 500, some S3s 404
        # an upload with that id exists?! Not ours to touch: say read-only, write nothing more
        self.log.warning("Datalake write probe of %r found an upload with a made-up id", name)
        return False
