"""The notebook side against real Ceph RGW over HTTPS (CA bundle verified), as production runs it.

A real jupyter-server with ``DatalakeContentsManager`` is given the hub's S3 environment for one
user; the contents API is driven the way JupyterLab drives it; what landed in RGW is checked with
the owner's own client. Users and buckets are fresh for the session, so ListBuckets answers are
exact: on RGW a user's ListBuckets holds only the buckets they own, and a bucket shared with them
by bucket policy must come from the configured shared list and be probed.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from valeria_platform.ceph import CephCluster
from valeria_platform.jupyterlab import upload_models
from valeria_platform.s3site import S3Site

from tests.fixtures.s3 import NOTEBOOK, datalake_server_config, on_server_loop

pytestmark = pytest.mark.ceph

CHUNK = 1 << 20  # JupyterLab uploads 1 MiB of raw bytes per chunk
PART = 5 << 20  # S3's smallest part: a few chunks make a multipart upload


@dataclass(frozen=True)
class Names:
    owner: str  # owns every bucket below
    reader: str  # gets the read-only and the read-write share
    own: str  # owner's bucket, not shared
    ro: str  # shared with reader read-only (bucket policy)
    rw: str  # shared with reader read-write (bucket policy)
    private: str  # owner's, not shared with anyone
    reader_own: str  # reader's own bucket

    @property
    def put_only(self) -> str:
        """Shared with reader by a policy granting PutObject but not AbortMultipartUpload (made by
        the ``put_only_share`` fixture, for the tests that ask for it)."""
        return f"{self.owner}-put"

    @property
    def shared(self) -> list[str]:
        # what the hub would hand to every notebook: it also names buckets this user cannot read
        return [self.ro, self.rw, self.private, f"no-such-bucket-{self.ro}"]


@pytest.fixture(scope="module")
def names(ceph_cluster: CephCluster, ceph_site: S3Site) -> Names:
    s = uuid.uuid4().hex[:6]
    n = Names(
        owner=f"alice-{s}",
        reader=f"bob-{s}",
        own=f"alice-{s}-own",
        ro=f"alice-{s}-ro",
        rw=f"alice-{s}-rw",
        private=f"alice-{s}-private",
        reader_own=f"bob-{s}-own",
    )
    owner = ceph_site.client(n.owner)
    for bucket in (n.own, n.ro, n.rw, n.private):
        owner.create_bucket(Bucket=bucket)
    ceph_site.client(n.reader).create_bucket(Bucket=n.reader_own)
    owner.put_object(Bucket=n.ro, Key="readme.txt", Body=b"read me\n")
    owner.put_object(Bucket=n.ro, Key="data/a.csv", Body=b"a\n1\n")
    owner.put_object(Bucket=n.rw, Key="readme.txt", Body=b"write here\n")
    owner.put_object(Bucket=n.private, Key="secret.txt", Body=b"owner only\n")
    ceph_cluster.share_read_only(n.owner, n.ro, n.reader)
    # the read-write share as docs/ceph-rgw.md tells admins to write it
    reader = f"arn:aws:iam:::user/{n.reader}"
    ceph_cluster.set_bucket_policy(n.owner, n.rw, {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": [reader]},
             "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
             "Resource": [f"arn:aws:s3:::{n.rw}"]},
            {"Effect": "Allow", "Principal": {"AWS": [reader]},
             "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts"],
             "Resource": [f"arn:aws:s3:::{n.rw}/*"]},
        ],
    })  # fmt: skip
    return n


@pytest.fixture
def datalake_user() -> str:
    """Whose notebook server the test talks to: a field of :class:`Names` (parametrize to change)."""
    return "owner"


@pytest.fixture
def extra_shared() -> list[str]:
    """Fields of :class:`Names` added to the shared list (parametrize to change)."""
    return []


@pytest.fixture
def jp_server_config(
    ceph_site: S3Site, names: Names, datalake_user: str, extra_shared: list[str], tmp_path, monkeypatch
):
    user = getattr(names, datalake_user)
    shared = [*names.shared, *(getattr(names, f) for f in extra_shared)]
    return datalake_server_config(
        ceph_site, tmp_path, monkeypatch, user=user, shared_buckets=shared, upload_part_size=PART
    )


@pytest.fixture(scope="module")
def put_only_share(ceph_cluster: CephCluster, ceph_site: S3Site, names: Names) -> str:
    """A bucket shared with reader by a policy granting only ListBucket, GetObject and PutObject."""
    bucket = names.put_only
    ceph_site.client(names.owner).create_bucket(Bucket=bucket)
    ceph_site.client(names.owner).put_object(Bucket=bucket, Key="readme.txt", Body=b"put only\n")
    reader = f"arn:aws:iam:::user/{names.reader}"
    ceph_cluster.set_bucket_policy(names.owner, bucket, {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": [reader]}, "Action": ["s3:ListBucket"],
             "Resource": [f"arn:aws:s3:::{bucket}"]},
            {"Effect": "Allow", "Principal": {"AWS": [reader]}, "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        ],
    })  # fmt: skip
    return bucket


@pytest.fixture
def api(jp_fetch):
    async def call(method: str, path: str, body: object = None, **params: object) -> tuple[int, dict]:
        kwargs: dict = {"method": method, "raise_error": False}
        if body is not None or method in ("POST", "PUT", "PATCH"):
            kwargs["body"] = json.dumps(body if body is not None else {})
        r = await jp_fetch("api", "contents", path, params={k: str(v) for k, v in params.items()}, **kwargs)
        text = r.body.decode() if r.body else ""
        try:
            return r.code, (json.loads(text) if text else {})
        except ValueError:
            return r.code, {"raw": text}

    return call


def keys(site: S3Site, user: str, bucket: str, prefix: str = "") -> dict[str, bytes]:
    client = site.client(user)
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def pending_uploads(site: S3Site, user: str, bucket: str) -> list[str]:
    return [u["Key"] for u in site.client(user).list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


async def upload_in_chunks(api, path: str, data: bytes) -> list[int]:
    """Upload the way JupyterLab does: base64 chunks numbered 1..n, the last one -1."""
    codes = []
    for model in upload_models(path, data, CHUNK):
        code, _ = await api("PUT", path, model)
        codes.append(code)
        if code >= 400:
            break
    return codes


# -- discovery as Ceph does it ---------------------------------------------------------------------


@on_server_loop
async def test_owner_sees_owned_buckets_from_list_buckets(api, names: Names):
    code, root = await api("GET", "")
    assert code == 200
    buckets = {m["name"]: m for m in root["content"] if m["name"].startswith("datalake_")}
    # own buckets (ListBuckets) + the shared list entries the owner can read (they are hers too)
    assert set(buckets) == {f"datalake_{b}" for b in (names.own, names.ro, names.rw, names.private)}
    assert all(m["writable"] is True for m in buckets.values())


@pytest.mark.parametrize("datalake_user", ["reader"])
@on_server_loop
async def test_reader_sees_shared_buckets_probed_with_their_access(api, names: Names):
    code, root = await api("GET", "")
    assert code == 200
    buckets = {m["name"]: m["writable"] for m in root["content"] if m["name"].startswith("datalake_")}
    assert buckets == {
        f"datalake_{names.reader_own}": True,  # from ListBuckets
        f"datalake_{names.ro}": False,  # from the shared list, probed: read-only by policy
        f"datalake_{names.rw}": True,  # from the shared list, probed: writable by policy
    }  # the private bucket and the missing one, though listed as shared, are not shown
    code, listing = await api("GET", f"datalake_{names.ro}")
    assert code == 200 and {m["name"] for m in listing["content"]} == {"readme.txt", "data"}
    code, m = await api("GET", f"datalake_{names.ro}/data/a.csv", type="file", format="text")
    assert code == 200 and m["content"] == "a\n1\n"
    code, _ = await api("GET", f"datalake_{names.ro}/no-such-file.txt")
    assert code == 404
    code, _ = await api("GET", f"datalake_{names.private}")
    assert code == 404
    code, _ = await api("GET", f"datalake_{names.private}/secret.txt")
    assert code == 404


@pytest.mark.parametrize("datalake_user", ["reader"])
@on_server_loop
async def test_read_only_share_refuses_every_write_and_nothing_is_written(
    api, names: Names, ceph_site: S3Site
):
    ro = f"datalake_{names.ro}"
    before = keys(ceph_site, names.owner, names.ro)
    attempts = [
        await api("PUT", f"{ro}/new.txt", {"type": "file", "format": "text", "content": "no"}),
        await api("PUT", f"{ro}/readme.txt", {"type": "file", "format": "text", "content": "overwrite"}),
        await api("PUT", f"{ro}/nb.ipynb", {"type": "notebook", "content": NOTEBOOK}),
        await api("PUT", f"{ro}/newdir", {"type": "directory"}),
        await api("POST", ro, {"type": "file", "ext": ".txt"}),
        await api("PATCH", f"{ro}/readme.txt", {"path": f"{ro}/renamed.txt"}),
        await api("PATCH", f"{ro}/data", {"path": f"{ro}/data2"}),
        await api("DELETE", f"{ro}/readme.txt"),
        await api("DELETE", f"{ro}/data"),
        await api("POST", f"{ro}/readme.txt/checkpoints"),
    ]
    for code, body in attempts:
        assert 400 <= code < 500, (code, body)
    codes = await upload_in_chunks(api, f"{ro}/big.bin", os.urandom(PART + 2 * CHUNK + 10))
    assert 400 <= codes[-1] < 500, codes
    # moving a file out of the read-only bucket must not delete it either
    code, _ = await api("PATCH", f"{ro}/readme.txt", {"path": "stolen-readme.txt"})
    assert 400 <= code < 500
    assert keys(ceph_site, names.owner, names.ro) == before
    assert pending_uploads(ceph_site, names.owner, names.ro) == []


@pytest.mark.parametrize("datalake_user", ["reader"])
@on_server_loop
async def test_file_written_to_a_read_write_share_stays_readable_by_the_bucket_owner(
    api, names: Names, ceph_site: S3Site
):
    """RGW has no bucket-owner-enforced ownership: an object belongs to its writer, and the owner's
    own bucket policy does not name the owner. Unless writes carry ``bucket-owner-full-control``,
    the bucket's owner cannot read what a collaborator saved in their bucket."""
    rw = f"datalake_{names.rw}"
    d = f"from-reader-{uuid.uuid4().hex[:6]}"
    code, _ = await api("PUT", f"{rw}/{d}/note.txt", {"type": "file", "format": "text", "content": "hi"})
    assert code == 201
    code, _ = await api("PUT", f"{rw}/{d}/nb.ipynb", {"type": "notebook", "content": NOTEBOOK})
    assert code == 201
    data = os.urandom(PART + CHUNK + 5)  # a multipart upload (CreateMultipartUpload carries the ACL)
    assert (await upload_in_chunks(api, f"{rw}/{d}/big.bin", data))[-1] in (200, 201)
    code, _ = await api("POST", f"{rw}/{d}", {"copy_from": f"{rw}/readme.txt"})
    assert code == 201
    got = keys(ceph_site, names.owner, names.rw, f"{d}/")  # read as the bucket's owner
    assert got[f"{d}/note.txt"] == b"hi"
    assert "".join(json.loads(got[f"{d}/nb.ipynb"])["cells"][0]["source"]) == NOTEBOOK["cells"][0]["source"]
    assert got[f"{d}/big.bin"] == data
    assert b"write here\n" in got.values()


