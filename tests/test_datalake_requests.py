"""What the S3 server sees: request budgets, faults injected mid-way, S3 down, secrets never leak.

Runs against moto, whose server counts every request by S3 operation (``moto_site.counter``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import re
import threading
import tracemalloc

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from valeria_platform.jupyterlab import upload_models

from tests.fixtures.s3 import (
    BIG_COUNT,
    NOTEBOOK,
    OWN,
    OWN_BUCKET,
    SHARED_RO,
    World,
    datalake_server_config,
    free_port,
    on_server_loop,
)


@pytest.fixture
def jp_server_config(request, moto_world: World, tmp_path, monkeypatch):
    overrides = getattr(request, "param", {})
    return datalake_server_config(moto_world.site, tmp_path, monkeypatch, **overrides)


def ops(world: World) -> dict[str, int]:
    return world.site.counter.stats()["ops"]


def keys(world: World, prefix: str, bucket: str = OWN_BUCKET) -> set[str]:
    client = world.client()
    out = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update(o["Key"] for o in page.get("Contents", []))
    return out


# -- request budgets -----------------------------------------------------------------------------


@on_server_loop
async def test_startup_and_discovery_never_write(api, moto_world):
    moto_world.site.counter.reset()
    code, _ = await api("GET", "")
    assert code == 200
    seen = ops(moto_world)
    n_buckets = len(moto_world.client("valeria-admin").list_buckets()["Buckets"])
    # one ListBuckets, one cheap read probe per bucket, one write-permission probe per shared bucket,
    # and for the read-only share (abort refused) the second, PutObject-side probe (empty UploadPart)
    assert seen == {"ListBuckets": 1, "ListObjectsV2": n_buckets, "AbortMultipartUpload": 2, "UploadPart": 1}
    assert moto_world.site.counter.stats()["bytes_in"] == 0  # the probes carried no data


@on_server_loop
async def test_listing_costs_one_list_call_per_1000_objects_and_no_head(api, moto_world, big_bucket):
    await api("GET", "")
    moto_world.site.counter.reset()
    code, m = await api("GET", f"datalake_{big_bucket}/many")
    assert code == 200 and len(m["content"]) == BIG_COUNT
    assert ops(moto_world) == {"ListObjectsV2": math.ceil(BIG_COUNT / 1000)}

    # JupyterLab re-lists the open folder every 10 s: within the cache TTL that costs nothing
    moto_world.site.counter.reset()
    code, m = await api("GET", f"datalake_{big_bucket}/many")
    assert code == 200 and len(m["content"]) == BIG_COUNT
    assert ops(moto_world) == {}


@on_server_loop
async def test_root_listing_with_warm_bucket_cache_costs_nothing(api, moto_world):
    await api("GET", "")
    moto_world.site.counter.reset()
    for _ in range(3):
        code, m = await api("GET", "", content=1)
        assert code == 200 and any(e["name"] == OWN for e in m["content"])
    assert ops(moto_world) == {}


@on_server_loop
async def test_opening_a_notebook_costs_at_most_two_requests(api, jp_fetch, moto_world):
    await api("GET", "")
    moto_world.site.counter.reset()
    # what JupyterLab does when a notebook is opened: the model with content, then its checkpoints
    code, m = await api("GET", f"{OWN}/analysis.ipynb", type="notebook", content=1, hash=1)
    assert code == 200 and m["content"]["cells"] and m["hash"]
    r = await jp_fetch("api", "contents", OWN, "analysis.ipynb", "checkpoints", method="GET")
    assert r.code == 200
    seen = ops(moto_world)
    assert sum(seen.values()) <= 2, seen
    assert seen.get("GetObject") == 1


@on_server_loop
async def test_our_writes_drop_the_listing_cache(api, moto_world):
    d = moto_world.unique("cache")
    await api("PUT", f"{OWN}/{d}/a.txt", {"type": "file", "format": "text", "content": "a"})
    _, m = await api("GET", f"{OWN}/{d}")
    assert [e["name"] for e in m["content"]] == ["a.txt"]
    await api("PUT", f"{OWN}/{d}/b.txt", {"type": "file", "format": "text", "content": "b"})
    _, m = await api("GET", f"{OWN}/{d}")
    assert sorted(e["name"] for e in m["content"]) == ["a.txt", "b.txt"]


@on_server_loop
async def test_folder_rename_is_server_side_copies(api, moto_world):
    d = moto_world.unique("srv")
    client = moto_world.client()
    for i in range(12):
        client.put_object(Bucket=OWN_BUCKET, Key=f"{d}/src/{i:02d}.bin", Body=os.urandom(1000))
    moto_world.site.counter.reset()
    code, _ = await api("PATCH", f"{OWN}/{d}/src", {"path": f"{OWN}/{d}/dst"})
    assert code == 200
    seen = ops(moto_world)
    assert seen["CopyObject"] == 12
    assert "GetObject" not in seen  # no bytes through the server
    assert seen["PutObject"] == 1  # the moved folder's empty marker: it stays a folder when emptied
    assert seen["DeleteObjects"] == 1  # one bulk delete, after the copies were verified
    assert keys(moto_world, f"{d}/") == {f"{d}/dst/{i:02d}.bin" for i in range(12)} | {
        f"{d}/dst/.valeria_keep"
    }


@on_server_loop
async def test_the_nth_copy_costs_what_the_first_costs(api, moto_world):
    """Found by the differential test (a request timed out): choosing "x-Copy<n>.txt" asked S3
    whether each of x.txt, x-Copy1.txt, ... existed (a HEAD and a listing per name), so the n-th
    copy cost 2n more requests. Now one listing of the folder, whatever n."""
    d = moto_world.unique("copies")
    client = moto_world.client()
    for name in ["one/x.txt", "nine/x.txt", *(f"nine/x-Copy{i}.txt" for i in range(1, 9))]:
        client.put_object(Bucket=OWN_BUCKET, Key=f"{d}/{name}", Body=b"x")
    await api("GET", OWN)  # bucket discovery
    cost = {}
    for folder, expected in [("one", "x-Copy1.txt"), ("nine", "x-Copy9.txt")]:
        moto_world.site.counter.reset()
        code, m = await api("POST", f"{OWN}/{d}/{folder}", {"copy_from": f"{OWN}/{d}/{folder}/x.txt"})
        assert code == 201 and m["name"] == expected, m
        cost[folder] = ops(moto_world)
    assert cost["nine"] == cost["one"]
    assert cost["one"]["ListObjectsV2"] <= 4 and cost["one"]["HeadObject"] <= 5, cost
    for expected in ["untitled.txt", "untitled1.txt"]:  # new files are named the same way
        code, m = await api("POST", f"{OWN}/{d}/nine", {"type": "file", "ext": ".txt"})
        assert code == 201 and m["name"] == expected, m


@pytest.mark.parametrize("jp_server_config", [{"transfer_inline_limit": 1024}], indirect=True)
@on_server_loop
async def test_big_files_are_streamed_between_disk_and_s3(api, moto_world, jp_root_dir):
    d = moto_world.unique("stream")
    payload = os.urandom(300_000)
    (jp_root_dir / d).mkdir()
    (jp_root_dir / d / "big.bin").write_bytes(payload)
    (jp_root_dir / d / "small.txt").write_text("s")
    code, m = await api("PATCH", d, {"path": f"{OWN}/{d}"})
    assert code == 200, m
    assert moto_world.client().get_object(Bucket=OWN_BUCKET, Key=f"{d}/big.bin")["Body"].read() == payload
    code, m = await api("PATCH", f"{OWN}/{d}", {"path": f"{d}-back"})
    assert code == 200, m
    assert (jp_root_dir / f"{d}-back" / "big.bin").read_bytes() == payload
    assert keys(moto_world, f"{d}/") == set() and not (jp_root_dir / d).exists()


@pytest.mark.parametrize("jp_server_config", [{"transfer_inline_limit": 1024}], indirect=True)
@on_server_loop
async def test_big_file_moves_hold_one_part_per_worker_not_the_file(api, moto_world, jp_root_dir):
    """A 64 MiB file from home into a bucket is a multipart upload of 8 MiB parts read in worker
    threads, 4 at once (s3fs's ``_put_file`` read it whole on the event loop: a peak of 64 MiB
    and more); back to home it is one GetObject written in 1 MiB chunks. tracemalloc traces every
    thread of this process, the server's included."""
    mib = 1024 * 1024
    d = moto_world.unique("bigmove")
    payload = os.urandom(64 * mib)
    (jp_root_dir / f"{d}.bin").write_bytes(payload)
    await api("GET", OWN)  # discovery, outside the budget
    moto_world.site.counter.reset()
    tracemalloc.start()
    try:
        code, m = await api("PATCH", f"{d}.bin", {"path": f"{OWN}/{d}.bin"})
        _, up_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        still_held, _ = tracemalloc.get_traced_memory()  # the peak below starts from here
        assert code == 200, m
        assert up_peak < 40 * mib, f"upload peak {up_peak / mib:.1f} MiB"
        seen = ops(moto_world)
        writes = {k: v for k, v in seen.items() if k not in ("HeadObject", "ListObjectsV2")}
        assert writes == {"CreateMultipartUpload": 1, "UploadPart": 8, "CompleteMultipartUpload": 1}
        assert seen["HeadObject"] + seen["ListObjectsV2"] <= 5  # existence checks and the size check
        moto_world.site.counter.reset()
        code, m = await api("PATCH", f"{OWN}/{d}.bin", {"path": f"{d}-back.bin"})
        _, down_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 200, m
    assert ops(moto_world)["GetObject"] == 1
    assert (jp_root_dir / f"{d}-back.bin").read_bytes() == payload
    assert not (jp_root_dir / f"{d}.bin").exists() and keys(moto_world, d) == set()
    down_peak -= still_held
    # measured ~4 MiB; with 8 MiB reads it was 24-32 MiB (aiohttp assembles each read from pieces)
    assert down_peak < 8 * mib, f"download peak {down_peak / mib:.1f} MiB"


