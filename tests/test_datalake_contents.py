"""The contents API on home, scratch and buckets, through a real jupyter-server and real HTTP S3.

Runs on every S3 site (moto, and Ceph RGW when available): what is asserted holds on both.
"""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from tornado.httpclient import HTTPClientError

from tests.fixtures.s3 import (
    NOTEBOOK,
    OWN,
    OWN_BUCKET,
    PRIVATE,
    RO,
    RW,
    SEED,
    SHARED_RO,
    SHARED_RW,
    World,
    datalake_server_config,
    on_server_loop,
)


@pytest.fixture
def jp_server_config(world: World, tmp_path, monkeypatch):
    return datalake_server_config(world.site, tmp_path, monkeypatch)


def names(model: dict) -> dict[str, str]:
    return {m["name"]: m["type"] for m in model["content"]}


def keys(world: World, bucket: str, prefix: str) -> set[str]:
    client = world.client("alice") if not bucket.startswith("bob-") else world.client("bob")
    out = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update(o["Key"] for o in page.get("Contents", []))
    return out


def read(world: World, bucket: str, key: str) -> bytes:
    client = world.client("alice") if not bucket.startswith("bob-") else world.client("bob")
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


# -- the root ------------------------------------------------------------------------------------


@on_server_loop
async def test_root_lists_home_scratch_and_accessible_buckets(api, jp_root_dir):
    (jp_root_dir / "home-file.txt").write_text("mine")
    (jp_root_dir / "datalake_shadowed").mkdir()  # a home folder a bucket name would shadow: not shown
    code, root = await api("GET", "")
    assert code == 200
    entries = {m["name"]: m for m in root["content"]}
    assert entries["home-file.txt"]["type"] == "file"
    assert entries["scratch"]["type"] == "directory"
    assert entries[OWN]["type"] == "directory" and entries[OWN]["writable"] is True
    assert entries[RO]["writable"] is False
    assert entries[RW]["writable"] is True
    assert f"datalake_{PRIVATE}" not in entries
    assert "datalake_shadowed" not in entries


# -- listings ------------------------------------------------------------------------------------


@on_server_loop
async def test_bucket_listing_shows_every_prefix_and_hides_markers(api):
    code, top = await api("GET", OWN, content=1)
    assert code == 200 and top["type"] == "directory" and top["name"] == OWN
    got = names(top)
    for name in ("notes.txt", "analysis.ipynb", "bin.dat"):
        assert got[name] in ("file", "notebook")
    assert got["analysis.ipynb"] == "notebook"
    for folder in ("spark", "my folder", "données", "CaseSensitive", "markers"):
        assert got[folder] == "directory"
    assert ".hidden-at-root.txt" not in got
    assert not any(n.startswith(".valeria") for n in got)

    _, spark = await api("GET", f"{OWN}/spark")
    assert names(spark) == {"year=2024": "directory", "_SUCCESS": "file"}
    _, year = await api("GET", f"{OWN}/spark/year=2024", type="directory")
    assert names(year) == {"month=01": "directory", "month=02": "directory"}
    assert year["content"][0]["path"] == f"{OWN}/spark/year=2024/month=01"

    _, markers = await api("GET", f"{OWN}/markers")
    assert names(markers) == {
        d: "directory" for d in ("s3contents", "jupyterfs", "generic", "ours", "console")
    }
    for d in ("s3contents", "jupyterfs", "generic", "ours", "console"):
        code, sub = await api("GET", f"{OWN}/markers/{d}")
        assert code == 200 and sub["content"] == [], d


@on_server_loop
async def test_names_keep_spaces_unicode_and_case(api):
    code, m = await api("GET", f"{OWN}/my folder/my file.csv", type="file", format="text")
    assert code == 200 and m["content"] == "x\n1\n" and m["name"] == "my file.csv"
    code, m = await api("GET", f"{OWN}/données/Été Résumé.txt", type="file")
    assert code == 200 and m["content"] == "accentué\n"
    _, upper = await api("GET", f"{OWN}/CaseSensitive/File.TXT", type="file")
    _, lower = await api("GET", f"{OWN}/CaseSensitive/file.txt", type="file")
    assert (upper["content"], lower["content"]) == ("upper", "lower")


# -- reading files -------------------------------------------------------------------------------


