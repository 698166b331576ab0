"""Data safety when others act during a transfer or an upload (moto, which counts and injects).

A shared bucket has collaborators: what they change while a move runs must not be deleted, what
they write next to a failed copy must not be cleaned up, a folder they just created must stop a
copy into it. The concurrent writer is a real second client in a thread, polling S3 until the
transfer has reached the point that matters; nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from tornado.web import HTTPError
from valeria_datalake.posix import PosixRoot
from valeria_datalake.s3.backend import ListingCache, run_bounded
from valeria_datalake.s3.client import S3Settings, close_s3_filesystem, make_s3_filesystem
from valeria_datalake.s3.models import Listing
from valeria_datalake.s3.uploads import MultipartUploads
from valeria_datalake.transfer import PosixSide, Tree

from tests.fixtures.s3 import OWN, OWN_BUCKET, USER, World, datalake_server_config, on_server_loop, put_many

MiB = 1024 * 1024
N = 200


@pytest.fixture
def jp_server_config(moto_world: World, tmp_path, monkeypatch):
    return datalake_server_config(moto_world.site, tmp_path, monkeypatch)


def when_exists(world: World, key: str, then, timeout: float = 60.0) -> threading.Thread:
    """A thread that waits until ``key`` exists in alice's bucket, then calls ``then()``."""
    client = world.client(USER)

    def run() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.list_objects_v2(Bucket=OWN_BUCKET, Prefix=key, MaxKeys=1).get("KeyCount"):
                then()
                return
            time.sleep(0.001)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def seed(world: World, folder: str, n: int = N) -> dict[str, bytes]:
    objects = {f"{folder}/f-{i:03d}.txt": b"v1-%03d" % i for i in range(n)}
    put_many(world.site, USER, OWN_BUCKET, objects)
    return objects


def keys_below(world: World, prefix: str) -> set[str]:
    out = set()
    for page in (
        world.client(USER).get_paginator("list_objects_v2").paginate(Bucket=OWN_BUCKET, Prefix=prefix)
    ):
        out.update(o["Key"] for o in page.get("Contents", []))
    return {k for k in out if not k.endswith("/.valeria_keep")}  # folder markers are no data


# -- a move keeps what a collaborator changed meanwhile -----------------------------------------


@on_server_loop
async def test_a_move_keeps_a_source_object_changed_during_the_copy(api, moto_world):
    u = moto_world.unique("race-move")
    seed(moto_world, f"{u}/src")
    client = moto_world.client(USER)
    changed = f"{u}/src/f-000.txt"
    writer = when_exists(
        moto_world,
        f"{u}/dst/f-000.txt",
        lambda: client.put_object(Bucket=OWN_BUCKET, Key=changed, Body=b"v2-000"),
    )
    code, body = await api("PATCH", f"{OWN}/{u}/src", {"path": f"{OWN}/{u}/dst"})
    writer.join(10)
    assert code == 409, body
    assert "changed during the move" in body["message"] and "f-000.txt" in body["message"]
    assert keys_below(moto_world, f"{u}/src/") == {changed}  # only the changed one stays
    assert client.get_object(Bucket=OWN_BUCKET, Key=changed)["Body"].read() == b"v2-000"
    assert len(keys_below(moto_world, f"{u}/dst/")) == N  # the copy is complete


@on_server_loop
async def test_a_move_from_home_keeps_a_file_changed_during_the_copy(api, moto_world, jp_root_dir):
    u = moto_world.unique("race-home")
    src = jp_root_dir / u
    src.mkdir()
    for i in range(N):
        (src / f"f-{i:03d}.txt").write_bytes(b"v1-%03d" % i)
    target = src / "f-000.txt"

    def touch() -> None:  # same size, new content and mtime: a collaborator's (or a kernel's) save
        target.write_bytes(b"v2-000")
        os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))

    writer = when_exists(moto_world, f"{u}/f-000.txt", touch)
    code, body = await api("PATCH", u, {"path": f"{OWN}/{u}"})
    writer.join(10)
    assert code == 409, body
    assert sorted(os.listdir(src)) == ["f-000.txt"] and target.read_bytes() == b"v2-000"
    assert len(keys_below(moto_world, f"{u}/")) == N


# -- a failed copy removes only what it wrote --------------------------------------------------------


@on_server_loop
async def test_a_failed_copy_removes_only_what_it_wrote(api, moto_world):
    u = moto_world.unique("race-clean")
    seed(moto_world, f"{u}/src")
    client = moto_world.client(USER)
    theirs = f"{u}/dst/theirs.txt"
    writer = when_exists(
        moto_world,
        f"{u}/dst/f-000.txt",
        lambda: client.put_object(Bucket=OWN_BUCKET, Key=theirs, Body=b"mine"),
    )
    moto_world.site.counter.inject_fault("CopyObject", 403, key_contains=f"{u}/dst/f-19", times=100)
    try:
        code, body = await api("PATCH", f"{OWN}/{u}/src", {"path": f"{OWN}/{u}/dst"})
    finally:
        moto_world.site.counter.reset()
    writer.join(10)
    assert code == 403, body
    assert keys_below(moto_world, f"{u}/dst/") == {theirs}  # the collaborator's file survived
    assert len(keys_below(moto_world, f"{u}/src/")) == N  # the source is untouched


