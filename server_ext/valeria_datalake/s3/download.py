"""A bucket object as a download: its length, type and ETag, and its bytes chunk by chunk.

Memory stays at about one chunk whatever the size. If S3 drops the connection mid-way, the rest is
fetched with a range GET pinned to the same ETag (a changed object fails the download rather than
splicing two versions).
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tornado.web import HTTPError

from .backend import S3Bucket

#: range GETs that resume a download after S3 dropped the connection mid-stream
MAX_RESUMES = 3


def content_type_for(name: str, stored: str | None = None) -> str:
    """The Content-Type jupyter-server would send for ``name``; S3's stored type as a fallback."""
    if name.lower().endswith(".ipynb"):
        return "application/x-ipynb+json"
    mime, encoding = mimetypes.guess_type(name)
    if encoding == "gzip":
        return "application/gzip"
    if encoding is not None:
        return "application/octet-stream"
    if mime == "text/plain":
        return "text/plain; charset=UTF-8"
    if mime is not None:
        return mime
    if stored and stored not in ("binary/octet-stream", "application/x-directory"):
        return stored
    return "application/octet-stream"


@dataclass
class ObjectStream:
    """One object, as HeadObject described it. Errors propagate as S3 exceptions."""

    bucket: S3Bucket
    key: str
    #: the object's API path, for messages
    api_path: str
    size: int
    content_type: str
    #: as S3 sends it (quoted), "" if none
    etag: str
    last_modified: datetime | None

    @classmethod
    async def open(cls, bucket: S3Bucket, key: str, api_path: str) -> ObjectStream:
        head = await bucket.call("head_object", Key=key)
        return cls(
            bucket,
            key,
            api_path,
            int(head.get("ContentLength", 0)),
            content_type_for(key.rsplit("/", 1)[-1], head.get("ContentType")),
            head.get("ETag") or "",
            head.get("LastModified"),
        )

    async def chunks(
        self, first: int, last: int, chunk_size: int, ranged: bool, log: logging.Logger
    ) -> AsyncIterator[bytes]:
        """Bytes ``first..last`` (inclusive), at most ``chunk_size`` at a time."""
        sent, total, resumes = 0, last - first + 1, 0
        while sent < total:
            kwargs: dict[str, Any] = {"Key": self.key}
            if sent or ranged:
                kwargs["Range"] = f"bytes={first + sent}-{last}"
            if self.etag:
                kwargs["IfMatch"] = self.etag
            body = (await self.bucket.call("get_object", **kwargs))["Body"]
            try:
                while sent < total:
                    try:
                        data = await body.read(min(chunk_size, total - sent))
                    except Exception as e:  # S3 dropped the stream: resume from here
                        if resumes >= MAX_RESUMES:
                            raise
                        resumes += 1
                        log.warning(
                            "S3 stream of %s broke after %d bytes (%s): resuming",
                            self.api_path,
                            sent,
                            type(e).__name__,
                        )
                        break
                    if not data:
                        raise HTTPError(502, f"Short read from S3: {self.api_path}")
                    sent += len(data)
                    yield data
            finally:
                body.close()