@on_server_loop
async def test_get_text_base64_and_notebook(api):
    code, m = await api("GET", f"{OWN}/notes.txt", type="file", content=1)
    assert code == 200
    assert m["format"] == "text" and m["content"] == "hello datalake\n"
    assert m["size"] == len(SEED["notes.txt"]) and m["mimetype"] == "text/plain"
    assert m["last_modified"] and m["created"] and m["writable"] is True

    code, m = await api("GET", f"{OWN}/bin.dat", type="file")
    assert code == 200 and m["format"] == "base64"
    assert base64.b64decode(m["content"]) == SEED["bin.dat"]

    code, m = await api("GET", f"{OWN}/notes.txt", type="file", format="base64")
    assert base64.b64decode(m["content"]) == SEED["notes.txt"]

    code, m = await api("GET", f"{OWN}/bin.dat", type="file", format="text")
    assert code == 400

    code, m = await api("GET", f"{OWN}/analysis.ipynb", type="notebook", content=1)
    assert code == 200 and m["type"] == "notebook" and m["format"] == "json"
    assert m["content"]["cells"][0]["source"] == NOTEBOOK["cells"][0]["source"]

    code, m = await api("GET", f"{OWN}/analysis.ipynb")  # no type: found as a file after one listing
    assert code == 200 and m["type"] == "notebook"


@on_server_loop
async def test_require_hash_is_etag_for_s3_and_sha256_for_posix(api, world, jp_root_dir):
    code, m = await api("GET", f"{OWN}/notes.txt", type="file", hash=1)
    etag = world.client().head_object(Bucket=OWN_BUCKET, Key="notes.txt")["ETag"].strip('"')
    assert code == 200 and m["hash"] == etag and m["hash_algorithm"] == "etag"
    (jp_root_dir / "h.txt").write_text("x")
    code, m = await api("GET", "h.txt", type="file", hash=1)
    assert code == 200 and m["hash_algorithm"] == "sha256" and len(m["hash"]) == 64


@on_server_loop
async def test_files_download_of_a_bucket_file(jp_fetch):
    r = await jp_fetch("files", OWN, "bin.dat", method="GET")
    assert r.code == 200 and r.body == SEED["bin.dat"]
    r = await jp_fetch("files", OWN, "my folder", "my file.csv", method="GET")
    assert r.body == SEED["my folder/my file.csv"]
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("files", OWN, "nope.bin", method="GET")
    assert e.value.code == 404


# -- writing -------------------------------------------------------------------------------------


@on_server_loop
async def test_save_file_notebook_and_folder(api, world):
    d = world.unique("save")
    code, m = await api("PUT", f"{OWN}/{d}/a b.txt", {"type": "file", "format": "text", "content": "héllo"})
    assert code == 201 and m["content"] is None and m["size"] == len("héllo".encode())
    assert read(world, OWN_BUCKET, f"{d}/a b.txt") == "héllo".encode()

    raw = bytes(range(200))
    body = {"type": "file", "format": "base64", "content": base64.b64encode(raw).decode()}
    code, _ = await api("PUT", f"{OWN}/{d}/raw.bin", body)
    assert code == 201 and read(world, OWN_BUCKET, f"{d}/raw.bin") == raw

    code, m = await api("PUT", f"{OWN}/{d}/nb.ipynb", {"type": "notebook", "content": NOTEBOOK})
    assert code == 201 and m["type"] == "notebook"
    assert json.loads(read(world, OWN_BUCKET, f"{d}/nb.ipynb"))["cells"][0]["source"]

    code, m = await api("PUT", f"{OWN}/{d}/empty folder", {"type": "directory"})
    assert code == 201 and m["type"] == "directory"
    assert f"{d}/empty folder/.valeria_keep" in keys(world, OWN_BUCKET, d)
    _, listing = await api("GET", f"{OWN}/{d}")
    assert names(listing) == {
        "a b.txt": "file",
        "raw.bin": "file",
        "nb.ipynb": "notebook",
        "empty folder": "directory",
    }


