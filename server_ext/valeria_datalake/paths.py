"""API-path parsing and validation: the only place that decides what a legal path is.

An API path (``/``-separated, relative to the file browser's root) is split into the mount it
falls in (the virtual root, home, scratch or one bucket) and the path inside that mount. Bad
input (``..``, NUL bytes, over-long names, malformed bucket folders) is refused here with a 400,
before any backend sees it, so no backend has to defend itself against an escape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from tornado.web import HTTPError

MountKind = Literal["root", "home", "scratch", "bucket"]

#: POSIX NAME_MAX; S3 has no per-segment limit but a whole key is at most 1024 bytes.
MAX_NAME_BYTES = 255
MAX_KEY_BYTES = 1024
MAX_PATH_BYTES = 4096
SCRATCH_NAME = "scratch"
# Bucket names as S3 and Ceph RGW accept them (RGW's relaxed names allow capitals and "_"); anything
# else cannot be a bucket and is a 404 before any request is made.
_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
#: C0 and C1 control characters and DEL; U+FFFD stands for bytes that were not UTF-8 (an S3 listing
#: decodes such keys lossily, so the key we would name is not the key that is stored)
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ufffd]")


def is_bucket_name(name: str) -> bool:
    """Could ``name`` be a bucket (3 to 255 characters, RGW's relaxed rules)? For names users type."""
    return len(name) >= 3 and _BUCKET_RE.fullmatch(name) is not None


@dataclass(frozen=True)
class Location:
    """Where an API path points: ``kind`` and ``bucket`` name the mount, ``inner`` the path in it."""

    api_path: str
    kind: MountKind
    inner: str = ""
    bucket: str = ""

    @property
    def is_mount_root(self) -> bool:
        """True for the virtual root and for the top folder of a mount (scratch, a bucket)."""
        return self.kind == "root" or (self.kind in ("scratch", "bucket") and not self.inner)

    @property
    def name(self) -> str:
        return self.api_path.rsplit("/", 1)[-1]

    def same_mount(self, other: Location) -> bool:
        return self.kind == other.kind and self.bucket == other.bucket


def normalize(path: str) -> str:
    """Strip the outer slashes and refuse anything that is not a plain relative path."""
    if not isinstance(path, str):
        raise HTTPError(400, "Path must be a string")
    if "\x00" in path:
        raise HTTPError(400, "Path contains a NUL byte")
    path = path.strip("/")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise HTTPError(400, "Path is too long")
    if not path:
        return ""
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise HTTPError(400, f"Invalid path (empty, '.' or '..' segment): {path}")
        try:
            size = len(part.encode("utf-8"))
        except UnicodeEncodeError:
            raise HTTPError(400, f"Invalid path (not valid unicode): {path!r}") from None
        if size > MAX_NAME_BYTES:
            raise HTTPError(400, f"Name too long (over {MAX_NAME_BYTES} bytes): {path}")
    return path


def key_problem(rel: str, max_name_bytes: int | None = MAX_NAME_BYTES) -> str | None:
    """Why the relative key (or path) ``rel`` must never become a local path or a key; None if safe.

    An S3 key is any string: ``a/../b``, ``a//b``, ``/a``, ``a/`` and names with a newline are
    all stored literally by Ceph RGW and moto. Turned into a path, ``..`` leaves the destination
    folder; the others name a different file than the key, or none. ``max_name_bytes`` bounds
    each segment (a POSIX name; None for an S3 destination).
    """
    if _UNSAFE_CHARS.search(rel):
        return "a control character or undecodable bytes"
    for part in rel.split("/"):
        if part in ("", ".", ".."):
            return "an empty, '.' or '..' path segment"
        if max_name_bytes is not None and len(part.encode("utf-8", "surrogatepass")) > max_name_bytes:
            return f"a name longer than {max_name_bytes} bytes"
    return None


class PathRouter:
    """Splits API paths into mounts, given the mount names currently configured."""

    def __init__(self, bucket_prefix: str, scratch_enabled: bool) -> None:
        if not bucket_prefix or "/" in bucket_prefix:
            raise ValueError("bucket prefix must be a non-empty name without '/'")
        self.bucket_prefix = bucket_prefix
        self.scratch_enabled = scratch_enabled

    def bucket_folder(self, bucket: str) -> str:
        return f"{self.bucket_prefix}{bucket}"

    def is_reserved_top_name(self, name: str) -> bool:
        """Names at the top of home that a mount shadows: writing them in home is refused."""
        return name.startswith(self.bucket_prefix) or (self.scratch_enabled and name == SCRATCH_NAME)

    def locate(self, path: str) -> Location:
        path = normalize(path)
        if not path:
            return Location("", "root")
        top, _, rest = path.partition("/")
        if self.scratch_enabled and top == SCRATCH_NAME:
            return Location(path, "scratch", rest)
        if top.startswith(self.bucket_prefix):
            bucket = top[len(self.bucket_prefix) :]
            if not _BUCKET_RE.fullmatch(bucket):
                raise HTTPError(404, f"No such bucket: {top}")
            if len(rest.encode("utf-8")) > MAX_KEY_BYTES:
                raise HTTPError(400, f"Path is too long for an S3 key: {path}")
            if _UNSAFE_CHARS.search(rest):
                raise HTTPError(400, f"Invalid path (control character): {path!r}")
            return Location(path, "bucket", rest, bucket)
        return Location(path, "home", path)


def join_path(a: str, b: str) -> str:
    """``a/b`` for relative paths and keys, either of which may be empty."""
    return f"{a}/{b}" if a and b else (a or b)
