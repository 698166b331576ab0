"""What seeing it costs: the metrics and audit code on the hot paths, in microseconds.

Not a test (wall-clock numbers vary with the machine's load): a script to run before and after a
change to ``valeria_datalake.metrics`` or ``valeria_hub.audit``::

    .venv/bin/python bench/metrics_overhead.py [--n 200000]

Rows: the two botocore event handlers every S3 request runs (``request-created`` with a 1 MiB
body, ``response-received``), one audit line (JSON to a discarded stream), one spawn-stage
observation, and rendering the whole registry as a scrape does, with every label combination the
notebook side can produce for the S3 operations a server uses.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import time

from prometheus_client import REGISTRY, generate_latest
from valeria_datalake import metrics as nb
from valeria_hub import audit
from valeria_hub import metrics as hub


class Request:
    def __init__(self, body: bytes) -> None:
        self.context: dict = {}
        self.data = io.BytesIO(body)


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    n = parser.parse_args().n
    body = b"x" * 1024 * 1024
    request = Request(body)
    answer = {"status_code": 200, "headers": {"content-length": "1048576"}}

    def s3_pair() -> None:
        nb.on_request_created(request, event_name="request-created.s3.UploadPart")
        nb.on_response_received(answer, request.context, event_name="response-received.s3.UploadPart")

    logger = audit.audit_logger()
    for handler in logger.handlers:
        handler.setStream(open(os.devnull, "w"))
    logging.getLogger().setLevel(logging.WARNING)

    def audit_line() -> None:
        audit.audit("spawn", user="alice", server="", uid=1001, gid=1001, supplemental_gids=[1001, 2000])

    def stage() -> None:
        with hub.stage("plan"):
            pass

    operations = ["ListObjectsV2", "GetObject", "PutObject", "HeadObject", "UploadPart", "CopyObject"]
    for op in operations:
        for status in ("200", "204", "403", "404", "500", "error"):
            nb.S3_REQUESTS.labels(op, status).inc(0)
    rows = [
        ("S3 request handlers (request-created + response-received)", per_call(s3_pair, n)),
        ("one audit line (JSON, discarded stream)", per_call(audit_line, n // 10)),
        ("one spawn-stage observation", per_call(stage, n)),
        ("render the whole registry (one scrape)", per_call(lambda: generate_latest(REGISTRY), 200)),
    ]
    size = len(generate_latest(REGISTRY))
    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}}  µs per call")
    for name, micros in rows:
        print(f"{name:<{width}}  {micros:10.1f}")
    print(f"scrape size: {size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