# -- the contents API over HTTPS RGW ---------------------------------------------------------------


@on_server_loop
async def test_notebook_save_and_checkpoint(api, names: Names, ceph_site: S3Site):
    own = f"datalake_{names.own}"
    path = f"{own}/work/analysis ü.ipynb"
    code, m = await api("PUT", path, {"type": "notebook", "content": NOTEBOOK})
    assert code == 201 and m["type"] == "notebook" and m["path"] == path
    code, cp = await api("POST", f"{path}/checkpoints")  # Ctrl+S: a save, then a checkpoint
    assert code == 201 and cp["id"]
    edited = json.loads(json.dumps(NOTEBOOK))
    edited["cells"][0]["source"] = "print('edited')"
    code, _ = await api("PUT", path, {"type": "notebook", "content": edited})
    assert code == 200
    code, m = await api("GET", path, content=1)
    assert code == 200 and m["content"]["cells"][0]["source"] == "print('edited')"
    stored = json.loads(keys(ceph_site, names.owner, names.own, "work/")["work/analysis ü.ipynb"])
    assert "".join(stored["cells"][0]["source"]) == "print('edited')"
    code, _ = await api("POST", f"{path}/checkpoints/{cp['id']}")  # restore
    assert code == 204
    code, m = await api("GET", path, content=1)
    assert m["content"]["cells"][0]["source"] == NOTEBOOK["cells"][0]["source"]


