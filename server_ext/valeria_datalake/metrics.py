"""The notebook server's datalake metrics, exported by jupyter-server's `/metrics`.

jupyter-server serves prometheus_client's default registry; the metrics defined here (once per
process, at import: several servers in one process share them) appear beside its own. Label
values come from fixed sets: botocore operation names, HTTP status codes, and the words below,
never a bucket name, key or path.

S3 requests are counted where they happen, in botocore's event system (`instrument_session`),
so every request is seen once, whichever code path sent it (contents manager, `/files/`
downloads, chunked uploads, discovery probes, s3fs's own multipart copies) and retries count
as the requests they are: the totals equal what the S3 server counts. Multipart uploads are
counted from the same events (a successful CreateMultipartUpload, CompleteMultipartUpload or
AbortMultipartUpload), so s3fs's streamed copies are counted too.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

T = TypeVar("T")

S3_REQUESTS = Counter(
    "valeria_s3_requests_total",
    "HTTP requests to S3 (retries included), by S3 operation and HTTP status ('error': no answer)",
    ["operation", "status"],
)
S3_SECONDS = Histogram(
    "valeria_s3_request_duration_seconds",
    "Time from sending an S3 request to its answer (headers), by S3 operation",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
S3_SENT_BYTES = Counter(
    "valeria_s3_sent_bytes_total", "Request body bytes sent to S3, by S3 operation", ["operation"]
)
S3_RECEIVED_BYTES = Counter(
    "valeria_s3_received_bytes_total",
    "Response body bytes announced by S3 (Content-Length), by S3 operation",
    ["operation"],
)
MULTIPART_UPLOADS = Counter(
    "valeria_s3_multipart_uploads_total",
    "Multipart uploads started, completed and aborted (successful S3 answers)",
    ["event"],
)
TRANSFERS = Counter(
    "valeria_transfers_total",
    "Copies and moves between home, scratch and buckets, by kind, route and outcome",
    ["kind", "route", "outcome"],
)
DISCOVERIES = Counter(
    "valeria_bucket_discoveries_total",
    "Bucket discoveries (ListBuckets and probes), by result (ok, or error_<HTTP status>)",
    ["result"],
)
BUCKETS_VISIBLE = Gauge(
    "valeria_buckets_visible",
    "Buckets shown by the last discovery, by access (writable, read-only)",
    ["access"],
)
LISTING_CACHE = Counter(
    "valeria_listing_cache_lookups_total", "Folder listing cache lookups, by result (hit, miss)", ["result"]
)

_MULTIPART = {
    "CreateMultipartUpload": "started",
    "CompleteMultipartUpload": "completed",
    "AbortMultipartUpload": "aborted",
}
_START = "valeria_metrics_start"

for _event in _MULTIPART.values():
    MULTIPART_UPLOADS.labels(_event)
for _result in ("hit", "miss"):
    LISTING_CACHE.labels(_result)
for _access in ("writable", "read-only"):
    BUCKETS_VISIBLE.labels(_access)


# -- S3 requests, from botocore's events ------------------------------------------------------------


def _operation(event_name: str) -> str:
    return event_name.rsplit(".", 1)[-1] if event_name.count(".") >= 2 else "unknown"


def _body_size(body: Any) -> int:
    """Bytes in a request body: bytes-like, or a seekable stream (measured without moving it)."""
    if body is None:
        return 0
    if isinstance(body, bytes | bytearray):
        return len(body)
    if isinstance(body, memoryview):
        return body.nbytes
    if isinstance(body, str):
        return len(body.encode())
    try:
        position = body.tell()
        end = body.seek(0, 2)
        body.seek(position)
        return max(0, end - position)
    except (AttributeError, OSError, ValueError):
        return 0


def on_request_created(request: Any, event_name: str = "", **_: Any) -> None:
    """botocore `request-created`: one per HTTP attempt (retries included)."""
    operation = _operation(event_name)
    context = getattr(request, "context", None)
    if isinstance(context, dict):
        context[_START] = time.perf_counter()
    size = _body_size(getattr(request, "data", None))
    if size:
        S3_SENT_BYTES.labels(operation).inc(size)


def on_response_received(
    response_dict: Any = None, context: Any = None, event_name: str = "", **_: Any
) -> None:
    """botocore `response-received`: the answer (or the failure) of one HTTP attempt."""
    operation = _operation(event_name)
    status = "error"
    if isinstance(response_dict, dict) and response_dict.get("status_code"):
        status = str(int(response_dict["status_code"]))
        length = (response_dict.get("headers") or {}).get("content-length")
        if length and str(length).isdigit():
            S3_RECEIVED_BYTES.labels(operation).inc(int(length))
    S3_REQUESTS.labels(operation, status).inc()
    start = context.get(_START) if isinstance(context, dict) else None
    if start is not None:
        S3_SECONDS.labels(operation).observe(time.perf_counter() - start)
    if status.startswith("2") and operation in _MULTIPART:
        MULTIPART_UPLOADS.labels(_MULTIPART[operation]).inc()


def instrument_session(session: Any) -> Any:
    """Register the request counters on a botocore or aiobotocore session (before its clients
    are created: each client copies the session's handlers). Returns the session."""
    session.register("request-created.s3", on_request_created, unique_id="valeria-metrics-request")
    session.register("response-received.s3", on_response_received, unique_id="valeria-metrics-response")
    return session


# -- transfers, discovery, listing cache ------------------------------------------------------------


def _side(side: Any) -> str:
    return "s3" if hasattr(side, "bucket") else "posix"


def _transfer_outcome(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if type(error).__name__ == "SourceNotRemoved":
        return "source-not-removed"
    if isinstance(error, FileNotFoundError):
        return "not-found"
    status = getattr(error, "status_code", None)
    if status == 409:
        return "conflict"
    if not isinstance(error, Exception):
        return "cancelled"
    return "failed"


def counted_transfer(transfer: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorates `transfer(src, dst, *, move, ...)`: one count per transfer, with its outcome."""

    @functools.wraps(transfer)
    async def wrapper(src: Any, dst: Any, *args: Any, move: bool, **kwargs: Any) -> T:
        error: BaseException | None = None
        try:
            return await transfer(src, dst, *args, move=move, **kwargs)
        except BaseException as e:
            error = e
            raise
        finally:
            route = f"{_side(src)}-{_side(dst)}"
            TRANSFERS.labels("move" if move else "copy", route, _transfer_outcome(error)).inc()

    return wrapper


def counted_discovery(discover: Callable[[Any], Awaitable[T]]) -> Callable[[Any], Awaitable[T]]:
    """Decorates `BucketDiscovery._discover`: the result, and the buckets it shows."""

    @functools.wraps(discover)
    async def wrapper(self: Any) -> T:
        found = await discover(self)
        error = getattr(found, "error", None)
        DISCOVERIES.labels("ok" if error is None else f"error_{int(error.status_code)}").inc()
        buckets = list(getattr(found, "buckets", {}).values())
        writable = sum(1 for b in buckets if b.writable)
        BUCKETS_VISIBLE.labels("writable").set(writable)
        BUCKETS_VISIBLE.labels("read-only").set(len(buckets) - writable)
        return found

    return wrapper


def count_listing_lookup(hit: bool) -> None:
    LISTING_CACHE.labels("hit" if hit else "miss").inc()


# -- the metrics port ---------------------------------------------------------------------------------


def serve_metrics(ip: str, port: int, log: Any) -> Any:
    """Serve the default registry on ``ip:port`` from a daemon thread (prometheus_client's own
    server: scrapes never touch the event loop). Returns the server, or None if the port is taken."""
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(port, addr=ip)
    except OSError as e:
        log.warning("valeria_datalake: cannot serve metrics on %s:%d (%s)", ip, port, type(e).__name__)
        return None
    log.info("valeria_datalake: Prometheus metrics on http://%s:%d/metrics", ip, port)
    return server
