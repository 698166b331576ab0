"""What researchers notice first: writes into a read-only bucket fail at once, bucket folders show real dates.

A real jupyter-server with our extension, over HTTP, against moto with per-user IAM; moto counts
every S3 request, so "refused without writing" is asserted, not assumed.
"""

from __future__ import annotations

import base64
import os
from datetime import datetime, timedelta, timezone

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)

from tests.fixtures.s3 import (
    NOTEBOOK,
    OTHER,
    OWN,
    OWN_BUCKET,
    RO,
    RW,
    SHARED_RO,
    SHARED_RW,
    USER,
    World,
    datalake_server_config,
    on_server_loop,
)

MiB = 1024 * 1024
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: S3 operations that write, create or delete something
WRITES = {
    "PutObject",
    "CopyObject",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "DeleteObject",
    "DeleteObjects",
    "PostObject",
}


@pytest.fixture
def jp_server_config(moto_world: World, tmp_path, monkeypatch):
    return datalake_server_config(moto_world.site, tmp_path, monkeypatch)


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- read-only buckets: refused before any S3 write ------------------------------------------------


@on_server_loop
async def test_upload_into_a_read_only_bucket_fails_on_chunk_1_without_an_s3_write(api, moto_world):
    code, root = await api("GET", "")  # bucket discovery (and its probes), outside the count
    assert code == 200
    assert {m["name"]: m["writable"] for m in root["content"]}[RO] is False
    counter = moto_world.site.counter
    counter.reset()

    path = f"{RO}/{moto_world.unique('ro-upload')}.bin"
    chunk = base64.b64encode(os.urandom(MiB)).decode("ascii")  # what JupyterLab sends
    code, m = await api("PUT", path, {"type": "file", "format": "base64", "chunk": 1, "content": chunk})
    assert code == 403, m
    assert path in m["message"] and "Read-only" in m["message"]

    # every other kind of save is refused the same way
    saves = [
        (f"{RO}/plain.txt", {"type": "file", "format": "text", "content": "no"}),
        (f"{RO}/nb.ipynb", {"type": "notebook", "content": NOTEBOOK}),
        (f"{RO}/new-folder", {"type": "directory"}),
    ]
    for p, body in saves:
        code, m = await api("PUT", p, body)
        assert code == 403 and p in m["message"], (p, code, m)

    seen = counter.stats()["ops"]
    assert not WRITES & set(seen), seen
    assert "AbortMultipartUpload" not in seen  # nothing was started, so nothing to abort
    bob = moto_world.client(OTHER)
    key = path.split("/", 1)[1]
    assert bob.list_multipart_uploads(Bucket=SHARED_RO).get("Uploads", []) == []
    assert bob.list_objects_v2(Bucket=SHARED_RO, Prefix=key).get("KeyCount", 0) == 0

    # a writable shared bucket still takes the same chunk
    rw_path = f"{RW}/{moto_world.unique('rw-upload')}.bin"
    code, m = await api("PUT", rw_path, {"type": "file", "format": "base64", "chunk": -1, "content": chunk})
    assert code == 409, m  # a lone last chunk: refused by the upload logic, not as read-only
    code, m = await api("PUT", rw_path, {"type": "file", "format": "text", "content": "yes"})
    assert code in (200, 201), m


# -- dates of bucket folders -------------------------------------------------------------------------


@on_server_loop
async def test_bucket_folders_show_their_creation_date(api, moto_world):
    created = {
        b["Name"]: b["CreationDate"] for b in moto_world.client(USER).list_buckets()["Buckets"]
    }  # moto, like AWS's ListAllMyBuckets here, lists every bucket with its date
    code, root = await api("GET", "")
    assert code == 200
    entries = {m["name"]: m for m in root["content"]}
    for bucket in (OWN_BUCKET, SHARED_RO, SHARED_RW):
        shown = when(entries[f"datalake_{bucket}"]["last_modified"])
        assert abs(shown - created[bucket]) < timedelta(seconds=1), (bucket, shown, created[bucket])
        assert shown > EPOCH + timedelta(days=365)


@on_server_loop
async def test_buckets_known_only_from_the_shared_list_show_a_stable_recent_date(
    api, jp_serverapp, moto_world
):
    cm = jp_serverapp.contents_manager
    counter = moto_world.site.counter
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    # as on Ceph RGW and AWS, ListBuckets does not give the shared buckets: here it is refused
    # altogether, so every bucket is known only from VALERIA_SHARED_BUCKETS, without a date
    counter.inject_fault("ListBuckets", 403, times=1)
    try:
        code, root = await api("GET", "")
    finally:
        counter.reset()
    after = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert code == 200
    entries = {m["name"]: m for m in root["content"]}
    assert OWN not in entries  # only known from ListBuckets: proves the fault took effect
    shown = {name: entries[name]["last_modified"] for name in (RO, RW)}
    for name, value in shown.items():
        assert before <= when(value) <= after, (name, value)  # never 1970

    # the bucket folder itself and folders inside it show the same date
    code, ro = await api("GET", RO)
    assert code == 200 and ro["last_modified"] == shown[RO]
    sub = {m["name"]: m for m in ro["content"]}["sub"]
    assert sub["type"] == "directory" and sub["last_modified"] == shown[RO]

    # stable: the next poll, and a fresh discovery, show the same value
    code, again = await api("GET", "")
    assert {m["name"]: m["last_modified"] for m in again["content"] if m["name"] in shown} == shown
    cm.discovery.invalidate()
    counter.inject_fault("ListBuckets", 403, times=1)
    try:
        code, fresh = await api("GET", "")
    finally:
        counter.reset()
    assert {m["name"]: m["last_modified"] for m in fresh["content"] if m["name"] in shown} == shown
