"""``/files/<path>``: bucket files streamed from S3 with bounded memory; home and scratch as usual.

jupyter-server serves ``/files/`` through the contents manager's ``files_handler_class``. For a
contents manager that is not file-backed that is ``FilesHandler``, which reads the whole file
into memory and base64-encodes it. This handler streams a bucket object instead: one GetObject
(for the whole object or the requested range), read and written ``chunk_size`` bytes at a time,
each write awaited until the client took it, so memory stays at about one chunk whatever the
size. If S3 drops the connection mid-way, the rest is fetched with a range GET pinned to the
same ETag (a changed object fails the download rather than splicing two versions).

Headers: Content-Type (by name, as jupyter-server does), Content-Length, the object's ETag and
Last-Modified, ``Content-Disposition: attachment`` for ``?download=1`` and notebooks, and single
HTTP ranges (206, 416) and ``If-None-Match`` (304). Home and scratch files go through
jupyter-server's ``AuthenticatedFileHandler`` (tornado's static file handler) with the mount's
own root, which already streams and supports ranges.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import AuthenticatedFileHandler
from tornado import httputil, iostream, web

from .s3.errors import to_http_error

#: bytes read from S3 and written to the client at a time
CHUNK_SIZE = 1024 * 1024
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


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """A single ``bytes=`` range → (first, last) inclusive; None to send everything.

    False when the range cannot be satisfied (416). Several ranges, or units other than bytes,
    are answered with the whole object, which RFC 9110 allows.
    """
    if not header:
        return None
    parsed = httputil._parse_request_range(header)
    if parsed is None:
        return None
    start, end = parsed
    if start is not None and start < 0:  # suffix: the last -start bytes
        if size == 0:
            return False
        start = max(0, size + start)
    if start is None:  # "bytes=-0"
        return False
    if end is not None:  # tornado turns "a-b" into the slice [a, b+1)
        end = min(end, size)
    else:
        end = size
    if start >= size or start >= end:
        return False
    return start, end - 1


class DatalakeFilesHandler(AuthenticatedFileHandler):
    """``/files/<api path>`` for every mount of ``DatalakeContentsManager``."""

    chunk_size = CHUNK_SIZE

    @web.authenticated
    @authorized
    async def head(self, path: str) -> None:  # type:ignore[override]
        self.check_xsrf_cookie()
        await self._serve(path, include_body=False)

    @web.authenticated
    @authorized
    async def get(self, path: str, include_body: bool = True) -> None:  # type:ignore[override]
        self.check_xsrf_cookie()
        await self._serve(path, include_body=include_body)

    async def _serve(self, path: str, include_body: bool) -> None:
        cm = self.contents_manager
        locate = getattr(cm, "locate", None)
        loc = locate(path) if locate is not None else None
        if loc is None or loc.kind == "home":
            inner = loc.inner if loc is not None else path
            await self._serve_posix(inner, include_body)
        elif loc.kind == "scratch" and loc.inner:
            self.root = cm.scratch.root_dir
            await self._serve_posix(loc.inner, include_body)
        elif loc.kind == "bucket" and loc.inner:
            await self._serve_bucket(loc, include_body)
        else:
            raise web.HTTPError(404, "Not a file")

    async def _serve_posix(self, inner: str, include_body: bool) -> None:
        if self.get_argument("download", None) or inner.endswith(".ipynb"):
            self.set_attachment_header(inner.rsplit("/", 1)[-1])
        await web.StaticFileHandler.get(self, inner, include_body=include_body)

    # -- buckets -----------------------------------------------------------------------------------

    async def _serve_bucket(self, loc: Any, include_body: bool) -> None:
        cm = self.contents_manager
        if not cm.allow_hidden and await cm.is_hidden(loc.api_path):
            self.log.info("Refusing to serve hidden file, via 404 Error")
            raise web.HTTPError(404)
        bucket, _ = await cm._bucket(loc)
        try:
            head = await bucket.call("head_object", Key=loc.inner)
        except Exception as e:
            raise to_http_error(e, loc.api_path, "read", self.log) from None
        size = int(head.get("ContentLength", 0))
        etag = head.get("ETag") or ""
        name = loc.name

        self.set_header("Content-Type", content_type_for(name, head.get("ContentType")))
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Cache-Control", "no-cache")
        if etag:
            self.set_header("Etag", etag)
        if head.get("LastModified") is not None:
            self.set_header("Last-Modified", httputil.format_timestamp(head["LastModified"]))
        if self.get_argument("download", None) or name.endswith(".ipynb"):
            self.set_attachment_header(name)

        if etag and self._matches(self.request.headers.get("If-None-Match"), etag):
            self.set_status(304)
            self.clear_header("Content-Type")
            return

        wanted: tuple[int, int] | None | bool = None
        if_range = self.request.headers.get("If-Range")
        if not if_range or if_range == etag:
            wanted = parse_range(self.request.headers.get("Range"), size)
        if wanted is False:
            self.set_status(416)
            self.clear_header("Content-Type")
            self.set_header("Content-Range", f"bytes */{size}")
            return
        if wanted is None:
            first, last = 0, size - 1
        else:
            first, last = wanted
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {first}-{last}/{size}")
        length = last - first + 1 if size else 0
        self.set_header("Content-Length", length)
        if not include_body or length == 0:
            return
        await self._stream(bucket, loc, etag, first, last, ranged=wanted is not None)

    @staticmethod
    def _matches(header: str | None, etag: str) -> bool:
        if not header:
            return False
        if header.strip() == "*":
            return True
        tags = [t.strip().removeprefix("W/") for t in header.split(",")]
        return etag in tags

    async def _stream(self, bucket: Any, loc: Any, etag: str, first: int, last: int, ranged: bool) -> None:
        """Copy bytes ``first..last`` of the object to the client, one chunk in memory at a time."""
        sent = 0
        total = last - first + 1
        resumes = 0
        while sent < total:
            kwargs: dict[str, Any] = {"Key": loc.inner}
            if sent or ranged:
                kwargs["Range"] = f"bytes={first + sent}-{last}"
            if etag:
                kwargs["IfMatch"] = etag
            try:
                resp = await bucket.call("get_object", **kwargs)
            except Exception as e:
                raise to_http_error(e, loc.api_path, "read", self.log) from None
            body = resp["Body"]
            try:
                while sent < total:
                    try:
                        data = await body.read(min(self.chunk_size, total - sent))
                    except Exception as e:  # S3 dropped the stream: resume from here
                        if resumes >= MAX_RESUMES:
                            raise to_http_error(e, loc.api_path, "read", self.log) from None
                        resumes += 1
                        self.log.warning(
                            "S3 stream of %s broke after %d bytes (%s): resuming",
                            loc.api_path,
                            sent,
                            type(e).__name__,
                        )
                        break
                    if not data:
                        raise web.HTTPError(502, f"Short read from S3: {loc.api_path}")
                    sent += len(data)
                    self.write(data)
                    del data
                    try:
                        await self.flush()
                    except iostream.StreamClosedError:
                        self.log.debug("Client closed the download of %s", loc.api_path)
                        return
            finally:
                body.close()