@on_server_loop
async def test_chunked_upload(api, names: Names, ceph_site: S3Site):
    own = f"datalake_{names.own}"
    data = os.urandom(2 * PART + 3 * CHUNK + 12345)  # 14 chunks (1..13, then -1): three parts
    codes = await upload_in_chunks(api, f"{own}/uploads/big data.bin", data)
    assert all(c in (200, 201) for c in codes) and len(codes) == 14, codes
    assert keys(ceph_site, names.owner, names.own, "uploads/") == {"uploads/big data.bin": data}
    head = ceph_site.client(names.owner).head_object(Bucket=names.own, Key="uploads/big data.bin")
    assert head["ETag"].endswith('-3"')  # really a multipart upload, over HTTPS RGW
    assert pending_uploads(ceph_site, names.owner, names.own) == []
    code, m = await api("GET", f"{own}/uploads/big data.bin", content=0)
    assert code == 200 and m["size"] == len(data)


@on_server_loop
async def test_folder_rename(api, names: Names, ceph_site: S3Site):
    own = f"datalake_{names.own}"
    d = f"proj-{uuid.uuid4().hex[:6]}"
    files = {
        "a.txt": b"a",
        "sub/b.csv": b"b,c\n",
        "sub/deeper/été résumé.txt": "é".encode(),
        "year=2024/part-0.parquet": os.urandom(1000),
    }
    for rel, body in files.items():
        code, _ = await api(
            "PUT",
            f"{own}/{d}/{rel}",
            {"type": "file", "format": "base64", "content": base64.b64encode(body).decode()},
        )
        assert code == 201, rel
    code, _ = await api("PUT", f"{own}/{d}/empty folder", {"type": "directory"})
    assert code == 201
    code, m = await api("PATCH", f"{own}/{d}", {"path": f"{own}/{d} renamed"})
    assert code == 200 and m["path"] == f"{own}/{d} renamed" and m["type"] == "directory"
    assert keys(ceph_site, names.owner, names.own, f"{d}/") == {}
    moved = keys(ceph_site, names.owner, names.own, f"{d} renamed/")
    assert {k: v for k, v in moved.items() if not k.endswith("/") and "/." not in k} == {
        f"{d} renamed/{rel}": body for rel, body in files.items()
    }
    code, listing = await api("GET", f"{own}/{d} renamed")
    assert {e["name"] for e in listing["content"]} == {"a.txt", "sub", "year=2024", "empty folder"}


