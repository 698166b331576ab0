"""``/files/<path>``: bucket files streamed from S3 with bounded memory; home and scratch as usual.

jupyter-server serves ``/files/`` through the contents manager's ``files_handler_class``. For a
contents manager that is not file-backed that is ``FilesHandler``, which reads the whole file
into memory and base64-encodes it. This handler asks the path's mount instead: a POSIX mount
names its folder (``local_root``) and jupyter-server's ``AuthenticatedFileHandler`` (tornado's
static file handler, which already streams and supports ranges) serves it; a bucket mount opens
an ``s3/download.ObjectStream`` (length, type, ETag, then the bytes a chunk at a time, each write
awaited until the client took it, so memory stays at about one chunk whatever the size).

Headers for bucket files: Content-Type (by name, as jupyter-server does), Content-Length, the
object's ETag and Last-Modified, ``Content-Disposition: attachment`` for ``?download=1`` and
notebooks, and single HTTP ranges (206, 416) and ``If-None-Match`` (304).
"""

from __future__ import annotations

import contextlib

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import AuthenticatedFileHandler
from tornado import httputil, iostream, web

from .s3.download import ObjectStream
from .s3.errors import http_errors

#: bytes read from S3 and written to the client at a time
CHUNK_SIZE = 1024 * 1024


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
        mount_at = getattr(cm, "mount_at", None)
        if mount_at is None:  # not our contents manager: jupyter-server's own behaviour
            await self._serve_local(path, include_body)
            return
        mount, loc = await mount_at(path)
        if mount is None or loc.is_mount_root:
            raise web.HTTPError(404, "Not a file")
        if mount.local_root is not None:
            self.root = mount.local_root
            await self._serve_local(loc.inner, include_body)
            return
        if not cm.allow_hidden and await cm.is_hidden(loc.api_path):
            self.log.info("Refusing to serve hidden file, via 404 Error")
            raise web.HTTPError(404)
        await self._serve_stream(await mount.open(loc.inner), include_body)

    async def _serve_local(self, inner: str, include_body: bool) -> None:
        if self.get_argument("download", None) or inner.endswith(".ipynb"):
            self.set_attachment_header(inner.rsplit("/", 1)[-1])
        await web.StaticFileHandler.get(self, inner, include_body=include_body)

    async def _serve_stream(self, stream: ObjectStream, include_body: bool) -> None:
        size, etag, name = stream.size, stream.etag, stream.api_path.rsplit("/", 1)[-1]
        self.set_header("Content-Type", stream.content_type)
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Cache-Control", "no-cache")
        if etag:
            self.set_header("Etag", etag)
        if stream.last_modified is not None:
            self.set_header("Last-Modified", httputil.format_timestamp(stream.last_modified))
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
        chunks = stream.chunks(first, last, self.chunk_size, wanted is not None, self.log)
        with http_errors(stream.api_path, "read", self.log):
            async with contextlib.aclosing(chunks):  # the S3 body is closed even if the client left
                async for data in chunks:
                    self.write(data)
                    del data
                    try:
                        await self.flush()
                    except iostream.StreamClosedError:
                        self.log.debug("Client closed the download of %s", stream.api_path)
                        return

    @staticmethod
    def _matches(header: str | None, etag: str) -> bool:
        if not header:
            return False
        if header.strip() == "*":
            return True
        tags = [t.strip().removeprefix("W/") for t in header.split(",")]
        return etag in tags
