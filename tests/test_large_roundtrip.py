"""A chunked upload and a ranged download through the real server, on moto and on Ceph RGW.

Ceph RGW over HTTPS is what production runs: it rejects botocore's aws-chunked checksum trailers
(411), so this is where a multipart upload with the wrong client settings would fail.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)

from tests.fixtures.s3 import OWN, OWN_BUCKET, World, datalake_server_config, on_server_loop
from tests.test_large_uploads import chunk_bodies, put

MiB = 1024 * 1024


@pytest.fixture
def jp_server_config(world: World, tmp_path, monkeypatch):
    return datalake_server_config(world.site, tmp_path, monkeypatch)


@on_server_loop
async def test_chunked_upload_then_ranged_download(jp_fetch, world):
    key = f"{world.unique('roundtrip')}/data set.bin"
    path = f"{OWN}/{key}"
    data = os.urandom(18 * MiB + 5)  # two full parts and a short last one
    bodies = chunk_bodies(path, data)
    for _, body in bodies[:-1]:
        code, model = await put(jp_fetch, path, body)
        assert code in (200, 201), model
    assert len(world.open_uploads(key, exact=True)) == 1
    code, model = await put(jp_fetch, path, bodies[-1][1])
    assert code in (200, 201) and model["size"] == len(data), model
    stored = world.client().get_object(Bucket=OWN_BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
    assert world.open_uploads(key, exact=True) == []

    r = await jp_fetch("files", OWN, key, params={"download": "1"}, request_timeout=60)
    assert r.code == 200 and r.body == data
    assert r.headers["Content-Disposition"].startswith("attachment")
    first, last = 9 * MiB - 3, 9 * MiB + 100
    r = await jp_fetch("files", OWN, key, headers={"Range": f"bytes={first}-{last}"}, raise_error=False)
    assert r.code == 206 and r.body == data[first : last + 1]
    r = await jp_fetch("files", OWN, key, headers={"Range": f"bytes={len(data)}-"}, raise_error=False)
    assert r.code == 416


@on_server_loop
async def test_out_of_order_chunk_leaves_no_upload_behind(jp_fetch, world):
    key = f"{world.unique('roundtrip-abort')}.bin"
    path = f"{OWN}/{key}"
    bodies = chunk_bodies(path, os.urandom(12 * MiB))
    for _, body in bodies[:9]:
        code, _ = await put(jp_fetch, path, body)
        assert code in (200, 201)
    assert len(world.open_uploads(key, exact=True)) == 1
    code, err = await put(jp_fetch, path, bodies[10][1])
    assert code == 400, err
    assert world.open_uploads(key, exact=True) == []
    listed = world.client().list_objects_v2(Bucket=OWN_BUCKET, Prefix=key)
    assert listed.get("KeyCount", 0) == 0
    assert json.dumps(err).find(world.site.user(world.user).secret_key) == -1
