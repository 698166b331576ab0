"""The JupyterLab extension's endpoint (``/api/valeria/datalake``) and ``here()``, over real HTTP.

A real jupyter-server with our extension against moto (per-user IAM) and Ceph RGW. On Ceph,
ListBuckets lists owned buckets only, so a bucket shared by policy and missing from the admin's
list is the real case of "Add a shared bucket…"; moto lists every bucket, so there it is found
without being added.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from valeria_datalake import DatalakeContentsManager
from valeria_datalake.sessions import notebook_location

from tests.fixtures.s3 import (
    OTHER,
    OWN_BUCKET,
    PRIVATE,
    SHARED_RO,
    SHARED_RW,
    USER,
    World,
    datalake_server_config,
    on_server_loop,
    share_bucket,
)


@pytest.fixture
def buckets_file(tmp_path):
    return tmp_path / "home-config" / "valeria" / "shared-buckets.json"


@pytest.fixture
def jp_server_config(world: World, tmp_path, monkeypatch, buckets_file):
    return datalake_server_config(world.site, tmp_path, monkeypatch, user_buckets_file=str(buckets_file))


@pytest.fixture
def lab(jp_fetch):
    async def call(method: str, *parts: str, body: object = None) -> tuple[int, dict]:
        kwargs: dict = {"method": method, "raise_error": False}
        if body is not None:
            kwargs["body"] = json.dumps(body)
        r = await jp_fetch("api", "valeria", "datalake", *parts, **kwargs)
        text = r.body.decode() if r.body else ""
        return r.code, (json.loads(text) if text else {})

    return call


def _secrets(world: World) -> list[str]:
    return [world.site.user(n).secret_key for n in (USER, OTHER)] + [
        world.site.user(n).access_key for n in (USER, OTHER)
    ]


@on_server_loop
async def test_state_lists_buckets_writability_and_no_credentials(lab, jp_fetch, world):
    code, state = await lab("GET")
    assert code == 200, state
    assert state["prefix"] == "datalake_" and state["error"] is None
    got = {b["bucket"]: (b["folder"], b["writable"], b["source"]) for b in state["buckets"]}
    assert got[OWN_BUCKET] == (f"datalake_{OWN_BUCKET}", True, "own")
    assert got[SHARED_RO] == (f"datalake_{SHARED_RO}", False, "admin")
    assert got[SHARED_RW] == (f"datalake_{SHARED_RW}", True, "admin")
    assert PRIVATE not in got
    r = await jp_fetch("api", "valeria", "datalake", method="GET")
    for secret in _secrets(world):
        assert secret not in r.body.decode()


@on_server_loop
async def test_state_needs_authentication(jp_fetch, jp_serverapp, http_server_client, jp_base_url):
    r = await http_server_client.fetch(f"{jp_base_url}api/valeria/datalake", raise_error=False)
    assert r.code == 403


@on_server_loop
@pytest.mark.parametrize("bad", ["", "ab", "has space", "../etc", "x" * 256, "-leading", "a/b"])
async def test_a_bad_name_is_a_400_and_changes_nothing(lab, buckets_file, bad):
    code, body = await lab("POST", "shared-buckets", body={"bucket": bad})
    assert code == 400, body
    assert "Not a valid bucket name" in body["message"]
    assert not buckets_file.exists()


@on_server_loop
async def test_an_unreadable_bucket_is_a_404_and_changes_nothing(lab, buckets_file, world):
    for name in (PRIVATE, f"no-such-{uuid.uuid4().hex[:8]}"):
        code, body = await lab("POST", "shared-buckets", body={"bucket": name})
        assert code == 404, body
        assert body["message"] == f"No such bucket, or your credentials cannot read it: {name}"
    assert not buckets_file.exists()
    code, body = await lab("DELETE", "shared-buckets", PRIVATE)
    assert code == 404


@on_server_loop
async def test_a_bucket_that_stops_being_readable_is_hidden_but_kept_marked(lab, api, buckets_file):
    # the user's list names a bucket they cannot read (access revoked since it was added)
    buckets_file.parent.mkdir(parents=True)
    buckets_file.write_text(json.dumps({"version": 1, "buckets": [PRIVATE]}))
    code, state = await lab("GET")
    assert code == 200
    assert state["user_buckets"] == [{"bucket": PRIVATE, "readable": False}]
    assert PRIVATE not in {b["bucket"] for b in state["buckets"]}
    code, root = await api("GET", "")
    assert f"datalake_{PRIVATE}" not in {m["name"] for m in root["content"]}
    assert json.loads(buckets_file.read_text())["buckets"] == [PRIVATE]  # still there
    code, _ = await lab("DELETE", "shared-buckets", PRIVATE)
    assert code == 204
    assert json.loads(buckets_file.read_text())["buckets"] == []


@on_server_loop
async def test_a_corrupt_list_is_never_overwritten(lab, buckets_file):
    buckets_file.parent.mkdir(parents=True)
    buckets_file.write_text("{not json")
    code, state = await lab("GET")
    assert code == 200 and state["user_buckets"] == []
    code, body = await lab("POST", "shared-buckets", body={"bucket": SHARED_RO})
    assert code == 200 and body["added"] is False  # already shown (admin's list)
    code, body = await lab("DELETE", "shared-buckets", SHARED_RO)
    assert code == 409 and str(buckets_file) in body["message"]
    assert buckets_file.read_text() == "{not json"


@pytest.mark.ceph
@on_server_loop
async def test_a_bucket_shared_by_policy_appears_once_added_and_survives_a_restart(
    lab, api, buckets_file, world, tmp_path
):
    if world.site.kind != "ceph":
        pytest.skip("moto's ListBuckets lists every bucket: nothing to add there")
    bucket = f"bob-gift-{uuid.uuid4().hex[:6]}"
    world.site.client(OTHER).create_bucket(Bucket=bucket)
    world.site.client(OTHER).put_object(Bucket=bucket, Key="gift.csv", Body=b"a\n1\n")
    share_bucket(world.site, OTHER, bucket, USER, write=False)
    folder = f"datalake_{bucket}"

    code, root = await api("GET", "")
    assert folder not in {m["name"] for m in root["content"]}  # not in ListBuckets, not in the admin list

    code, body = await lab("POST", "shared-buckets", body={"bucket": bucket})
    assert code == 201, body
    assert body == {"bucket": bucket, "added": True, "folder": folder, "writable": False}
    assert json.loads(buckets_file.read_text())["buckets"] == [bucket]
    code, root = await api("GET", "")
    assert {m["name"]: m["writable"] for m in root["content"]}[folder] is False
    code, state = await lab("GET")
    assert {b["bucket"]: b["source"] for b in state["buckets"]}[bucket] == "user"
    code, listing = await api("GET", folder)
    assert code == 200 and [m["name"] for m in listing["content"]] == ["gift.csv"]

    # a new server process (here: a new manager on the same home) reads the same file
    cm = DatalakeContentsManager(root_dir=str(tmp_path), user_buckets_file=str(buckets_file))
    try:
        assert folder in {m["name"] for m in (await cm.get(""))["content"]}
    finally:
        await cm.close()

    code, _ = await lab("DELETE", "shared-buckets", bucket)
    assert code == 204
    code, root = await api("GET", "")
    assert folder not in {m["name"] for m in root["content"]}


# -- here() -------------------------------------------------------------------------------------------


def test_kernels_learn_where_their_notebook_is(jp_serverapp, tmp_path):
    cm = jp_serverapp.contents_manager
    sm = jp_serverapp.session_manager
    env = sm.get_kernel_env(f"datalake_{OWN_BUCKET}/a b/é=1/nb.ipynb", "nb.ipynb")
    assert env["VALERIA_NOTEBOOK"] == f"s3://{OWN_BUCKET}/a b/é=1/nb.ipynb"
    # what jupyter-server alone says: the name joined to home, which is no place to read files from
    assert env["JPY_SESSION_NAME"] == os.path.join(cm.root_dir, "nb.ipynb")
    env = sm.get_kernel_env("scratch/run/nb.ipynb", "nb.ipynb")
    assert env["VALERIA_NOTEBOOK"] == os.path.join(cm.scratch.root_dir, "run/nb.ipynb")
    env = sm.get_kernel_env("proj/nb.ipynb", "nb.ipynb")
    assert env["VALERIA_NOTEBOOK"] == os.path.join(cm.root_dir, "proj/nb.ipynb")
    assert notebook_location(object(), "x.ipynb") is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"VALERIA_NOTEBOOK": "s3://b/a b/nb.ipynb"}, "s3://b/a b/data.csv"),
        ({"VALERIA_NOTEBOOK": "s3://b/nb.ipynb"}, "s3://b/data.csv"),
        ({"VALERIA_NOTEBOOK": "/scratch/alice/run/nb.ipynb"}, "/scratch/alice/run/data.csv"),
        ({"JPY_SESSION_NAME": "/home/alice/proj/nb.ipynb"}, "/home/alice/proj/data.csv"),
    ],
)
def test_here_in_a_kernel(env, expected, tmp_path):
    code = "import valeria_datalake; print(valeria_datalake.here('data.csv')); print(valeria_datalake.here())"
    clean = {k: v for k, v in os.environ.items() if k not in ("VALERIA_NOTEBOOK", "JPY_SESSION_NAME")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout.splitlines()
    assert out[0] == expected
    assert out[1] == expected[: -len("data.csv")].rstrip("/") or out[1] == expected[: -len("data.csv")]
