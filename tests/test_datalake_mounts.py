"""Checkpoints through ``checkpoints_class`` and jupyter-server's delete/rename template methods.

Runs on every S3 site (moto, and Ceph RGW when available), through a real jupyter-server.
"""

from __future__ import annotations

import json

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from tornado.httpclient import HTTPClientError

from tests.fixtures.s3 import OWN_BUCKET, World, datalake_server_config, on_server_loop

OWN = f"datalake_{OWN_BUCKET}"
CK = ".valeria_checkpoints/"


@pytest.fixture
def jp_server_config(world: World, tmp_path, monkeypatch):
    return datalake_server_config(world.site, tmp_path, monkeypatch)


def keys(world: World, prefix: str) -> set[str]:
    out = set()
    for page in (
        world.client("alice").get_paginator("list_objects_v2").paginate(Bucket=OWN_BUCKET, Prefix=prefix)
    ):
        out.update(o["Key"] for o in page.get("Contents", []))
    return out


async def checkpoint(jp_fetch, path: str) -> None:
    r = await jp_fetch("api", "contents", path, "checkpoints", method="POST", body="")
    assert r.code == 201


@on_server_loop
async def test_the_checkpoints_class_routes_to_each_mount(jp_serverapp):
    from valeria_datalake.mounts.checkpoints import DatalakeCheckpoints

    cm = jp_serverapp.contents_manager
    assert isinstance(cm.checkpoints, DatalakeCheckpoints)
    assert cm.checkpoints_class is DatalakeCheckpoints


@on_server_loop
async def test_renaming_a_bucket_file_moves_its_checkpoint_and_no_sibling(api, world, jp_fetch):
    d = world.unique("cksib")
    for name in ("nb", "nbx", "nb.d/inner"):  # names that start with "nb" must not follow "nb"
        await api("PUT", f"{OWN}/{d}/{name}", {"type": "file", "format": "text", "content": name})
        await checkpoint(jp_fetch, f"{OWN}/{d}/{name}")
    code, m = await api("PATCH", f"{OWN}/{d}/nb", {"path": f"{OWN}/{d}/renamed"})
    assert code == 200, m
    assert keys(world, f"{CK}{d}/") == {f"{CK}{d}/renamed", f"{CK}{d}/nbx", f"{CK}{d}/nb.d/inner"}
    code, _ = await api("DELETE", f"{OWN}/{d}/nbx")
    assert code == 204
    assert keys(world, f"{CK}{d}/") == {f"{CK}{d}/renamed", f"{CK}{d}/nb.d/inner"}
    r = await jp_fetch("api", "contents", f"{OWN}/{d}/renamed", "checkpoints", method="GET")
    assert [c["id"] for c in json.loads(r.body)] == ["checkpoint"]


@on_server_loop
async def test_restoring_a_missing_checkpoint_is_a_404_in_home_too(api, world, jp_fetch, jp_root_dir):
    d = world.unique("cknone")
    (jp_root_dir / d).mkdir()
    for path in (f"{d}/f.txt", f"{OWN}/{d}/f.txt"):
        await api("PUT", path, {"type": "file", "format": "text", "content": "x"})
        with pytest.raises(HTTPClientError) as e:  # jupyter-server's own file checkpoints: 500
            await jp_fetch("api", "contents", path, "checkpoints", "checkpoint", method="POST", body="")
        assert e.value.code == 404, path
