"""Huge bucket folders: the listing stops at ``listing_limit`` entries and says so.

A folder of a million objects must open without hanging the server or the browser: the listing
costs ceil(limit/1000) ListObjectsV2 calls whatever the folder holds, and both the directory
model's ``message`` and a read-only pseudo-file tell the user how to reach the rest. Runs on
moto (request counts); the 1,000,000-key measurement is in ``bench/huge_folder.py``.
"""

from __future__ import annotations

import math

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from valeria_datalake.s3.models import TRUNCATION_NOTE

from tests.fixtures.s3 import BIG_COUNT, World, datalake_server_config, on_server_loop

LIMIT = 1500  # crosses the 2,500-object fixture folder; not a multiple of 1,000 on purpose


@pytest.fixture
def jp_server_config(request, moto_world: World, tmp_path, monkeypatch):
    overrides = getattr(request, "param", {"listing_limit": LIMIT})
    return datalake_server_config(moto_world.site, tmp_path, monkeypatch, **overrides)


def ops(world: World) -> dict[str, int]:
    return world.site.counter.stats()["ops"]


@on_server_loop
async def test_a_folder_beyond_the_limit_lists_the_limit_and_says_so(api, moto_world, big_bucket):
    folder = f"datalake_{big_bucket}/many"
    await api("GET", "")
    moto_world.site.counter.reset()
    code, m = await api("GET", folder)
    assert code == 200
    assert ops(moto_world) == {"ListObjectsV2": math.ceil(LIMIT / 1000)}
    real = [e for e in m["content"] if e["name"] != TRUNCATION_NOTE]
    assert len(real) == LIMIT
    assert [e["name"] for e in real] == [f"obj-{i:05d}.txt" for i in range(LIMIT)]  # key order
    assert f"more than {LIMIT:,} entries" in m["message"]
    assert f"s3://{big_bucket}/many/" in m["message"]

    note = next(e for e in m["content"] if e["name"] == TRUNCATION_NOTE)
    assert (
        note["type"] == "file" and note["writable"] is False and note["path"] == f"{folder}/{TRUNCATION_NOTE}"
    )
    # JupyterLab opens the pseudo-file like any file: it reads the same sentence, and no S3 object
    code, opened = await api("GET", note["path"], type="file", content=1)
    assert code == 200 and opened["content"] == m["message"] and opened["size"] == note["size"]
    code, _ = await api("GET", note["path"])  # no type, as JupyterLab's first open
    assert code == 200
    assert not any(k.endswith(TRUNCATION_NOTE) for k in _keys(moto_world, big_bucket, "many/"))

    # the poll within the cache TTL costs nothing, and stays truncated
    moto_world.site.counter.reset()
    code, again = await api("GET", folder)
    assert code == 200 and ops(moto_world) == {} and again["message"] == m["message"]


@pytest.mark.parametrize("jp_server_config", [{"listing_limit": BIG_COUNT}], indirect=True)
@on_server_loop
async def test_a_folder_of_exactly_the_limit_is_complete(api, moto_world, big_bucket):
    await api("GET", "")
    moto_world.site.counter.reset()
    code, m = await api("GET", f"datalake_{big_bucket}/many")
    assert code == 200 and len(m["content"]) == BIG_COUNT and "message" not in m
    assert ops(moto_world) == {"ListObjectsV2": math.ceil(BIG_COUNT / 1000)}


@pytest.mark.parametrize(
    "jp_server_config",
    [{"listing_limit": 1000, "listing_limit_note": False, "s3_list_threads": 0}],
    indirect=True,
)
@on_server_loop
async def test_limit_on_the_event_loop_path_and_without_the_pseudo_file(api, moto_world, big_bucket):
    await api("GET", "")
    moto_world.site.counter.reset()
    code, m = await api("GET", f"datalake_{big_bucket}/many")
    assert code == 200 and ops(moto_world) == {"ListObjectsV2": 1}
    assert len(m["content"]) == 1000 and "more than 1,000 entries" in m["message"]
    assert TRUNCATION_NOTE not in {e["name"] for e in m["content"]}
    code, _ = await api("GET", f"datalake_{big_bucket}/many/{TRUNCATION_NOTE}", type="file")
    assert code == 404


def _keys(world: World, bucket: str, prefix: str) -> set[str]:
    out = set()
    for page in world.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update(o["Key"] for o in page.get("Contents", []))
    return out
