"""S3, botocore and s3fs errors → ``tornado.web.HTTPError``: the one error taxonomy of the datalake.

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
from s3fs.errors import translate_boto_error
from tornado.web import HTTPError

#: S3 error codes whose status is not the one s3fs's ``translate_boto_error`` implies, or that
#: s3fs does not know: a HEAD answers only its HTTP status ("NotFound", "Forbidden"); a failed
#: condition or a concurrent change is a conflict, not a bad request or a busy server
STATUS_BY_CODE = {
    "NotFound": 404,
    "Forbidden": 403,
    "InvalidToken": 403,
    "PreconditionFailed": 409,
    "412": 409,
    "409": 409,
    "Conflict": 409,
    "OperationAborted": 409,
    "InvalidObjectName": 400,
}
#: statuses of the ``OSError``s s3fs translates the remaining codes into
STATUS_BY_ERRNO = {
    errno.EINVAL: 400,
    errno.ENAMETOOLONG: 400,
    errno.EMSGSIZE: 400,
    errno.ENOTEMPTY: 409,
    errno.EREMOTEIO: 503,
    errno.EBUSY: 503,
    errno.EIO: 503,
}
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


def _client_error(exc: BaseException) -> BaseException | None:
    """The botocore ``ClientError`` (anything with an S3 error response) in ``exc``'s chain."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict) and "Error" in response:
            return e
    return None


def s3_error_code(exc: BaseException) -> str | None:
    """The S3 error code (``AccessDenied``...) of ``exc`` or of what it wraps, if any."""
    e = _client_error(exc)
    if e is None:
        return None
    response = e.response  # type: ignore[attr-defined]
    meta = response.get("ResponseMetadata", {})
    return str(response["Error"].get("Code") or meta.get("HTTPStatusCode", ""))


def _status_of(e: BaseException) -> int | None:
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
    if isinstance(e, OSError):
        return STATUS_BY_ERRNO.get(e.errno)
    return None


def classify(exc: BaseException) -> int:
    """The HTTP status an S3 failure maps to: s3fs's ``translate_boto_error`` taxonomy of the S3
    error code (with :data:`STATUS_BY_CODE` first), else the exception types in the chain; 503
    for anything unknown (the storage failed, not the request)."""
    client_error = _client_error(exc)
    if client_error is not None:
        code = s3_error_code(client_error) or ""
        if code in STATUS_BY_CODE:
            return STATUS_BY_CODE[code]
        status = _status_of(translate_boto_error(client_error, message="", set_cause=False))
        if status is not None:
            return status
    for e in _chain(exc):
        status = _status_of(e)
        if status is not None:
            return status
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