@on_server_loop
async def test_new_untitled_in_a_bucket(api, world):
    d = world.unique("new")
    await api("PUT", f"{OWN}/{d}", {"type": "directory"})
    code, nb = await api("POST", f"{OWN}/{d}", {"type": "notebook"})
    assert code == 201 and nb["name"] == "Untitled.ipynb"
    code, nb2 = await api("POST", f"{OWN}/{d}", {"type": "notebook"})
    assert nb2["name"] == "Untitled1.ipynb"
    code, f = await api("POST", f"{OWN}/{d}", {"type": "file", "ext": ".py"})
    assert code == 201 and f["name"] == "untitled.py"
    code, folder = await api("POST", f"{OWN}/{d}", {"type": "directory"})
    assert code == 201 and folder["name"] == "Untitled Folder"
    _, listing = await api("GET", f"{OWN}/{d}")
    assert set(names(listing)) == {"Untitled.ipynb", "Untitled1.ipynb", "untitled.py", "Untitled Folder"}


@on_server_loop
async def test_rename_and_delete_inside_a_bucket(api, world):
    d = world.unique("ren")
    await api("PUT", f"{OWN}/{d}/f.txt", {"type": "file", "format": "text", "content": "one"})
    for i in range(3):
        await api(
            "PUT", f"{OWN}/{d}/sub/deeper/{i}.txt", {"type": "file", "format": "text", "content": str(i)}
        )
    await api("PUT", f"{OWN}/{d}/sub/empty", {"type": "directory"})

    code, m = await api("PATCH", f"{OWN}/{d}/f.txt", {"path": f"{OWN}/{d}/g.txt"})
    assert code == 200 and m["path"] == f"{OWN}/{d}/g.txt"
    assert read(world, OWN_BUCKET, f"{d}/g.txt") == b"one"

    code, m = await api("PATCH", f"{OWN}/{d}/sub", {"path": f"{OWN}/{d}/moved sub"})
    assert code == 200 and m["type"] == "directory"
    after = keys(world, OWN_BUCKET, d)
    assert not any(k.startswith(f"{d}/sub/") for k in after)
    assert {f"{d}/moved sub/deeper/{i}.txt" for i in range(3)} <= after
    assert f"{d}/moved sub/empty/.valeria_keep" in after

    code, _ = await api("PATCH", f"{OWN}/{d}/g.txt", {"path": f"{OWN}/{d}/moved sub/deeper/0.txt"})
    assert code == 409  # never overwrite by rename

    code, _ = await api("DELETE", f"{OWN}/{d}/g.txt")
    assert code == 204 and f"{d}/g.txt" not in keys(world, OWN_BUCKET, d)
    code, _ = await api("DELETE", f"{OWN}/{d}/moved sub")
    assert code == 204 and keys(world, OWN_BUCKET, f"{d}/moved sub/") == set()
    code, _ = await api("DELETE", f"{OWN}/{d}/nothing-here")
    assert code == 404


@on_server_loop
async def test_copy_file_and_folder_in_a_bucket(api, world):
    d = world.unique("cp")
    await api("PUT", f"{OWN}/{d}/data.csv", {"type": "file", "format": "text", "content": "1,2"})
    code, m = await api("POST", f"{OWN}/{d}", {"copy_from": f"{OWN}/{d}/data.csv"})
    assert code == 201 and m["name"] == "data-Copy1.csv"
    assert read(world, OWN_BUCKET, f"{d}/data-Copy1.csv") == b"1,2"
    await api("PUT", f"{OWN}/{d}/folder/x.txt", {"type": "file", "format": "text", "content": "x"})
    code, m = await api("POST", f"{OWN}/{d}", {"copy_from": f"{OWN}/{d}/folder"})
    assert code == 201 and m["type"] == "directory"
    assert read(world, OWN_BUCKET, f"{d}/{m['name']}/x.txt") == b"x"
    assert read(world, OWN_BUCKET, f"{d}/folder/x.txt") == b"x"


@on_server_loop
async def test_a_copied_notebook_has_its_first_checkpoint(api, world, jp_root_dir):
    """Found by the differential test: jupyter-server copies a notebook by saving it, so the copy
    has a checkpoint ("revert" works at once); our byte copies had none, in a bucket and in home."""
    d = world.unique("cpnb")
    await api("PUT", f"{OWN}/{d}/n.ipynb", {"type": "notebook", "content": NOTEBOOK})
    await api("PUT", f"{OWN}/{d}/t.txt", {"type": "file", "format": "text", "content": "t"})
    (jp_root_dir / d).mkdir()
    for src, into in [(f"{OWN}/{d}/n.ipynb", f"{OWN}/{d}"), (f"{OWN}/{d}/n.ipynb", d), (f"{d}/n.ipynb", d)]:
        code, m = await api("POST", into, {"copy_from": src})
        assert code == 201 and m["type"] == "notebook", m
        code, cps = await api("GET", f"{m['path']}/checkpoints")
        assert code == 200 and [c["id"] for c in cps] == ["checkpoint"], (m["path"], cps)
    code, m = await api("POST", f"{OWN}/{d}", {"copy_from": f"{OWN}/{d}/t.txt"})
    assert code == 201 and (await api("GET", f"{m['path']}/checkpoints"))[1] == []  # files: none