@on_server_loop
async def test_odd_key_names_round_trip(api, names: Names, ceph_site: S3Site):
    """Characters that URL encoding, RGW's own decoding ('+' once meant a space) or XML listings
    could mangle: saved, listed, read and renamed through the API, checked with the owner's client."""
    own = f"datalake_{names.own}"
    d = f"odd-{uuid.uuid4().hex[:6]}"
    odd = ["a+b c.txt", "100% sure.txt", "semi;colon.txt", "tilde~.txt", "x=1&y=2.txt", "quote'.txt",
           "brackets [1] (2).txt", "ñandú 漢字.txt", "<lt>.txt"]  # fmt: skip
    for name in odd:
        code, m = await api("PUT", f"{own}/{d}/{name}", {"type": "file", "format": "text", "content": name})
        assert code == 201 and m["name"] == name, (name, code, m)
    code, listing = await api("GET", f"{own}/{d}")
    assert code == 200 and sorted(e["name"] for e in listing["content"]) == sorted(odd)
    for name in odd:
        code, m = await api("GET", f"{own}/{d}/{name}", type="file", format="text")
        assert code == 200 and m["content"] == name, name
    code, _ = await api("PATCH", f"{own}/{d}/a+b c.txt", {"path": f"{own}/{d}/renamed + 1.txt"})
    assert code == 200
    stored = keys(ceph_site, names.owner, names.own, f"{d}/")
    expected = {f"{d}/{n}": n.encode() for n in odd if n != "a+b c.txt"} | {
        f"{d}/renamed + 1.txt": b"a+b c.txt"
    }
    assert stored == expected


