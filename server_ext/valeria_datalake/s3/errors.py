"""S3, botocore and s3fs errors → ``tornado.web.HTTPError``.

The message names the API path and a fixed reason, never the server's own text: that text is
not ours to show, and nothing about credentials may reach a response or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator

from aiohttp import ClientError as AiohttpClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError, NoCredentialsError, ReadTimeoutError
from tornado.web import HTTPError

NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "NotFound", "404", "NoSuchUpload"}
DENIED_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "InvalidToken",
    "ExpiredToken",
    "AccountProblem",
}
CONFLICT_CODES = {"PreconditionFailed", "412", "409", "Conflict", "OperationAborted", "BucketNotEmpty"}
BAD_REQUEST_CODES = {"KeyTooLongError", "InvalidObjectName", "InvalidArgument", "EntityTooLarge"}
UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "503", "500", "RequestTimeout"}
_TRANSPORT = (
    BotoConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    AiohttpClientError,
    asyncio.TimeoutError,
    TimeoutError,
    ConnectionError,
    socket.gaierror,
)

REASONS = {
    400: "Invalid request for S3",
    403: "Permission denied",
    404: "No such file or directory",
    409: "Conflict",
    503: "The datalake storage (S3) is unreachable or failing; try again later",
}


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def s3_error_code(exc: BaseException) -> str | None:
    """The S3 error code (``AccessDenied``...) of ``exc`` or of what it wraps, if any."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict) and "Error" in response:
            meta = response.get("ResponseMetadata", {})
            return str(response["Error"].get("Code") or meta.get("HTTPStatusCode", ""))
    return None


def classify(exc: BaseException) -> int:
    """The HTTP status an S3 failure maps to."""
    code = s3_error_code(exc)
    if code:
        if code in NOT_FOUND_CODES:
            return 404
        if code in DENIED_CODES:
            return 403
        if code in CONFLICT_CODES:
            return 409
        if code in BAD_REQUEST_CODES:
            return 400
        if code in UNAVAILABLE_CODES or code.startswith("5"):
            return 503
    for e in _chain(exc):
        if isinstance(e, NoCredentialsError):
            return 403
        if isinstance(e, _TRANSPORT):
            return 503
        if isinstance(e, FileNotFoundError):
            return 404
        if isinstance(e, PermissionError):
            return 403
        if isinstance(e, (FileExistsError, IsADirectoryError, NotADirectoryError)):
            return 409
        if isinstance(e, OSError) and e.errno in (errno.EREMOTEIO, errno.EBUSY, errno.EIO):
            return 503
    return 503


def to_http_error(
    exc: BaseException, path: str, action: str = "access", log: logging.Logger | None = None
) -> HTTPError:
    """An ``HTTPError`` for a failed S3 operation on API path ``path``.

    An ``HTTPError`` passes through unchanged. The log line names the exception type and the S3
    error code only.
    """
    if isinstance(exc, HTTPError):
        return exc
    status = classify(exc)
    if log is not None:
        level = logging.WARNING if status >= 500 else logging.INFO
        log.log(level, "S3 %s of %r failed: %s (%s)", action, path, type(exc).__name__, s3_error_code(exc))
    message = f"{REASONS[status]}: {path}" if path else REASONS[status]
    if status == 409 and action in ("write", "rename", "copy"):
        message = f"Conflict while trying to {action}: {path}"
    return HTTPError(status, message)


@contextlib.contextmanager
def http_errors(path: str, action: str, log: logging.Logger | None = None) -> Iterator[None]:
    """Turn any S3 failure inside the block into :func:`to_http_error`'s ``HTTPError``."""
    try:
        yield
    except HTTPError:
        raise
    except Exception as e:
        raise to_http_error(e, path, action, log) from None