@on_server_loop
async def test_mount_roots_cannot_be_deleted_or_renamed(api):
    for method, body in (("DELETE", None), ("PATCH", {"path": "datalake_renamed"})):
        code, m = await api(method, OWN, body)
        assert 400 <= code < 500, (method, code)
    code, _ = await api("DELETE", "scratch")
    assert 400 <= code < 500
    code, _ = await api("PATCH", f"{OWN}/notes.txt", {"path": RW})
    assert code == 409
    code, _ = await api("PUT", "datalake_new-bucket", {"type": "directory"})
    assert 400 <= code < 500
    code, _ = await api("GET", f"{OWN}/notes.txt", type="file")
    assert code == 200


# -- checkpoints ---------------------------------------------------------------------------------


@on_server_loop
async def test_checkpoints_live_in_the_bucket(api, world, jp_fetch):
    d = world.unique("ck")
    path = f"{OWN}/{d}/nb.ipynb"
    await api("PUT", path, {"type": "notebook", "content": NOTEBOOK})
    r = await jp_fetch("api", "contents", path, "checkpoints", method="POST", body="")
    ck = json.loads(r.body)
    assert r.code == 201 and ck["id"]
    assert f".valeria_checkpoints/{d}/nb.ipynb" in keys(world, OWN_BUCKET, ".valeria_checkpoints/")
    changed = json.loads(json.dumps(NOTEBOOK))
    changed["cells"][0]["source"] = "changed"
    await api("PUT", path, {"type": "notebook", "content": changed})
    r = await jp_fetch("api", "contents", path, "checkpoints", method="GET")
    assert [c["id"] for c in json.loads(r.body)] == [ck["id"]]
    r = await jp_fetch("api", "contents", path, "checkpoints", ck["id"], method="POST", body="")
    assert r.code == 204
    _, m = await api("GET", path, type="notebook")
    assert m["content"]["cells"][0]["source"] == NOTEBOOK["cells"][0]["source"]
    _, top = await api("GET", OWN)
    assert ".valeria_checkpoints" not in names(top)
    code, _ = await api("PATCH", path, {"path": f"{OWN}/{d}/renamed.ipynb"})  # the checkpoint follows
    assert code == 200
    ck_keys = keys(world, OWN_BUCKET, f".valeria_checkpoints/{d}/")
    assert ck_keys == {f".valeria_checkpoints/{d}/renamed.ipynb"}
    await api("DELETE", f"{OWN}/{d}/renamed.ipynb")
    assert keys(world, OWN_BUCKET, f".valeria_checkpoints/{d}/") == set()


# -- cross-mount moves and copies ----------------------------------------------------------------


