"""Chunked uploads into a bucket are S3 multipart uploads: counted requests, bytes and memory.

A real jupyter-server with our extension is driven over HTTP exactly as JupyterLab uploads a file
(1 MiB base64 chunks numbered 1..n-1, then -1, one at a time); moto, in a subprocess, counts what
S3 receives. Memory is measured with tracemalloc in this process, which holds the server and the
HTTP client but not S3.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import math
import os
import tracemalloc

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from valeria_datalake.s3.client import S3Settings, close_s3_filesystem, make_s3_filesystem
from valeria_datalake.s3.uploads import MultipartUploads, UploadError
from valeria_platform.jupyterlab import upload_models

from tests.fixtures.s3 import (
    OWN,
    OWN_BUCKET,
    SHARED_RO,
    USER,
    World,
    datalake_server_config,
    on_server_loop,
)

MiB = 1024 * 1024
PART = 8 * MiB
CHUNK = MiB  # what JupyterLab sends


@pytest.fixture
def jp_server_config(moto_world: World, tmp_path, monkeypatch):
    config = datalake_server_config(moto_world.site, tmp_path, monkeypatch)
    return config


def chunk_bodies(path: str, data: bytes, chunk_size: int = CHUNK) -> list[tuple[int, bytes]]:
    """The request bodies JupyterLab sends for ``data``: (chunk number, JSON body)."""
    return [(m["chunk"], json.dumps(m).encode()) for m in upload_models(path, data, chunk_size)]


async def put(jp_fetch, path: str, body: bytes):
    r = await jp_fetch(
        "api", "contents", path, method="PUT", body=body, raise_error=False, request_timeout=60
    )
    return r.code, json.loads(r.body or b"null")


async def upload(jp_fetch, path: str, data: bytes, stop_after: int | None = None) -> list[int]:
    codes = []
    for i, (_, body) in enumerate(chunk_bodies(path, data)):
        if stop_after is not None and i >= stop_after:
            break
        code, m = await put(jp_fetch, path, body)
        codes.append(code)
        assert code in (200, 201), m
    return codes


def ops(world: World) -> dict[str, int]:
    return world.site.counter.stats()["ops"]


def object_or_none(world: World, key: str) -> bytes | None:
    client = world.client()
    try:
        return client.get_object(Bucket=OWN_BUCKET, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- the 64 MiB upload: requests, bytes and memory ----------------------------------------------------


@on_server_loop
async def test_64mib_chunked_upload_is_one_multipart_upload_with_bounded_memory(jp_fetch, api, moto_world):
    size = 64 * MiB
    data = os.urandom(size)
    key = f"{moto_world.unique('big')}/data.bin"
    bodies = chunk_bodies(f"{OWN}/{key}", data)  # encoded before measuring: the browser's memory
    assert [n for n, _ in bodies][:2] == [1, 2] and bodies[-1][0] == -1 and len(bodies) == 64
    await api("GET", OWN)  # bucket discovery, outside the budget
    moto_world.site.counter.reset()

    tracemalloc.start()
    try:
        for i, (number, body) in enumerate(bodies):
            code, model = await put(jp_fetch, f"{OWN}/{key}", body)
            assert code in (200, 201), model
            if number != -1 and i < 8:
                # not in S3 until the last chunk; the model says how much arrived, as home does
                assert model["size"] == (i + 1) * CHUNK
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del bodies

    stats = moto_world.site.counter.stats()
    seen = stats["ops"]
    assert seen["CreateMultipartUpload"] == 1
    assert seen["UploadPart"] == math.ceil(size / PART)
    assert seen["CompleteMultipartUpload"] == 1
    assert "PutObject" not in seen and "AbortMultipartUpload" not in seen and "GetObject" not in seen
    # bytes sent to S3 are the file's, once (plus a few hundred bytes of XML)
    assert size <= stats["bytes_in"] <= size * 1.01
    # memory: one part being assembled, plus the chunk in flight in its several forms (request
    # body, decoded JSON, base64 decoded) on both ends of the HTTP connection; never the file
    # (measured here: ~17 MiB, for a 64 MiB file; 22 MiB while the upload reaper held the first
    # chunk's request for the server's life: see the next test)
    assert peak < PART + 10 * CHUNK, f"peak {peak / MiB:.1f} MiB"
    assert model["size"] == size and model["type"] == "file"
    assert md5(object_or_none(moto_world, key)) == md5(data)


@on_server_loop
async def test_no_request_outlives_its_upload(jp_fetch, api, moto_world):
    """jupyter-server keeps each request's handler (hence the request and its 1.3 MiB body) in a
    context variable, and every task or timer created during the request copies that context. The
    idle-upload reaper, started by the first chunk, kept that request for the server's whole life;
    aiohttp's read timers kept every request that called S3 for up to ``s3_read_timeout`` after it
    ended (cancelled timers stay in asyncio's heap until their time). This is what raised the
    64 MiB upload's peak from 17 to 22 MiB whenever another timer (the busy-kernel check) was due."""
    from jupyter_server.services.contents.handlers import ContentsHandler

    key = f"{moto_world.unique('ctx')}/data.bin"
    for _, body in chunk_bodies(f"{OWN}/{key}", os.urandom(3 * CHUNK)):
        code, model = await put(jp_fetch, f"{OWN}/{key}", body)
        assert code in (200, 201), model
    await asyncio.sleep(0)
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, ContentsHandler)]
    assert alive == []