# -- faults in the middle of a move: the source survives -----------------------------------------


@on_server_loop
async def test_home_to_bucket_move_with_a_failing_put_keeps_the_source(api, moto_world, jp_root_dir):
    d = moto_world.unique("fault-up")
    src = jp_root_dir / d
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.txt").write_text(f"data {i}")
    moto_world.site.counter.inject_fault("PutObject", 500, key_contains=f"{d}/f3.txt", times=10)
    code, m = await api("PATCH", d, {"path": f"{OWN}/{d}"})
    assert code == 503 and d in m["message"]
    assert sorted(p.name for p in src.iterdir()) == [f"f{i}.txt" for i in range(6)]
    assert all((src / f"f{i}.txt").read_text() == f"data {i}" for i in range(6))
    assert keys(moto_world, f"{d}/") == set()  # the half-made copy was removed
    moto_world.site.counter.reset()


@pytest.mark.parametrize("jp_server_config", [{"transfer_inline_limit": 1024}], indirect=True)
@on_server_loop
async def test_big_file_move_with_a_failing_part_aborts_the_upload_and_keeps_the_source(
    api, moto_world, jp_root_dir
):
    d = moto_world.unique("fault-part")
    payload = os.urandom(20 * 1024 * 1024)  # 3 parts of 8 MiB
    (jp_root_dir / f"{d}.bin").write_bytes(payload)
    await api("GET", OWN)  # discovery (its write probes abort uploads of their own), outside the count
    moto_world.site.counter.reset()
    moto_world.site.counter.inject_fault("UploadPart", 500, key_contains=f"{d}.bin", times=10)
    code, m = await api("PATCH", f"{d}.bin", {"path": f"{OWN}/{d}.bin"})
    assert code == 503 and d in m["message"]
    assert (jp_root_dir / f"{d}.bin").read_bytes() == payload
    assert keys(moto_world, d) == set()
    seen = ops(moto_world)
    assert seen["AbortMultipartUpload"] == 1 and "CompleteMultipartUpload" not in seen
    moto_world.site.counter.reset()


