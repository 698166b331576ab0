"""A small TCP proxy on 127.0.0.1 in front of a local service: counts HTTP requests, adds latency,
and can take the service "down" (refused connections) and back up on the same port.

Benchmarks put it in front of the OIDC realm, OpenBao and S3 to count each client's requests;
outage tests use it to make Vault or Keycloak slow (``latency``: every request waits before it is
forwarded) or unreachable for a while (``down()`` / ``up()``) without touching the service.
It runs its own asyncio loop in a daemon thread; every method is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import threading
import urllib.request
from collections import Counter
from typing import Any

from typing_extensions import Self

from .procs import LocalService, StartStop, local_url

_REQUEST_LINE = re.compile(rb"^(GET|POST|PUT|DELETE|HEAD|PATCH|OPTIONS) (\S+) HTTP/1\.[01]\r\n")


class TcpProxy(StartStop):
    """``127.0.0.1:port`` → ``target_host:target_port`` (the target may be set after start)."""

    def __init__(
        self,
        target_port: int | None = None,
        target_host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = port
        #: seconds every request (every client→service chunk that starts one) waits before it is sent
        self.latency = latency
        #: (method, path without query) → number of requests seen
        self.requests: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return local_url(self.port)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Self:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcpproxy", daemon=True)
        self._thread.start()
        self.up()
        return self

    def _call(self, coro, timeout: float = 30.0):
        assert self._loop is not None, "start() the proxy first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def up(self) -> None:
        """Listen (again) on the same port."""
        self._call(self._listen())

    def down(self) -> None:
        """Stop listening and cut every open connection: clients see a stopped service."""
        self._call(self._close())

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    def total(self, path_prefix: str = "") -> int:
        """Requests whose path starts with ``path_prefix``."""
        with self._lock:
            return sum(n for (_, path), n in self.requests.items() if path.startswith(path_prefix))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- inside the loop ---------------------------------------------------------------------------
    async def _listen(self) -> None:
        if self._server is None:
            # a class connecting at once: asyncio's default backlog of 100 overflows (Node's is 511)
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True, backlog=1024
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()  # the service itself is down: the client sees a reset
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pump(reader, up_writer, count=True), self._pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool = False):
        try:
            while chunk := await reader.read(65536):
                if count:
                    m = _REQUEST_LINE.match(chunk)
                    if m:
                        with self._lock:
                            self.requests[(m.group(1).decode(), m.group(2).decode().split("?")[0])] += 1
                        if self.latency:
                            await asyncio.sleep(self.latency)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if writer.can_write_eof():
                try:
                    writer.write_eof()
                except OSError:
                    pass


class TcpProxyProcess(LocalService):
    """The same proxy in a child process, for a caller whose own threads would starve it (a load
    generator with hundreds of threads): ``python -m valeria_platform.tcpproxy``, driven over a
    small HTTP control port (``/stats``, ``/reset``, ``/target?port=N``)."""

    log_name = "tcpproxy.log"
    temp_prefix = "valeria-tcpproxy-"

    def __init__(self, target_port: int | None = None) -> None:
        super().__init__()
        self.target_port = target_port
        self._control_port = 0

    @property
    def url(self) -> str:
        return self._url()

    def start(self) -> Self:
        ports = self._spawn_ready("tcpproxy", "valeria_platform.tcpproxy", str(self.target_port or 0))
        self.port, self._control_port = (int(p) for p in ports)
        return self

    def _control(self, path: str) -> Any:
        with urllib.request.urlopen(f"{local_url(self._control_port)}{path}", timeout=30) as r:
            return json.load(r)

    def set_target(self, port: int) -> None:
        self.target_port = port
        self._control(f"/target?port={port}")

    @property
    def requests(self) -> Counter[tuple[str, str]]:
        return Counter({(m, p): n for m, p, n in self._control("/stats")})

    def reset(self) -> None:
        self._control("/reset")


def main(argv: list[str] | None = None) -> None:
    """Child-process entry of TcpProxyProcess: ``READY <proxy port> <control port>`` on stdout."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    args = argv if argv is not None else sys.argv[1:]
    proxy = TcpProxy(int(args[0]) or None).start()

    class Control(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/target":
                proxy.target_port = int(parse_qs(url.query)["port"][0])
            elif url.path == "/reset":
                proxy.reset()
            with proxy._lock:
                stats = [[m, p, n] for (m, p), n in proxy.requests.items()]
            body = json.dumps(stats if url.path == "/stats" else []).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    print(f"READY {proxy.port} {control.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=control.shutdown).start())
    control.serve_forever()
    proxy.stop()


if __name__ == "__main__":
    main()
