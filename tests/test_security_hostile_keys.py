"""A bucket shared with alice, written by bob: keys that must never become paths or keys elsewhere.

S3 keys are any string. Ceph RGW and moto store ``proj/../.ipython/.../00-x.py`` literally; a
copy or move of ``proj`` that joins the key to the destination writes outside it (here: an
IPython start-up file that runs as alice). Every case is copied, moved and opened into home,
scratch and another bucket; nothing may land outside the destination, no existing file may
change, every refusal is a 4xx (never a 500), and the source stays as bob wrote it.
Runs on moto and on the real Ceph RGW.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from valeria_datalake.paths import PathRouter

from tests.fixtures.s3 import (
    OWN,
    OWN_BUCKET,
    RW,
    SHARED_RW,
    World,
    datalake_server_config,
    hostile_bucket,
    on_server_loop,
)

HOME_FILE = b"alice's own file\n"


@pytest.fixture
def jp_server_config(world: World, tmp_path, monkeypatch):
    return datalake_server_config(world.site, tmp_path, monkeypatch)


def snapshot(top: Path) -> dict[str, tuple[int, str]]:
    """Every file and folder below ``top`` (the test's whole tmp tree): size and content hash."""
    out: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), top) + "/"] = (0, "")
        for f in filenames:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                out[os.path.relpath(p, top)] = (-1, os.readlink(p))
                continue
            with open(p, "rb") as fh:
                data = fh.read()
            out[os.path.relpath(p, top)] = (len(data), hashlib.sha256(data).hexdigest())
    return out


def bucket_keys(world: World, bucket: str, prefix: str) -> dict[str, str]:
    client = world.client("bob" if bucket.startswith("bob-") else "alice")
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return out


def is_4xx(code: int) -> bool:
    return 400 <= code < 500


@on_server_loop
async def test_hostile_folders_never_land_outside_the_destination(api, world, jp_root_dir, tmp_path):
    hostile = hostile_bucket(world)
    assert hostile.cases["dotdot"], "the S3 server refused a '..' key: nothing to test"
    (jp_root_dir / "home-file.txt").write_bytes(HOME_FILE)
    (tmp_path / "scratch" / "home-file.txt").write_bytes(HOME_FILE)
    source_before = bucket_keys(world, SHARED_RW, hostile.prefix + "/")
    before = snapshot(tmp_path)
    tried = 0
    for case, keys in hostile.cases.items():
        if not keys:
            continue  # this S3 server refused the key itself
        src = f"{RW}/{hostile.prefix}/{case}"
        for dest_dir in ("", "scratch"):
            code, body = await api("POST", dest_dir, {"copy_from": src})
            assert is_4xx(code), (case, dest_dir, code, body)
            assert snapshot(tmp_path) == before, (case, dest_dir, "copy wrote something")
            dest = f"{dest_dir}/{case}".lstrip("/")
            code, body = await api("PATCH", src, {"path": dest})
            assert is_4xx(code), (case, dest, code, body)
            assert snapshot(tmp_path) == before, (case, dest, "move wrote something")
        # bucket -> bucket: no destination key may be made of a hostile key either
        code, body = await api("POST", OWN, {"copy_from": src})
        if case in ("file-and-folder", "long-key"):  # both fine as keys: a legal bucket copy
            assert code == 201, body
            assert (await api("DELETE", body["path"]))[0] == 204
        else:
            assert is_4xx(code), (case, code, body)
        assert not bucket_keys(world, OWN_BUCKET, case), case
        tried += 1
    assert tried >= 8
    assert bucket_keys(world, SHARED_RW, hostile.prefix + "/") == source_before  # source untouched
    for _, _, files in os.walk(tmp_path.parent):  # every test's tree: the far escape landed nowhere
        assert not any(hostile.far in f for f in files)