@on_server_loop
async def test_small_chunked_file_is_one_put_object(jp_fetch, api, moto_world):
    data = os.urandom(3 * MiB + 123)
    key = f"{moto_world.unique('small')}/three.bin"
    await api("GET", OWN)
    moto_world.site.counter.reset()
    codes = await upload(jp_fetch, f"{OWN}/{key}", data)
    assert len(codes) == 4
    seen = ops(moto_world)
    assert seen.get("PutObject") == 1
    assert not {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"} & set(seen)
    assert object_or_none(moto_world, key) == data


@on_server_loop
async def test_part_size_is_configurable(jp_fetch, jp_serverapp, api, moto_world):
    jp_serverapp.contents_manager.upload_part_size = 5 * MiB  # S3's minimum; read on first upload
    data = os.urandom(12 * MiB)
    key = f"{moto_world.unique('part5')}/twelve.bin"
    await api("GET", OWN)
    moto_world.site.counter.reset()
    await upload(jp_fetch, f"{OWN}/{key}", data)
    seen = ops(moto_world)
    assert seen["UploadPart"] == 3  # 5 + 5 + 2
    assert object_or_none(moto_world, key) == data


# -- nothing visible before completion; interrupted uploads are aborted -------------------------------


@on_server_loop
async def test_nothing_visible_until_the_last_chunk(jp_fetch, api, moto_world):
    d = moto_world.unique("visible")
    key = f"{d}/data.bin"
    data = os.urandom(20 * MiB)
    bodies = chunk_bodies(f"{OWN}/{key}", data)
    for _, body in bodies[:-1]:
        code, _ = await put(jp_fetch, f"{OWN}/{key}", body)
        assert code in (200, 201)
    # two parts are already in S3, as parts of an open multipart upload, not as an object
    assert len(moto_world.open_uploads(key, exact=True)) == 1
    assert object_or_none(moto_world, key) is None
    code, _ = await api("GET", f"{OWN}/{key}", content=0)
    assert code == 404
    code, listing = await api("GET", f"{OWN}/{d}")
    assert code == 404 or all(e["name"] != "data.bin" for e in listing["content"])

    code, model = await put(jp_fetch, f"{OWN}/{key}", bodies[-1][1])
    assert code in (200, 201) and model["size"] == len(data)
    assert object_or_none(moto_world, key) == data
    assert moto_world.open_uploads(key, exact=True) == []
    code, listing = await api("GET", f"{OWN}/{d}")
    assert [e["name"] for e in listing["content"]] == ["data.bin"]


@on_server_loop
async def test_a_new_upload_to_the_same_path_aborts_the_unfinished_one(jp_fetch, api, moto_world):
    key = f"{moto_world.unique('again')}/data.bin"
    first, second = os.urandom(20 * MiB), os.urandom(11 * MiB)
    await upload(jp_fetch, f"{OWN}/{key}", first, stop_after=12)  # one part uploaded, then the tab died
    assert len(moto_world.open_uploads(key, exact=True)) == 1
    moto_world.site.counter.reset()
    await upload(jp_fetch, f"{OWN}/{key}", second)
    seen = ops(moto_world)
    assert seen["AbortMultipartUpload"] == 1
    assert seen["CreateMultipartUpload"] == 1 and seen["CompleteMultipartUpload"] == 1
    assert object_or_none(moto_world, key) == second
    assert moto_world.open_uploads(key, exact=True) == []


@on_server_loop
async def test_chunks_out_of_order_are_refused_and_abort(jp_fetch, api, moto_world):
    key = f"{moto_world.unique('order')}/data.bin"
    path = f"{OWN}/{key}"
    bodies = chunk_bodies(path, os.urandom(16 * MiB))
    for _, body in bodies[:9]:  # chunks 1..9: one part in S3
        code, _ = await put(jp_fetch, path, body)
        assert code in (200, 201)
    moto_world.site.counter.reset()
    code, err = await put(jp_fetch, path, bodies[10][1])  # chunk 11, chunk 10 was lost
    assert code == 400 and "out of order" in err["message"]
    assert ops(moto_world).get("AbortMultipartUpload") == 1
    assert moto_world.open_uploads(key, exact=True) == []
    # the rest of that upload is refused, not written as a truncated file
    code, err = await put(jp_fetch, path, bodies[-1][1])
    assert code == 409 and "upload the file again" in err["message"]
    assert object_or_none(moto_world, key) is None


@on_server_loop
async def test_last_chunk_without_an_upload_is_refused(jp_fetch, moto_world):
    key = f"{moto_world.unique('orphan')}/data.bin"
    path = f"{OWN}/{key}"
    _, last = chunk_bodies(path, os.urandom(2 * MiB))[-1]
    code, err = await put(jp_fetch, path, last)
    assert code == 409
    assert object_or_none(moto_world, key) is None  # not the last MiB alone, as jupyter-fs writes


@on_server_loop
async def test_invalid_chunk_numbers_are_a_400(jp_fetch, moto_world):
    path = f"{OWN}/{moto_world.unique('badchunk')}.bin"
    for bad in (0, -2, "1", 1.5):
        body = json.dumps({"type": "file", "format": "base64", "chunk": bad, "content": "AAAA"})
        code, _ = await put(jp_fetch, path, body.encode())
        assert code == 400, bad


@on_server_loop
async def test_an_idle_upload_is_aborted(jp_fetch, jp_serverapp, api, moto_world):
    jp_serverapp.contents_manager.upload_idle_timeout = 0.5  # read when the first upload starts
    key = f"{moto_world.unique('idle')}/data.bin"
    await upload(jp_fetch, f"{OWN}/{key}", os.urandom(12 * MiB), stop_after=10)
    assert len(moto_world.open_uploads(key, exact=True)) == 1
    # the browser went away: the periodic task aborts the upload (polled, no timing asserted)
    for _ in range(200):
        if not moto_world.open_uploads(key, exact=True):
            break
        await asyncio.sleep(0.1)
    assert moto_world.open_uploads(key, exact=True) == []
    assert object_or_none(moto_world, key) is None
    code, err = await api(
        "PUT", f"{OWN}/{key}", {"type": "file", "format": "base64", "chunk": 11, "content": ""}
    )
    assert code == 409


@on_server_loop
async def test_an_s3_error_mid_upload_aborts_and_leaves_nothing(jp_fetch, api, moto_world):
    key = f"{moto_world.unique('fault')}/data.bin"
    path = f"{OWN}/{key}"
    bodies = chunk_bodies(path, os.urandom(20 * MiB))
    await api("GET", OWN)
    moto_world.site.counter.reset()
    codes = []
    for i, (_, body) in enumerate(bodies):
        if i == 8:  # the second part fails, retries included
            moto_world.site.counter.inject_fault("UploadPart", 500, key_contains=key, times=20)
        code, err = await put(jp_fetch, path, body)
        codes.append(code)
        if code >= 400:
            break
    assert codes[-1] == 503 and len(codes) == 16, codes
    assert path in err["message"]
    assert ops(moto_world)["AbortMultipartUpload"] == 1
    moto_world.site.counter.reset()  # drop the remaining fault
    assert moto_world.open_uploads(key, exact=True) == []
    assert object_or_none(moto_world, key) is None


@on_server_loop
async def test_upload_into_a_read_only_bucket_is_refused_and_leaves_nothing(jp_fetch, moto_world):
    key = f"{moto_world.unique('ro')}.bin"
    path = f"datalake_{SHARED_RO}/{key}"
    codes = []
    for _, body in chunk_bodies(path, os.urandom(10 * MiB)):
        code, _ = await put(jp_fetch, path, body)
        codes.append(code)
        if code >= 400:
            break
    assert codes[-1] == 403
    client = moto_world.client("bob")
    assert client.list_objects_v2(Bucket=SHARED_RO, Prefix=key).get("KeyCount", 0) == 0
    assert client.list_multipart_uploads(Bucket=SHARED_RO, Prefix=key).get("Uploads", []) == []


# -- the class alone -------------------------------------------------------------------------------


async def test_multipart_uploads_alone_hold_about_one_part(moto_world):
    fs = make_s3_filesystem(S3Settings.from_environ(moto_world.site.env(USER)))
    try:
        uploads = MultipartUploads(fs, part_size=PART, idle_timeout=60)
        key = f"{moto_world.unique('alone')}/x.bin"
        chunk = os.urandom(CHUNK)
        await fs._call_s3("head_bucket", Bucket=OWN_BUCKET)  # botocore loads its models on first use
        moto_world.site.counter.reset()
        tracemalloc.start()
        try:
            for n in range(1, 32):
                assert await uploads.add_chunk(OWN_BUCKET, key, n, chunk) is False
            assert await uploads.add_chunk(OWN_BUCKET, key, -1, chunk) is True
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # the part being assembled (sent without a copy) + a chunk + aiohttp's own buffers
        assert peak < PART + 3 * CHUNK, f"peak {peak / MiB:.1f} MiB"
        seen = ops(moto_world)
        assert seen == {"CreateMultipartUpload": 1, "UploadPart": 4, "CompleteMultipartUpload": 1}
        assert uploads.pending() == []
        assert md5(object_or_none(moto_world, key)) == md5(chunk * 32)

        with pytest.raises(ValueError):
            MultipartUploads(fs, part_size=MiB, idle_timeout=60)
        with pytest.raises(UploadError) as e:
            await uploads.add_chunk(OWN_BUCKET, key, 2, chunk)
        assert e.value.status_code == 409

        # close() (server shutdown) aborts what is unfinished
        await uploads.add_chunk(OWN_BUCKET, key + ".2", 1, chunk * 9)
        assert uploads.in_progress(OWN_BUCKET, key + ".2")
        await uploads.close()
        assert uploads.pending() == [] and moto_world.open_uploads(key + ".2", exact=True) == []
    finally:
        await close_s3_filesystem(fs)
