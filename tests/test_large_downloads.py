"""``/files/`` downloads of bucket files stream from S3: headers, ranges, request counts, memory.

A real jupyter-server with our extension, moto in a subprocess counting S3 requests and bytes.
The HTTP client hashes the body as it arrives (``streaming_callback``), so tracemalloc in this
process measures what the server holds, not a buffered copy of the download.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import tracemalloc

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from valeria_platform.loopstall import LoopStallMonitor

from tests.fixtures.s3 import OWN, OWN_BUCKET, USER, World, datalake_server_config, on_server_loop

MiB = 1024 * 1024


@pytest.fixture
def jp_server_config(moto_world: World, tmp_path, monkeypatch):
    return datalake_server_config(moto_world.site, tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def big_object(moto_world: World) -> tuple[str, bytes]:
    """A 24 MiB random object in alice's bucket (made once for the module)."""
    key = f"{moto_world.unique('dl')}/big data.bin"
    data = os.urandom(24 * MiB)
    moto_world.client().put_object(Bucket=OWN_BUCKET, Key=key, Body=data)
    return key, data


def ops(world: World) -> dict[str, int]:
    return world.site.counter.stats()["ops"]


async def fetch(jp_fetch, path: str, headers: dict | None = None, method: str = "GET", **params):
    """GET /files/<path>; returns (response, body) with the body gathered chunk by chunk."""
    parts: list[bytes] = []
    r = await jp_fetch(
        "files",
        path,
        method=method,
        headers=headers or {},
        params=params,
        raise_error=False,
        streaming_callback=parts.append if method == "GET" else None,
        request_timeout=60,
    )
    return r, b"".join(parts) if parts else (r.body or b"")