@on_server_loop
async def test_move_a_home_folder_into_a_bucket_and_back(api, world, jp_root_dir):
    d = world.unique("h2b")
    src = jp_root_dir / d
    (src / "sub" / "empty").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)))
    code, m = await api("PATCH", d, {"path": f"{OWN}/{d}"})
    assert code == 200, m
    assert not src.exists()
    got = keys(world, OWN_BUCKET, d)
    assert {f"{d}/a.txt", f"{d}/sub/b.bin", f"{d}/sub/empty/.valeria_keep"} <= got
    assert read(world, OWN_BUCKET, f"{d}/sub/b.bin") == bytes(range(256))

    code, m = await api("PATCH", f"{OWN}/{d}", {"path": f"{d}-back"})
    assert code == 200, m
    back = jp_root_dir / f"{d}-back"
    assert (back / "a.txt").read_text() == "A"
    assert (back / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert (back / "sub" / "empty").is_dir()
    assert keys(world, OWN_BUCKET, f"{d}/") == set()


@on_server_loop
async def test_a_moved_in_folder_stays_when_its_last_file_moves_out(api, world, jp_root_dir):
    """Found by the differential test: a home folder moved into a bucket had no marker object, so
    moving its only file out made the folder vanish (on disk it stays, empty)."""
    d = world.unique("keep")
    (jp_root_dir / d / "inner").mkdir(parents=True)
    (jp_root_dir / d / "inner" / "only.txt").write_text("1")
    code, m = await api("PATCH", d, {"path": f"{OWN}/{d}"})
    assert code == 200, m
    for src, dst in [
        (f"{OWN}/{d}/inner/only.txt", f"{OWN}/{d}-only.txt"),
        (f"{OWN}/{d}-only.txt", f"{d}-back.txt"),
    ]:
        code, m = await api("PATCH", src, {"path": dst})
        assert code == 200, m
    code, m = await api("GET", f"{OWN}/{d}")
    assert code == 200, m
    assert names(m) == {"inner": "directory"}
    code, m = await api("GET", f"{OWN}/{d}/inner")
    assert code == 200 and m["content"] == [], m


@on_server_loop
async def test_nothing_is_written_below_a_bucket_file(api, world, jp_root_dir):
    """Found by the differential test: a save, new folder, upload or move to ``f.txt/x`` made the
    file ``f.txt`` a folder that hid it in every listing (home cannot write there): now 400."""
    d = world.unique("below")
    text = {"type": "file", "format": "text", "content": "x"}
    await api("PUT", f"{OWN}/{d}/f.txt", text)
    (jp_root_dir / f"{d}.txt").write_text("home")
    chunk = {**text, "format": "base64", "content": base64.b64encode(b"abc").decode(), "chunk": 1}
    for method, path, body in [
        ("PUT", f"{OWN}/{d}/f.txt/new.txt", text),
        ("PUT", f"{OWN}/{d}/f.txt/deeper/new.txt", text),
        ("PUT", f"{OWN}/{d}/f.txt/folder", {"type": "directory"}),
        ("PUT", f"{OWN}/{d}/f.txt/up.bin", chunk),
        ("PATCH", f"{d}.txt", {"path": f"{OWN}/{d}/f.txt/moved.txt"}),
    ]:
        code, m = await api(method, path, body)
        assert code == 400, (method, path, code, m)
    assert keys(world, OWN_BUCKET, f"{d}/") == {f"{d}/f.txt"}
    code, m = await api("GET", f"{OWN}/{d}", content=1)
    assert names(m) == {"f.txt": "file"}
    assert (jp_root_dir / f"{d}.txt").read_text() == "home"


@on_server_loop
async def test_checkpoints_follow_moves_between_home_and_buckets(api, world, jp_root_dir):
    """Found by the differential test: a file or folder moved between home and a bucket lost its
    files' checkpoints, where jupyter-server's rename takes them along ("revert" still works)."""
    d = world.unique("ckmove")
    text = lambda t: {"type": "file", "format": "text", "content": t}  # noqa: E731
    await api("PUT", f"{OWN}/{d}", {"type": "directory"})
    await api("PUT", f"{OWN}/{d}/f.txt", text("checkpointed"))
    await api("POST", f"{OWN}/{d}/f.txt/checkpoints")
    await api("PUT", f"{OWN}/{d}/f.txt", text("changed"))
    (jp_root_dir / d / "sub").mkdir(parents=True)
    moves = [  # a file bucket -> home -> bucket -> home, then its folder to the bucket and back
        (f"{OWN}/{d}/f.txt", f"{d}/f.txt"),
        (f"{d}/f.txt", f"{OWN}/{d}/g.txt"),
        (f"{OWN}/{d}/g.txt", f"{d}/sub/h.txt"),
        (f"{d}/sub", f"{OWN}/{d}/sub"),
        (f"{OWN}/{d}/sub", f"{d}/back"),
    ]
    for src, dst in moves:
        code, m = await api("PATCH", src, {"path": dst})
        assert code == 200, (src, dst, m)
        name = dst if not dst.endswith(("sub", "back")) else f"{dst}/h.txt"
        code, cps = await api("GET", f"{name}/checkpoints")
        assert code == 200 and [c["id"] for c in cps] == ["checkpoint"], (src, dst, cps)
    assert keys(world, OWN_BUCKET, f".valeria_checkpoints/{d}/") == set()  # none left behind
    left = list((jp_root_dir / d).rglob("*-checkpoint*"))
    assert left == [jp_root_dir / d / "back" / ".ipynb_checkpoints" / "h-checkpoint.txt"]
    code, _ = await api("POST", f"{d}/back/h.txt/checkpoints/checkpoint")
    assert code == 204 and (jp_root_dir / d / "back" / "h.txt").read_text() == "checkpointed"


@on_server_loop
async def test_move_between_buckets_and_scratch(api, world, tmp_path):
    d = world.unique("b2b")
    await api("PUT", f"{OWN}/{d}/x/1.txt", {"type": "file", "format": "text", "content": "1"})
    code, m = await api("PATCH", f"{OWN}/{d}", {"path": f"{RW}/{d}"})
    assert code == 200, m
    assert read(world, SHARED_RW, f"{d}/x/1.txt") == b"1"
    assert keys(world, OWN_BUCKET, f"{d}/") == set()

    code, m = await api("PATCH", f"{RW}/{d}/x/1.txt", {"path": "scratch/1.txt"})
    assert code == 200, m
    assert (tmp_path / "scratch" / "1.txt").read_text() == "1"
    code, m = await api("PATCH", "scratch/1.txt", {"path": f"{OWN}/{d}-from-scratch.txt"})
    assert code == 200 and read(world, OWN_BUCKET, f"{d}-from-scratch.txt") == b"1"
    assert not (tmp_path / "scratch" / "1.txt").exists()

    code, m = await api("GET", "scratch")
    assert code == 200 and m["path"] == "scratch"
    (tmp_path / "scratch" / "s.txt").write_text("s")
    code, m = await api("PATCH", "scratch/s.txt", {"path": "s-in-home.txt"})
    assert code == 200 and m["path"] == "s-in-home.txt"


@on_server_loop
async def test_copy_across_mounts_keeps_the_source(api, world, jp_root_dir):
    d = world.unique("cpx")
    (jp_root_dir / d).mkdir()
    (jp_root_dir / d / "k.txt").write_text("keep")
    code, m = await api("POST", OWN, {"copy_from": d})
    assert code == 201 and m["path"] == f"{OWN}/{d}"
    assert (jp_root_dir / d / "k.txt").read_text() == "keep"
    assert read(world, OWN_BUCKET, f"{d}/k.txt") == b"keep"
    code, m = await api("POST", "", {"copy_from": f"{OWN}/notes.txt"})
    assert code == 201 and (jp_root_dir / "notes.txt").read_bytes() == SEED["notes.txt"]


# -- read-only and inaccessible buckets ----------------------------------------------------------


@on_server_loop
async def test_read_only_bucket(api, world, jp_root_dir):
    code, m = await api("GET", RO)
    assert code == 200 and m["writable"] is False
    assert names(m) == {"readme.txt": "file", "sub": "directory"}
    code, m = await api("GET", f"{RO}/readme.txt", type="file")
    assert code == 200 and m["writable"] is False and "read-only" in m["content"]

    code, m = await api("PUT", f"{RO}/new.txt", {"type": "file", "format": "text", "content": "no"})
    assert code == 403 and RO in m["message"]
    code, _ = await api("DELETE", f"{RO}/readme.txt")
    assert code == 403
    assert read(world, SHARED_RO, "readme.txt")
    (jp_root_dir / "to-ro.txt").write_text("stay")
    code, _ = await api("PATCH", "to-ro.txt", {"path": f"{RO}/to-ro.txt"})
    assert code == 403
    assert (jp_root_dir / "to-ro.txt").read_text() == "stay"
    code, _ = await api("PATCH", f"{RO}/readme.txt", {"path": "stolen.txt"})
    assert code == 403  # moving out needs a delete in the read-only bucket
    assert read(world, SHARED_RO, "readme.txt")
    assert not (jp_root_dir / "stolen.txt").exists()
    code, m = await api("POST", "", {"copy_from": f"{RO}/sub"})  # copying out is fine
    assert code == 201 and m["path"] == "sub" and (jp_root_dir / "sub" / "x.csv").read_text() == "1\n"


@on_server_loop
async def test_absolute_paths_stay_inside_home(api, jp_root_dir):
    code, m = await api("GET", "/etc/passwd", type="file")
    assert code == 404
    escape = f"/tmp/{uuid.uuid4().hex}.txt"
    code, m = await api("PUT", escape, {"type": "file", "format": "text", "content": "x"})
    assert code == 404 and "No such directory" in m["message"]  # home/tmp does not exist
    assert not os.path.exists(escape)
    (jp_root_dir / "tmp").mkdir()
    code, m = await api("PUT", escape, {"type": "file", "format": "text", "content": "x"})
    assert code == 201 and m["path"] == escape.lstrip("/")
    assert (jp_root_dir / escape.lstrip("/")).exists() and not os.path.exists(escape)


@on_server_loop
async def test_private_and_missing_buckets_are_404(api):
    for path in (f"datalake_{PRIVATE}", f"datalake_{PRIVATE}/secret-plans.txt", "datalake_no-such-bucket/x"):
        code, m = await api("GET", path)
        assert code == 404, path


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../etc/passwd",
        f"{OWN}/../{OWN}/notes.txt",
        f"{OWN}/a/./b",
        "a\x00b",
        f"{OWN}/a\x00b",
        f"{OWN}/{'n' * 300}",
        "x" * 300,
        "datalake_BAD_Bucket!/x",
    ],
)
@on_server_loop
async def test_bad_paths_are_4xx(api, path):
    code, m = await api("GET", path)
    assert 400 <= code < 500, (path, code, m)
    code, m = await api("PUT", path, {"type": "file", "format": "text", "content": "x"})
    assert 400 <= code < 500, (path, code, m)