# -- existence checks ask S3, not a cached listing ---------------------------------------------------


@on_server_loop
async def test_a_copy_never_merges_into_a_folder_the_cache_missed(api, moto_world):
    u = moto_world.unique("race-cache")
    seed(moto_world, f"{u}/src", 3)
    code, _ = await api("GET", f"{OWN}/{u}/dst")  # the listing "no such folder" is now cached
    assert code == 404
    moto_world.client(USER).put_object(Bucket=OWN_BUCKET, Key=f"{u}/dst/theirs.txt", Body=b"mine")
    code, body = await api("PATCH", f"{OWN}/{u}/src", {"path": f"{OWN}/{u}/dst"})
    assert code == 409, body
    assert keys_below(moto_world, f"{u}/dst/") == {f"{u}/dst/theirs.txt"}


# -- contents of huge files -------------------------------------------------------------------------


@on_server_loop
async def test_content_above_the_limit_is_a_413_pointing_to_the_download(
    api, jp_fetch, jp_serverapp, moto_world
):
    jp_serverapp.contents_manager.max_content_size = 1000
    code, body = await api("GET", f"{OWN}/bin.dat", content=1)  # 1,024 bytes
    assert code == 413, body
    assert f"/files/{OWN}/bin.dat" in body["message"] and f"s3://{OWN_BUCKET}/bin.dat" in body["message"]
    assert (await api("GET", f"{OWN}/bin.dat", content=0))[0] == 200
    assert (await api("GET", f"{OWN}/notes.txt", content=1))[0] == 200
    r = await jp_fetch("files", OWN, "bin.dat")
    assert r.code == 200 and r.body == bytes(range(256)) * 4


# -- chunked uploads: one path, one upload at a time -----------------------------------------------


async def test_a_new_upload_never_orphans_one_being_created(moto_world):
    """Chunk 1 of a second upload arrives while the first one's multipart upload is being created."""
    fs = make_s3_filesystem(S3Settings.from_environ(moto_world.site.env(USER)))
    try:
        uploads = MultipartUploads(fs, part_size=5 * MiB, idle_timeout=60)
        key = f"{moto_world.unique('orphan')}/x.bin"
        chunk = b"x" * (5 * MiB)
        await asyncio.gather(
            uploads.add_chunk(OWN_BUCKET, key, 1, chunk), uploads.add_chunk(OWN_BUCKET, key, 1, chunk)
        )
        assert await uploads.add_chunk(OWN_BUCKET, key, -1, b"end") is True
        assert moto_world.open_uploads(key, exact=True) == []
        assert uploads._path_locks == {}
    finally:
        await close_s3_filesystem(fs)


# -- bounded resources ------------------------------------------------------------------------------


def test_expired_listings_are_dropped():
    cache = ListingCache(ttl=0.05)
    for i in range(100):
        cache.put("b", f"p{i}/", Listing(f"p{i}/"))
    assert len(cache) == 100
    time.sleep(0.06)
    cache.put("b", "fresh/", Listing("fresh/"))
    assert len(cache) == 1 and cache.get("b", "fresh/") is not None


async def test_folder_transfers_run_a_fixed_pool_of_workers():
    seen: list[int] = []
    done: list[int] = []

    async def work(i: int) -> None:
        seen.append(len(asyncio.all_tasks()))
        await asyncio.sleep(0)
        done.append(i)

    await run_bounded(range(10_000), work, 8)
    assert sorted(done) == list(range(10_000))
    assert max(seen) <= 8 + 1  # the workers and the test itself, never one task per item


async def test_a_failure_stops_the_other_workers():
    done: list[int] = []

    async def work(i: int) -> None:
        if i == 3:
            raise OSError("boom")
        await asyncio.sleep(0)
        done.append(i)

    with pytest.raises(OSError):
        await run_bounded(range(1000), work, 4)
    assert len(done) < 20


# -- links planted in the destination --------------------------------------------------------------


def test_a_link_planted_in_the_destination_is_never_followed(tmp_path):
    home, outside = tmp_path / "home", tmp_path / "outside"
    home.mkdir()
    outside.mkdir()
    side = PosixSide(PosixRoot(root_dir=str(home)), "dst")
    asyncio.run(side.make_dirs(Tree("directory", dirs=["a"])))
    os.rmdir(home / "dst" / "a")
    os.symlink(outside, home / "dst" / "a")  # swapped in after the folders were made
    with pytest.raises(HTTPError) as info:
        side.create("a/x.txt")
    assert info.value.status_code == 409
    os.symlink(outside / "y.txt", home / "dst" / "y.txt")  # a dangling link where a file goes
    with pytest.raises(HTTPError):
        side.create("y.txt")
    assert os.listdir(outside) == []
    asyncio.run(side.cleanup(Tree("directory")))
    assert os.listdir(outside) == []