@on_server_loop
async def test_refusal_names_the_key_and_writes_nothing(api, world, jp_root_dir):
    hostile = hostile_bucket(world)
    code, body = await api("POST", "", {"copy_from": f"{RW}/{hostile.prefix}/dotdot"})
    assert code == 400
    assert "'../.ipython/profile_default/startup/00-x.py'" in body["message"] or (
        "/dotdot/../.ipython/profile_default/startup/00-x.py'" in body["message"]
    )
    assert "nothing was copied" in body["message"]
    assert not (jp_root_dir / ".ipython").exists()
    assert not (jp_root_dir / "dotdot").exists()


@on_server_loop
async def test_listings_never_show_a_hostile_key_and_every_entry_opens(api, world):
    hostile = hostile_bucket(world)
    for case, keys in hostile.cases.items():
        if not keys:
            continue
        folder = f"{RW}/{hostile.prefix}/{case}"
        code, listing = await api("GET", folder, content=1)
        assert code == 200, (case, code, listing)
        for entry in listing["content"]:
            name = entry["name"]
            assert name not in ("", ".", "..") and "/" not in name, (case, name)
            assert not any(ord(c) < 32 or c == "\ufffd" for c in name), (case, name)
            assert entry["path"] == f"{folder}/{name}"
            code, opened = await api("GET", entry["path"], content=1)
            assert code == 200, (case, entry["path"], code, opened)
        assert "ok.txt" in {e["name"] for e in listing["content"]}
    # the root of the bucket: the leading-"/" key makes a common prefix "/", never an entry
    code, root = await api("GET", RW, content=1)
    assert code == 200 and all(e["name"] for e in root["content"])


@on_server_loop
async def test_hostile_paths_are_refused_by_the_api(api, world, jp_root_dir):
    hostile = hostile_bucket(world)
    base = f"{RW}/{hostile.prefix}"
    paths = [
        f"{base}/dotdot/../.ipython/profile_default/startup/00-x.py",
        f"{base}/dot/./dot.txt",
        f"{base}/double-slash/sub//x.txt",
        f"{RW}/{hostile.lead_key}",
        f"{base}/control/bell\x07.txt",
        f"{base}/newline/new\nline.txt",
    ]
    for path in paths:
        for method, body in (
            ("GET", None),
            ("DELETE", None),
            ("PUT", {"type": "file", "format": "text", "content": "x"}),
        ):
            code, answer = await api(method, path, body)
            assert is_4xx(code), (method, path, code, answer)
    assert bucket_keys(world, SHARED_RW, hostile.prefix + "/dotdot/")  # still there


@on_server_loop
async def test_moving_a_hostile_file_onto_a_home_file_changes_nothing(api, world, jp_root_dir):
    hostile = hostile_bucket(world)
    (jp_root_dir / "home-file.txt").write_bytes(HOME_FILE)
    src = f"{RW}/{hostile.prefix}/collides-with-home/ok.txt"
    code, body = await api("PATCH", src, {"path": "home-file.txt"})
    assert code == 409, body
    assert (jp_root_dir / "home-file.txt").read_bytes() == HOME_FILE


def test_bucket_names_are_matched_whole():
    router = PathRouter("datalake_", scratch_enabled=False)
    for bad in ("datalake_alice-data\n", "datalake_alice-data\n/x"):
        with pytest.raises(Exception) as info:
            router.locate(bad)
        assert getattr(info.value, "status_code", 0) in (400, 404), bad
    assert router.locate("datalake_alice-data/x").bucket == "alice-data"


def test_validation_regexes_match_whole_strings():
    """``$`` also matches before a trailing newline: every pattern under server_ext is used whole."""
    import re

    top = Path(__file__).resolve().parents[1] / "server_ext"
    for source in top.rglob("*.py"):
        text = source.read_text()
        assert not re.search(r"""re\.compile\(r?["'][^"']*\$["']""", text), source
        assert not re.search(r"_RE\.(match|search)\(", text), source