@on_server_loop
async def test_bucket_to_home_move_with_a_failing_get_keeps_the_source(api, moto_world, jp_root_dir):
    d = moto_world.unique("fault-down")
    client = moto_world.client()
    for i in range(6):
        client.put_object(Bucket=OWN_BUCKET, Key=f"{d}/sub/f{i}.txt", Body=f"data {i}".encode())
    moto_world.site.counter.inject_fault("GetObject", 500, key_contains=f"{d}/sub/f4.txt", times=10)
    code, m = await api("PATCH", f"{OWN}/{d}", {"path": d})
    assert code == 503
    assert keys(moto_world, f"{d}/") == {f"{d}/sub/f{i}.txt" for i in range(6)}
    assert not (jp_root_dir / d).exists()
    moto_world.site.counter.reset()


@on_server_loop
async def test_bucket_folder_rename_with_a_failing_copy_keeps_the_source(api, moto_world):
    d = moto_world.unique("fault-copy")
    client = moto_world.client()
    for i in range(6):
        client.put_object(Bucket=OWN_BUCKET, Key=f"{d}/a/f{i}.txt", Body=b"x")
    moto_world.site.counter.reset()
    moto_world.site.counter.inject_fault("CopyObject", 500, key_contains=f"{d}/b/f2.txt", times=10)
    code, _ = await api("PATCH", f"{OWN}/{d}/a", {"path": f"{OWN}/{d}/b"})
    assert code == 503
    assert keys(moto_world, f"{d}/") == {f"{d}/a/f{i}.txt" for i in range(6)}
    deleted = [p for op, p in moto_world.site.counter.stats()["requests"] if op.startswith("Delete")]
    assert not any("/a/" in p for p in deleted)
    moto_world.site.counter.reset()