@on_server_loop
async def test_download_streams_with_bounded_memory_and_two_requests(jp_fetch, moto_world, big_object):
    key, data = big_object
    await fetch(jp_fetch, f"{OWN}/missing-warmup")  # bucket discovery, outside the budget
    moto_world.site.counter.reset()
    digest = hashlib.sha256()
    size = 0

    def take(chunk: bytes) -> None:
        nonlocal size
        digest.update(chunk)
        size += len(chunk)

    tracemalloc.start()
    try:
        r = await jp_fetch("files", OWN, key, streaming_callback=take, request_timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.code == 200
    assert size == len(data) and digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert int(r.headers["Content-Length"]) == len(data)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Etag"].strip('"') == hashlib.md5(data).hexdigest()
    assert r.headers["Accept-Ranges"] == "bytes"
    assert "Last-Modified" in r.headers
    assert "Content-Disposition" not in r.headers
    stats = moto_world.site.counter.stats()
    assert stats["ops"] == {"HeadObject": 1, "GetObject": 1}
    assert len(data) <= stats["bytes_out"] <= len(data) * 1.01
    # a few chunks in flight (S3 read, tornado write buffer, client chunk), never the 24 MiB file
    assert peak < 6 * MiB, f"peak {peak / MiB:.1f} MiB"


@on_server_loop
async def test_download_flag_sets_an_attachment_with_the_file_name(jp_fetch, big_object):
    key, data = big_object
    r, body = await fetch(jp_fetch, f"{OWN}/{key}", download=1)
    assert r.code == 200 and body == data
    disposition = r.headers["Content-Disposition"]
    assert disposition.startswith("attachment") and "big%20data.bin" in disposition


@on_server_loop
async def test_content_types_follow_the_name(jp_fetch, moto_world):
    d = moto_world.unique("types")
    client = moto_world.client()
    files = {
        "a.csv": ("text/csv", b"a,b\n"),
        "b.txt": ("text/plain; charset=UTF-8", b"hello"),
        "c.ipynb": ("application/x-ipynb+json", b"{}"),
        "d.png": ("image/png", b"\x89PNG"),
        "e.tar.gz": ("application/gzip", b"\x1f\x8b"),
    }
    for name, (_, body) in files.items():
        client.put_object(Bucket=OWN_BUCKET, Key=f"{d}/{name}", Body=body)
    for name, (ctype, body) in files.items():
        r, got = await fetch(jp_fetch, f"{OWN}/{d}/{name}")
        assert r.code == 200 and got == body
        assert r.headers["Content-Type"] == ctype, name
    r, _ = await fetch(jp_fetch, f"{OWN}/{d}/c.ipynb")
    assert r.headers["Content-Disposition"].startswith("attachment")  # as jupyter-server does


@on_server_loop
async def test_ranges(jp_fetch, moto_world, big_object):
    key, data = big_object
    path = f"{OWN}/{key}"
    n = len(data)
    cases = {
        "bytes=100-199": (100, 199),
        "bytes=0-0": (0, 0),
        f"bytes={n - 10}-": (n - 10, n - 1),
        "bytes=-4096": (n - 4096, n - 1),
        f"bytes={n - 5}-{n + 1000}": (n - 5, n - 1),  # clamped to the end
        f"bytes={5 * MiB}-{13 * MiB}": (5 * MiB, 13 * MiB),  # spans several read chunks
    }
    await fetch(jp_fetch, f"{OWN}/missing-warmup")  # bucket discovery, outside the budget
    for header, (first, last) in cases.items():
        moto_world.site.counter.reset()
        r, body = await fetch(jp_fetch, path, headers={"Range": header})
        assert r.code == 206, header
        assert body == data[first : last + 1], header
        assert r.headers["Content-Range"] == f"bytes {first}-{last}/{n}", header
        assert int(r.headers["Content-Length"]) == last - first + 1
        assert ops(moto_world) == {"HeadObject": 1, "GetObject": 1}
        # only the range crossed the wire from S3
        assert moto_world.site.counter.stats()["bytes_out"] < last - first + 1 + 4096

    for header in (f"bytes={n}-", f"bytes={n + 10}-{n + 20}", "bytes=-0"):
        r, body = await fetch(jp_fetch, path, headers={"Range": header})
        assert r.code == 416, header
        assert r.headers["Content-Range"] == f"bytes */{n}"

    # several ranges, or another unit: the whole file (allowed by RFC 9110)
    r, body = await fetch(jp_fetch, path, headers={"Range": "bytes=0-1,5-6"})
    assert r.code == 200 and body == data

    # If-Range with another ETag: the whole file; with the right one: the range
    etag = r.headers["Etag"]
    r, body = await fetch(jp_fetch, path, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert r.code == 200 and len(body) == n
    r, body = await fetch(jp_fetch, path, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert r.code == 206 and body == data[:10]


@on_server_loop
async def test_conditional_get_and_head(jp_fetch, moto_world, big_object):
    key, data = big_object
    path = f"{OWN}/{key}"
    r, _ = await fetch(jp_fetch, path, method="HEAD")
    assert r.code == 200 and int(r.headers["Content-Length"]) == len(data) and not r.body
    etag = r.headers["Etag"]
    moto_world.site.counter.reset()
    r, body = await fetch(jp_fetch, path, headers={"If-None-Match": etag})
    assert r.code == 304 and not body
    assert ops(moto_world) == {"HeadObject": 1}  # nothing downloaded


@on_server_loop
async def test_empty_file(jp_fetch, moto_world):
    key = f"{moto_world.unique('empty')}.txt"
    moto_world.client().put_object(Bucket=OWN_BUCKET, Key=key, Body=b"")
    r, body = await fetch(jp_fetch, f"{OWN}/{key}")
    assert r.code == 200 and body == b"" and r.headers["Content-Length"] == "0"


@on_server_loop
async def test_missing_hidden_folders_and_other_users_buckets(jp_fetch, moto_world):
    d = moto_world.unique("miss")
    moto_world.client().put_object(Bucket=OWN_BUCKET, Key=f"{d}/.secret.txt", Body=b"hidden")
    moto_world.client().put_object(Bucket=OWN_BUCKET, Key=f"{d}/sub/x.txt", Body=b"x")
    for path, status in (
        (f"{OWN}/{d}/nope.txt", 404),
        (f"{OWN}/{d}/.secret.txt", 404),  # hidden files are refused, as jupyter-server does
        (f"{OWN}/{d}/sub", 404),  # a folder is not a file
        (OWN, 404),
        ("datalake_bob-private/secret-plans.txt", 404),  # not alice's: not even listed
        (f"{OWN}/{d}/../../etc/passwd", 404),
    ):
        r, body = await fetch(jp_fetch, path)
        assert r.code in (status, 400), (path, r.code)
        assert b"hidden" not in body and b"bob only" not in body


@on_server_loop
async def test_home_and_scratch_files_keep_jupyter_servers_behaviour(jp_fetch, jp_root_dir, tmp_path):
    (jp_root_dir / "notes.txt").write_bytes(b"0123456789")
    (tmp_path / "scratch" / "s.bin").write_bytes(b"scratch bytes")
    r, body = await fetch(jp_fetch, "notes.txt")
    assert r.code == 200 and body == b"0123456789"
    assert r.headers["Content-Type"] == "text/plain; charset=UTF-8"
    r, body = await fetch(jp_fetch, "notes.txt", headers={"Range": "bytes=2-4"})
    assert r.code == 206 and body == b"234"
    r, body = await fetch(jp_fetch, "notes.txt", download=1)
    assert r.headers["Content-Disposition"].startswith("attachment")
    r, body = await fetch(jp_fetch, "scratch/s.bin")
    assert r.code == 200 and body == b"scratch bytes"
    r, body = await fetch(jp_fetch, "nope.txt")
    assert r.code == 404


@on_server_loop
async def test_a_failing_get_object_is_retried_and_the_download_is_exact(jp_fetch, moto_world, big_object):
    key, data = big_object
    # (a connection cut in the middle of the body, which the handler resumes with a range GET
    # pinned to the ETag, cannot be injected with moto: not tested here)
    moto_world.site.counter.reset()
    moto_world.site.counter.inject_fault("GetObject", 500, key_contains=key, times=1)
    r, body = await fetch(jp_fetch, f"{OWN}/{key}")
    assert r.code == 200 and body == data


@on_server_loop
async def test_no_secret_in_any_response_or_log(jp_fetch, api, moto_world, big_object, caplog):
    caplog.set_level(logging.DEBUG)
    user = moto_world.site.user(USER)
    key, _ = big_object
    moto_world.site.counter.inject_fault("GetObject", 403, key_contains="forbidden", times=5)
    moto_world.client().put_object(Bucket=OWN_BUCKET, Key="forbidden.txt", Body=b"x")
    responses = [
        await fetch(jp_fetch, f"{OWN}/{key}", headers={"Range": "bytes=0-99"}),
        await fetch(jp_fetch, f"{OWN}/{key}", headers={"Range": "bytes=999999999-"}),
        await fetch(jp_fetch, f"{OWN}/forbidden.txt"),
        await fetch(jp_fetch, f"{OWN}/nothing-here.bin"),
        await fetch(jp_fetch, "datalake_bob-private/secret-plans.txt"),
    ]
    texts = []
    for r, body in responses:
        texts.append(json.dumps(dict(r.headers.get_all())))
        texts.append(body.decode("latin-1"))
    for status, m in (
        await api("PUT", f"{OWN}/x.bin", {"type": "file", "format": "base64", "chunk": 3, "content": ""}),
        await api("PUT", "datalake_bob-shared/x.bin", {"type": "file", "format": "text", "content": "x"}),
    ):
        assert status >= 400
        texts.append(json.dumps(m))
    blob = "\n".join(texts)
    assert user.secret_key not in blob and user.access_key not in blob
    # logs: the secret nowhere, even at DEBUG; the key id not in ours (botocore's own DEBUG lines
    # print the Authorization header, which names the key id)
    assert user.secret_key not in caplog.text
    ours = [
        r.getMessage()
        for r in caplog.records
        if r.name.split(".")[0] in ("ServerApp", "valeria_datalake", "s3fs")
    ]
    assert ours and not any(user.access_key in line for line in ours)
    moto_world.site.counter.reset()


async def test_loop_stall_monitor_sees_a_blocked_loop():
    async with LoopStallMonitor(interval=0.001) as monitor:
        await asyncio.sleep(0.02)
        time.sleep(0.2)  # a blocking call on the loop, on purpose (sleeping: no CPU used)
        await asyncio.sleep(0.02)
        report = monitor.report()
        # lower bounds only: a stall cannot be shorter than the block that caused it
        assert report.max_stall >= 0.15 and report.over_50ms >= 1 and report.samples >= 2
        assert report.max_busy < 0.15  # the loop slept: late, but not busy

        finished = monitor.reset()
        assert finished is report and monitor.report().max_stall == 0
        await asyncio.sleep(0.01)
        start = time.thread_time()
        while time.thread_time() - start < 0.1:  # 100 ms of CPU work on the loop
            pass
        await asyncio.sleep(0.01)
        assert monitor.report().max_busy >= 0.09


class CuttingProxy:
    """A TCP proxy in front of S3 that breaks one GetObject answer of ``key`` after ``after`` bytes.

    A real connection reset in the middle of a body, which moto cannot be told to do: the proxy
    forwards bytes untouched and only closes both sockets at that point.
    """

    def __init__(self, upstream_port: int, key: str, after: int) -> None:
        import socket
        import threading
        from urllib.parse import quote

        self.upstream_port = upstream_port
        self.marker = f"GET /{OWN_BUCKET}/{quote(key)}".encode()
        self.after = after
        self.cuts = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            state = {"cut": False}
            self._threading.Thread(target=self._up, args=(client, upstream, state), daemon=True).start()
            self._threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()

    def _up(self, src, dst, state) -> None:
        try:
            while data := src.recv(65536):
                if self.cuts == 0 and self.marker in data and b"Range:" not in data and b"range:" not in data:
                    state["cut"] = True
                dst.sendall(data)
        except OSError:
            pass

    def _down(self, src, dst, state) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if state["cut"]:
                    if sent + len(data) >= self.after:
                        dst.sendall(data[: max(0, self.after - sent)])
                        self.cuts += 1
                        break
                    sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        import socket

        for s in (src, dst):  # shutdown first: close() alone does not wake the other thread's recv()
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def cutting_proxy(moto_world, big_object, monkeypatch, jp_server_config):
    """S3 reached through :class:`CuttingProxy` (set up before the server reads its environment)."""
    key, _ = big_object
    proxy = CuttingProxy(moto_world.site.counter.port, key, after=5 * MiB + 123)
    endpoint = f"http://127.0.0.1:{proxy.port}"
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL"):
        monkeypatch.setenv(name, endpoint)
    yield proxy
    proxy.close()


@on_server_loop
async def test_a_stream_cut_by_s3_is_resumed_from_where_it_broke(
    cutting_proxy, jp_fetch, moto_world, big_object
):
    key, data = big_object
    await fetch(jp_fetch, f"{OWN}/missing-warmup")
    moto_world.site.counter.reset()
    r, body = await fetch(jp_fetch, f"{OWN}/{key}")
    assert cutting_proxy.cuts == 1  # the first GetObject really broke mid-body
    assert r.code == 200 and len(body) == len(data)
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    requests = [(op, path) for op, path in moto_world.site.counter.stats()["requests"] if op == "GetObject"]
    assert len(requests) == 2  # the whole object, then the rest from the break (pinned to the ETag)