@on_server_loop
async def test_bad_models_are_4xx(api, world):
    d = world.unique("bad")
    for body in (
        {"type": "file", "format": "base64", "content": "!!!not base64"},
        {"type": "file", "content": "no format"},
        {"type": "notebook", "content": "not a dict"},
        {"type": "file", "format": "text", "content": "x", "chunk": "one"},
    ):
        code, m = await api("PUT", f"{OWN}/{d}/x.bin", body)
        assert 400 <= code < 500, (body, code, m)
    code, _ = await api("PATCH", f"{OWN}/{d}", {"path": f"{OWN}/{d}/inside"})
    assert 400 <= code < 500


# -- home and kernels ----------------------------------------------------------------------------


@on_server_loop
async def test_home_behaves_like_jupyter_server(api, jp_root_dir, tmp_path):
    target = tmp_path / "project-space"
    target.mkdir()
    (target / "p.txt").write_text("linked")
    (jp_root_dir / "project").symlink_to(target)
    code, m = await api("GET", "project/p.txt", type="file")
    assert code == 200 and m["content"] == "linked"
    code, _ = await api("PUT", "h.txt", {"type": "file", "format": "text", "content": "h"})
    assert code == 201 and (jp_root_dir / "h.txt").read_text() == "h"
    code, _ = await api("PUT", "datalake_fake", {"type": "directory"})
    assert code == 400  # reserved: a bucket folder would hide it
    for dst in ("no/such/dir/h.txt", "scratch/no/such/h.txt"):
        code, _ = await api("PATCH", "h.txt", {"path": dst})
        assert code == 404, dst
    assert (jp_root_dir / "h.txt").read_text() == "h"