# -- S3 down, wrong credentials, outages ---------------------------------------------------------


@pytest.fixture
def dead_s3(jp_server_config, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL"):
        monkeypatch.setenv(name, url)
    return url


@on_server_loop
async def test_s3_down_home_keeps_working(dead_s3, api, jp_root_dir, jp_serverapp, caplog):
    caplog.set_level(logging.INFO)
    (jp_root_dir / "still-here.txt").write_text("home works")
    code, root = await api("GET", "")
    assert code == 200
    names = {e["name"] for e in root["content"]}
    assert "still-here.txt" in names and "scratch" in names
    assert not any(n.startswith("datalake_") for n in names)
    code, m = await api("GET", "still-here.txt", type="file")
    assert code == 200 and m["content"] == "home works"
    code, m = await api("GET", f"{OWN}/notes.txt")
    assert code == 503 and f"{OWN}/notes.txt" in m["message"]
    jp_serverapp.contents_manager.discovery.invalidate()
    code, _ = await api("GET", "")
    assert code == 200
    said = [r for r in caplog.records if "bucket discovery" in r.getMessage()]
    assert len(said) == 1 and "unreachable" in said[0].getMessage()  # said once, and why


@on_server_loop
async def test_wrong_credentials_home_keeps_working(monkeypatch, api, jp_root_dir, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-right-secret-0123456789")
    code, root = await api("GET", "")
    assert code == 200 and not any(e["name"].startswith("datalake_") for e in root["content"])
    code, m = await api("GET", f"{OWN}/notes.txt")
    assert code == 403
    assert "not-the-right-secret" not in caplog.text
    assert any("credentials rejected" in r.getMessage() for r in caplog.records)


@on_server_loop
async def test_s3_outage_during_a_session_is_503_naming_the_path(api, moto_world):
    await api("GET", "")
    moto_world.site.counter.inject_fault("ListObjectsV2", 503, key_contains="", times=10)
    code, m = await api("GET", f"{OWN}/spark")
    assert code == 503 and m["message"].endswith(f"{OWN}/spark")
    code, _ = await api("GET", "")  # home and the cached bucket list still answer
    assert code == 200
    moto_world.site.counter.reset()


@on_server_loop
async def test_a_newly_granted_bucket_appears_without_restart(api, moto_world, jp_serverapp):
    jp_serverapp.contents_manager.discovery.ttl = 0.2
    await api("GET", "")
    bucket = f"alice-{moto_world.unique('new')}"
    moto_world.client().create_bucket(Bucket=bucket)
    await asyncio.sleep(0.3)
    _, root = await api("GET", "")
    assert f"datalake_{bucket}" in {e["name"] for e in root["content"]}


# -- secrets -------------------------------------------------------------------------------------


@on_server_loop
async def test_secret_key_never_in_logs_or_responses(api, jp_fetch, moto_world, caplog, jp_root_dir):
    caplog.set_level(logging.DEBUG)
    user = moto_world.site.user("alice")
    secret = user.secret_key
    bodies: list[str] = []

    async def call(*args, **kw):
        code, body = await api(*args, **kw)
        bodies.append(json.dumps(body, default=str))
        return code

    d = moto_world.unique("secret")
    (jp_root_dir / "x.txt").write_text("x")
    await call("GET", "")
    await call("GET", OWN)
    await call("GET", f"{OWN}/notes.txt", type="file", hash=1)
    await call("PUT", f"{OWN}/{d}/n.ipynb", {"type": "notebook", "content": NOTEBOOK})
    await call("PUT", f"datalake_{SHARED_RO}/{d}.txt", {"type": "file", "format": "text", "content": "no"})
    await call("GET", "datalake_bob-private/secret-plans.txt")
    await call("PATCH", "x.txt", {"path": f"{OWN}/{d}/x.txt"})
    moto_world.site.counter.inject_fault("GetObject", 500, times=10)
    await call("GET", f"{OWN}/notes.txt", type="file")
    moto_world.site.counter.reset()
    r = await jp_fetch("files", OWN, "notes.txt", method="GET")
    bodies.append(r.body.decode())
    await call("DELETE", f"{OWN}/{d}")
    for body in bodies:
        assert secret not in body
        assert user.access_key not in body
    assert secret not in caplog.text
    assert len(caplog.records) > 20  # the log was really captured, at debug level


# -- the event loop stays free: big listings and notebooks off the loop, no request per chunk ------


@on_server_loop
async def test_big_listing_pages_are_fetched_and_parsed_off_the_event_loop(
    api, jp_serverapp, moto_world, big_bucket
):
    await api("GET", "")  # discovery builds both S3 clients
    threaded = jp_serverapp.contents_manager.s3.threaded()
    await threaded.warm_up()
    threads: list[int] = []
    # a botocore event of the listing threads' own client: which thread parsed each page
    threaded.client.meta.events.register(
        "after-call.s3.ListObjectsV2", lambda **_: threads.append(threading.get_ident())
    )
    moto_world.site.counter.reset()
    code, m = await api("GET", f"datalake_{big_bucket}/many")
    assert code == 200 and len(m["content"]) == BIG_COUNT
    assert ops(moto_world) == {"ListObjectsV2": math.ceil(BIG_COUNT / 1000)}
    assert len(threads) == math.ceil(BIG_COUNT / 1000)
    assert threading.get_ident() not in threads  # not one page on the server's loop thread
    # entries' times are already the strings jupyter-server's JSON writes (ISO 8601, UTC, "Z")
    stamp = m["content"][0]["last_modified"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", stamp), stamp

    # the recursive listing of a folder move, too
    d = moto_world.unique("tree")
    client = moto_world.client()
    for i in range(3):
        client.put_object(Bucket=OWN_BUCKET, Key=f"{d}/a/{i}.txt", Body=b"x")
    threads.clear()
    code, _ = await api("PATCH", f"{OWN}/{d}/a", {"path": f"{OWN}/{d}/b"})
    assert code == 200 and threads and threading.get_ident() not in threads
    assert keys(moto_world, f"{d}/") == {f"{d}/b/{i}.txt" for i in range(3)} | {f"{d}/b/.valeria_keep"}


@on_server_loop
async def test_folder_rename_copies_are_made_off_the_event_loop(api, jp_serverapp, moto_world):
    """aiobotocore signs every CopyObject and parses every answer on the loop: a 1,000-object
    rename stalled the server 150-300 ms at a time (bench/folder_rename.py). The copies go through
    the worker threads' client, with the same request count."""
    await api("GET", "")
    threaded = jp_serverapp.contents_manager.s3.threaded()
    await threaded.warm_up()
    threads: list[int] = []
    acls: list[str | None] = []
    threaded.client.meta.events.register(
        "after-call.s3.CopyObject", lambda **_: threads.append(threading.get_ident())
    )
    threaded.client.meta.events.register(
        "before-parameter-build.s3.CopyObject", lambda params, **_: acls.append(params.get("ACL"))
    )
    d = moto_world.unique("copythreads")
    client = moto_world.client()
    for i in range(20):
        client.put_object(Bucket=OWN_BUCKET, Key=f"{d}/a/{i:02d}.txt", Body=b"x")
    moto_world.site.counter.reset()
    code, _ = await api("PATCH", f"{OWN}/{d}/a", {"path": f"{OWN}/{d}/b"})
    assert code == 200
    assert ops(moto_world)["CopyObject"] == 20 and len(threads) == 20
    assert threading.get_ident() not in threads
    assert keys(moto_world, f"{d}/") == {f"{d}/b/{i:02d}.txt" for i in range(20)} | {f"{d}/b/.valeria_keep"}
    # the object ACL s3fs adds to its own writes comes along (a shared bucket's owner reads the copies)
    assert acls == ["bucket-owner-full-control"] * 20


@on_server_loop
async def test_chunked_upload_costs_one_upload_part_per_part_and_at_most_one_head(api, moto_world):
    """JupyterLab's PUT of each chunk makes jupyter-server ask ``file_exists`` first: that was a
    HeadObject per 1 MiB chunk (257 for 256 MiB), and one more for the last chunk's model."""
    size, part = 20 * 1024 * 1024 + 5, 8 * 1024 * 1024  # part: upload_part_size's default
    data = os.urandom(size)
    folder = f"{OWN}/{moto_world.unique('chunks')}"
    path = f"{folder}/data.bin"
    await api("PUT", folder, {"type": "directory"})
    await api("GET", folder)  # JupyterLab shows the folder it uploads into: its listing is cached
    moto_world.site.counter.reset()
    sent = 0
    for body in upload_models(path, data):
        code, m = await api("PUT", path, body)
        assert code in (200, 201), m
        sent += len(base64.b64decode(body["content"]))
        assert m["size"] == sent  # bytes received so far, as home answers
    seen = ops(moto_world)
    assert seen["UploadPart"] == math.ceil(size / part)
    assert seen.get("HeadObject", 0) <= 1
    assert seen == {
        "HeadObject": 1,
        "ListObjectsV2": 1,  # chunk 1: no folder of that name (a file there would be hidden by it)
        "CreateMultipartUpload": 1,
        "UploadPart": 3,
        "CompleteMultipartUpload": 1,
    }
    key = path.split("/", 1)[1]
    assert moto_world.client().get_object(Bucket=OWN_BUCKET, Key=key)["Body"].read() == data
    code, m = await api("GET", path, content=0)
    assert code == 200 and m["size"] == size


def _notebook_with_output(trusted: bool, text: str = "x" * 2000) -> dict:
    nb = json.loads(json.dumps(NOTEBOOK))
    cell = nb["cells"][0]
    cell["execution_count"] = 1
    cell["outputs"] = [{"output_type": "display_data", "metadata": {},
                        "data": {"text/html": "<b>x</b>", "text/plain": text}}]  # fmt: skip
    cell["metadata"]["trusted"] = trusted
    return nb


@pytest.mark.parametrize(
    "jp_server_config",
    [{"notebook_thread_threshold": 0}, {"notebook_thread_threshold": 1 << 30}],
    ids=["in-a-thread", "on-the-loop"],
    indirect=True,
)
@on_server_loop
async def test_notebook_read_write_sign_and_validate_alike_in_a_thread_or_not(api, moto_world):
    d = f"{OWN}/{moto_world.unique('nbthread')}"
    # signed on save when its outputs are trusted, hence trusted when read back
    code, m = await api(
        "PUT", f"{d}/trusted.ipynb", {"type": "notebook", "content": _notebook_with_output(True)}
    )
    assert code == 201 and "message" not in m
    code, m = await api("GET", f"{d}/trusted.ipynb", type="notebook")
    assert code == 200 and m["content"]["cells"][0]["metadata"]["trusted"] is True
    assert m["content"]["cells"][0]["outputs"][0]["data"]["text/plain"] == "x" * 2000
    # not signed when the outputs are untrusted
    code, _ = await api(
        "PUT",
        f"{d}/untrusted.ipynb",
        {"type": "notebook", "content": _notebook_with_output(False, "y" * 2000)},
    )
    assert code == 201
    code, m = await api("GET", f"{d}/untrusted.ipynb", type="notebook")
    assert code == 200 and m["content"]["cells"][0]["metadata"]["trusted"] is False
    # an invalid notebook is saved, with the validation message, and read back with it
    bad = _notebook_with_output(True)
    del bad["cells"][0]["outputs"][0]["data"]
    code, m = await api("PUT", f"{d}/bad.ipynb", {"type": "notebook", "content": bad})
    assert code == 201 and "validation failed" in m["message"].lower()
    code, m = await api("GET", f"{d}/bad.ipynb", type="notebook")
    assert code == 200 and "validation failed" in m["message"].lower()
    # unreadable bytes are a 400 either way
    moto_world.client().put_object(Bucket=OWN_BUCKET, Key=f"{d.split('/', 1)[1]}/broken.ipynb", Body=b"{nope")
    code, _ = await api("GET", f"{d}/broken.ipynb", type="notebook")
    assert code == 400