@on_server_loop
async def test_folder_beyond_one_listing_page(api, names: Names, ceph_site: S3Site):
    """RGW answers at most 1,000 keys per listing and per bulk delete: a 2,100-object folder is
    listed whole and deleted whole."""
    own = f"datalake_{names.own}"
    d = f"many-{uuid.uuid4().hex[:6]}"
    client = ceph_site.client(names.owner)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=names.own, Key=f"{d}/f-{i:05d}.txt", Body=b"x"),
                      range(2100)))  # fmt: skip
    code, listing = await api("GET", f"{own}/{d}")
    assert code == 200 and len(listing["content"]) == 2100
    assert {e["name"] for e in listing["content"]} == {f"f-{i:05d}.txt" for i in range(2100)}
    code, _ = await api("DELETE", f"{own}/{d}")
    assert code == 204
    assert client.list_objects_v2(Bucket=names.own, Prefix=f"{d}/")["KeyCount"] == 0


@pytest.mark.parametrize("datalake_user", ["reader"])
@pytest.mark.parametrize("extra_shared", [["put_only"]])
@on_server_loop
async def test_share_granting_put_object_without_abort_multipart_is_writable(
    api, names: Names, ceph_site: S3Site, put_only_share: str
):
    """The write probe's AbortMultipartUpload is refused by such a policy; its second probe, an
    empty UploadPart to a made-up upload id, answers NoSuchUpload because PutObject is granted."""
    code, root = await api("GET", "")
    assert code == 200
    buckets = {m["name"]: m["writable"] for m in root["content"] if m["name"].startswith("datalake_")}
    assert buckets[f"datalake_{put_only_share}"] is True
    assert buckets[f"datalake_{names.ro}"] is False  # the read-only share is still read-only
    # the probes wrote nothing
    assert keys(ceph_site, names.owner, put_only_share) == {"readme.txt": b"put only\n"}
    assert pending_uploads(ceph_site, names.owner, put_only_share) == []
    path = f"datalake_{put_only_share}/saved.txt"
    code, m = await api("PUT", path, {"type": "file", "format": "text", "content": "saved"})
    assert code == 201 and m["writable"] is True
    assert keys(ceph_site, names.owner, put_only_share)["saved.txt"] == b"saved"