@on_server_loop
async def test_kernel_start_folders(jp_serverapp, jp_root_dir, tmp_path):
    cm = jp_serverapp.contents_manager
    km = jp_serverapp.kernel_manager
    (jp_root_dir / "proj").mkdir()
    (tmp_path / "scratch" / "run").mkdir()
    assert km.cwd_for_path(await cm.get_kernel_path("proj/a.ipynb")) == str(jp_root_dir / "proj")
    assert km.cwd_for_path(await cm.get_kernel_path("scratch/run/a.ipynb")) == str(
        tmp_path / "scratch" / "run"
    )
    assert km.cwd_for_path(await cm.get_kernel_path(f"{OWN}/analysis.ipynb")) == str(jp_root_dir)


# -- chunked uploads (JupyterLab's large-file protocol) ------------------------------------------


@on_server_loop
async def test_chunked_upload_into_a_bucket(api, world):
    d = world.unique("up")
    path = f"{OWN}/{d}/big file.bin"
    parts = [bytes([i]) * 1000 for i in range(3)]
    for n, data in zip((1, 2, -1), parts, strict=True):
        body = {"type": "file", "format": "base64", "chunk": n, "content": base64.b64encode(data).decode()}
        code, m = await api("PUT", path, body)
        assert code in (200, 201), m
        if n != -1:  # nothing visible until the last chunk
            assert keys(world, OWN_BUCKET, f"{d}/") == set()
    assert m["size"] == 3000 and m["name"] == "big file.bin"
    assert read(world, OWN_BUCKET, f"{d}/big file.bin") == b"".join(parts)

    text_path = f"{OWN}/{d}/t.txt"
    for n, text in ((1, "héllo "), (-1, "wörld")):
        code, m = await api("PUT", text_path, {"type": "file", "format": "text", "chunk": n, "content": text})
        assert code in (200, 201), m
    assert read(world, OWN_BUCKET, f"{d}/t.txt") == "héllo wörld".encode()


