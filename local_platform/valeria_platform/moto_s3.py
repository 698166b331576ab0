"""moto's S3 server on loopback, wrapped so that tests and benchmarks can count what S3 sees.

The wrapper classifies every request as an S3 operation (``ListObjectsV2``, ``UploadPart``...),
adds up the bytes in and out, and can inject faults ("the next CopyObject whose key contains
``b/`` answers 500"). A control endpoint under ``/__valeria__/`` exposes the same to another
process, so the server can run in a subprocess when the caller's own memory is being measured.

moto's in-process ``mock_aws()`` does not work with aiobotocore: this is always a real HTTP server.
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from typing_extensions import Self

from .procs import LocalService

CONTROL_PREFIX = "/__valeria__/"


def classify(method: str, path: str, query: str, headers: dict[str, str]) -> str:
    """Name the S3 operation of a path-style request."""
    q = parse_qs(query, keep_blank_values=True)
    parts = [p for p in path.split("/") if p]
    has_key = len(parts) > 1
    if not parts:
        return "ListBuckets"
    if method == "GET":
        if has_key:
            return "GetObject" if "uploadId" not in q else "ListParts"
        if "uploads" in q:
            return "ListMultipartUploads"
        if "list-type" in q:
            return "ListObjectsV2"
        for sub in ("policy", "acl", "versioning", "location", "versions"):
            if sub in q:
                return "GetBucket" + sub.capitalize()
        return "ListObjects"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "PUT":
        copy = "x-amz-copy-source" in headers
        if "partNumber" in q:
            return "UploadPartCopy" if copy else "UploadPart"
        if not has_key:
            return "PutBucketPolicy" if "policy" in q else "CreateBucket"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        if "delete" in q:
            return "DeleteObjects"
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
        return "PostObject"
    if method == "DELETE":
        if "uploadId" in q:
            return "AbortMultipartUpload"
        return "DeleteObject" if has_key else "DeleteBucket"
    return method


@dataclass
class Fault:
    """Answer ``status`` instead of serving, for the next ``times`` requests that match."""

    op: str
    status: int = 500
    key_contains: str = ""
    times: int = 1

    def matches(self, op: str, path: str) -> bool:
        return self.times > 0 and op == self.op and self.key_contains in path


@dataclass
class Stats:
    ops: Counter = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ops": dict(self.ops),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "requests": self.requests[-5000:],
        }


class CountingApp:
    """WSGI middleware: counts, injects faults, serves the control endpoint."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.stats = Stats()
        self.faults: list[Fault] = []

    def reset(self) -> None:
        with self.lock:
            self.stats = Stats()
            self.faults = []

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(json.dumps(self.stats.as_dict()))

    def _control(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        what = environ["PATH_INFO"][len(CONTROL_PREFIX) :]
        method = environ["REQUEST_METHOD"]
        body = b"{}"
        if what == "stats" and method == "GET":
            body = json.dumps(self.snapshot()).encode()
        elif what == "reset" and method == "POST":
            self.reset()
        elif what == "fault" and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            self.add_fault(Fault(**json.loads(environ["wsgi.input"].read(length))))
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "unknown control call"}']
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response)
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        method = environ["REQUEST_METHOD"]
        op = classify(method, path, environ.get("QUERY_STRING", ""), headers)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        with self.lock:
            self.stats.ops[op] += 1
            self.stats.bytes_in += length
            self.stats.requests.append((op, unquote(path)))
            fault = next((f for f in self.faults if f.matches(op, unquote(path))), None)
            if fault:
                fault.times -= 1
        if fault:
            if length:
                environ["wsgi.input"].read(length)
            start_response(f"{fault.status} Injected", [("Content-Type", "application/xml")])
            code = "InternalError" if fault.status >= 500 else "AccessDenied"
            return [f"<Error><Code>{code}</Code><Message>injected fault</Message></Error>".encode()]
        return self._count_out(self.app(environ, start_response))

    def _count_out(self, body: Iterable[bytes]) -> Iterable[bytes]:
        try:
            for chunk in body:
                with self.lock:
                    self.stats.bytes_out += len(chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close:
                close()


def _make_counting_server(host: str, port: int):
    """A threaded werkzeug server serving moto behind :class:`CountingApp`."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args: object) -> None:  # one line per request drowns test output
            pass

    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
    return server, app


class MotoS3(LocalService):
    """An S3 server on 127.0.0.1, in this process (a thread) or in a subprocess.

    ``no_auth_actions``: when set, moto answers that many requests without checking signatures
    and then enforces IAM (users, keys, policies), which is how per-user access is tested. moto
    reads it from the environment at import, so it needs ``subprocess=True``.
    """

    log_name = "moto.log"
    temp_prefix = "valeria-moto-"

    def __init__(self, subprocess: bool = False, no_auth_actions: int | None = None) -> None:
        if no_auth_actions is not None and not subprocess:
            raise ValueError("per-user IAM needs the server in a subprocess")
        super().__init__()
        self.use_subprocess = subprocess
        self.no_auth_actions = no_auth_actions
        self._server = None
        self.app: CountingApp | None = None

    @property
    def endpoint(self) -> str:
        return self._url()

    def start(self) -> Self:
        if self.use_subprocess:
            env = (
                {}
                if self.no_auth_actions is None
                else {"INITIAL_NO_AUTH_ACTION_COUNT": str(self.no_auth_actions)}
            )
            (port,) = self._spawn_ready("moto", "valeria_platform.moto_s3", "--port", "0", **env)
            self.port = int(port)
        else:
            self._server, self.app = _make_counting_server(self.host, 0)
            self.port = self._server.server_address[1]
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _control(self, what: str, method: str = "GET", payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.endpoint + CONTROL_PREFIX + what, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def stats(self) -> dict[str, Any]:
        """``{"ops": {op: n}, "bytes_in": n, "bytes_out": n, "requests": [(op, path)...]}``."""
        return self.app.snapshot() if self.app else self._control("stats")

    def reset(self) -> None:
        """Zero the counters and drop pending faults (the stored objects stay)."""
        if self.app:
            self.app.reset()
        else:
            self._control("reset", "POST", {})

    def inject_fault(self, op: str, status: int = 500, key_contains: str = "", times: int = 1) -> None:
        fault = Fault(op=op, status=status, key_contains=key_contains, times=times)
        if self.app:
            self.app.add_fault(fault)
        else:
            self._control("fault", "POST", fault.__dict__)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        super().stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto S3 server that counts requests")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server, _ = _make_counting_server("127.0.0.1", args.port)
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