@on_server_loop
async def test_chunked_upload_into_a_read_only_bucket_is_403(api, world):
    body = {"type": "file", "format": "text", "content": "x"}
    code, m = await api("PUT", f"{RO}/up.txt", {**body, "chunk": 1})
    if code in (200, 201):  # the first chunk may only be buffered: the refusal comes with the write
        code, m = await api("PUT", f"{RO}/up.txt", {**body, "chunk": -1})
    assert code == 403, m


@on_server_loop
async def test_odd_requests_get_4xx_never_500(api, world, jp_root_dir):
    (jp_root_dir / "plain.txt").write_text("not a notebook")
    d = world.unique("odd")
    await api("PUT", f"{OWN}/{d}/plain.ipynb", {"type": "file", "format": "text", "content": "not json"})
    cases = [
        ("GET", f"{OWN}/notes.txt", None, {"type": "directory"}),
        ("GET", f"{OWN}/spark", None, {"type": "file"}),
        ("GET", f"{OWN}/{d}/plain.ipynb", None, {"type": "notebook"}),
        ("GET", "plain.txt", None, {"type": "notebook"}),
        ("PUT", f"{OWN}/{d}/n.ipynb", {"type": "notebook", "content": {"cells": "nope"}}, {}),
        ("PUT", "", {"type": "directory"}, {}),
        ("DELETE", "no-such-file.txt", None, {}),
        ("DELETE", f"{OWN}/{d}/no-such-file.txt", None, {}),
        ("DELETE", "", None, {}),
        ("PATCH", f"{OWN}/{d}/missing.txt", {"path": f"{OWN}/{d}/other.txt"}, {}),
        ("PATCH", "missing.txt", {"path": f"{OWN}/{d}/other.txt"}, {}),
        ("PATCH", f"{OWN}/{d}/plain.ipynb", {"path": ""}, {}),
        ("POST", f"{OWN}/{d}", {"copy_from": f"{OWN}/{d}/missing.txt"}, {}),
        ("POST", f"{OWN}/{d}", {"copy_from": OWN}, {}),
        ("POST", f"{OWN}/{d}/no/such/dir", {"type": "notebook"}, {}),
        ("POST", f"{OWN}/{d}/missing.ipynb/checkpoints", None, {}),
        ("POST", "missing.ipynb/checkpoints", None, {}),
        # below a file (found by the differential test: jupyter_core's is_hidden raised, a 500)
        ("GET", "plain.txt/x", None, {"type": "notebook", "content": 0}),
        ("GET", "plain.txt/x/y.txt", None, {}),
        ("PUT", "plain.txt/x", {"type": "file", "format": "text", "content": "x"}, {}),
        ("DELETE", "plain.txt/x", None, {}),
        ("PATCH", "plain.txt/x", {"path": "elsewhere.txt"}, {}),
        ("GET", f"{OWN}/{d}/plain.ipynb/x", None, {"type": "notebook", "content": 0}),
        # restoring a checkpoint that does not exist (differential test on Ceph, seed 1010474321)
        ("POST", "plain.txt/checkpoints/checkpoint", None, {}),
        ("POST", f"{OWN}/{d}/plain.ipynb/checkpoints/checkpoint", None, {}),
        # a file saved over a home folder: jupyter-server answers 500 "Is a directory" (CI's
        # differential test, seed 2252371256)
        ("PUT", "odd-folder", {"type": "file", "format": "text", "content": "x"}, {}),
        ("PUT", "odd-folder", {"type": "notebook", "content": NOTEBOOK}, {}),
    ]
    (jp_root_dir / "odd-folder").mkdir()
    for method, path, body, params in cases:
        code, m = await api(method, path, body, **params)
        assert 400 <= code < 500, (method, path, body, code, m)
