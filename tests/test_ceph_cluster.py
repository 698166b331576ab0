"""The single-node Ceph launcher: it starts real daemons, RGW behaves like production RGW, and
``stop()`` / a failed start leave no daemon and no folder behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import botocore.exceptions
import pytest
from valeria_platform.ceph import CephCluster, CephError, CephStartError
from valeria_platform.procs import process_ended

from tests.fixtures.leaks import processes_under

pytestmark = pytest.mark.ceph


def _alive(pid: int) -> bool:
    return not process_ended(pid)


def _processes_mentioning(text: str) -> list[int]:
    """Live processes with ``text`` in their command line (our daemons name their ceph.conf)."""
    return [p.pid for p in processes_under(text)]


def _failed_start(cluster: CephCluster) -> str:
    """The message of the CephStartError that ``cluster.start()`` must raise (stopped after)."""
    try:
        with pytest.raises(CephStartError) as err:
            cluster.start()
    finally:
        cluster.stop()
    return str(err.value)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_daemons_run_and_report_memory(ceph_cluster: CephCluster) -> None:
    assert set(ceph_cluster.pids) == {"mon.a", "osd.0", "client.rgw.a"}
    assert all(_alive(pid) for pid in ceph_cluster.pids.values())
    rss = ceph_cluster.rss_bytes()
    assert set(rss) == set(ceph_cluster.pids) and all(v > 0 for v in rss.values())
    print(
        f"ceph start {ceph_cluster.start_seconds:.2f} s, RSS "
        + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in rss.items())
        + f", total {sum(rss.values()) / 2**20:.0f} MiB"
    )


def test_https_is_verified_against_the_generated_ca(ceph_cluster: CephCluster) -> None:
    ctx = ssl.create_default_context(cafile=ceph_cluster.ca_bundle)
    with urllib.request.urlopen(ceph_cluster.https_endpoint, context=ctx, timeout=10) as resp:
        assert resp.status == 200  # anonymous ListBuckets: an empty list
    # Without the CA the certificate is not trusted: TLS is real, not switched off.
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(ceph_cluster.https_endpoint, context=ssl.create_default_context(), timeout=10)
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    with urllib.request.urlopen(ceph_cluster.http_endpoint, timeout=10) as resp:  # the plain-HTTP side
        assert resp.status == 200
    site = ceph_cluster.site()
    assert site.kind == "ceph" and site.endpoint == ceph_cluster.https_endpoint
    assert site.ca_bundle == ceph_cluster.ca_bundle


def test_list_buckets_shows_only_owned_buckets(ceph_cluster: CephCluster) -> None:
    site = ceph_cluster.site()
    owner, other = _name("owner"), _name("other")
    bucket = _name("own")
    site.client(owner).create_bucket(Bucket=bucket)
    site.client(other).create_bucket(Bucket=_name("theirs"))
    names = [b["Name"] for b in site.client(owner).list_buckets()["Buckets"]]
    assert names == [bucket]


def test_read_only_share_by_bucket_policy(ceph_cluster: CephCluster) -> None:
    site = ceph_cluster.site()
    owner, reader, stranger = _name("owner"), _name("reader"), _name("stranger")
    bucket = _name("shared")
    owner_s3 = site.client(owner)
    owner_s3.create_bucket(Bucket=bucket)
    owner_s3.put_object(Bucket=bucket, Key="data/a.csv", Body=b"x,y\n1,2\n")
    ceph_cluster.share_read_only(owner, bucket, reader)

    reader_s3 = site.client(reader)
    # RGW does not list a bucket shared by policy: discovery needs a configured list and a probe.
    assert reader_s3.list_buckets()["Buckets"] == []
    keys = [o["Key"] for o in reader_s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["data/a.csv"]
    assert reader_s3.get_object(Bucket=bucket, Key="data/a.csv")["Body"].read() == b"x,y\n1,2\n"
    with pytest.raises(botocore.exceptions.ClientError) as err:
        reader_s3.put_object(Bucket=bucket, Key="data/b.csv", Body=b"no")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(botocore.exceptions.ClientError) as err:
        reader_s3.delete_object(Bucket=bucket, Key="data/a.csv")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(botocore.exceptions.ClientError) as err:
        site.client(stranger).list_objects_v2(Bucket=bucket)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    keys = [o["Key"] for o in owner_s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["data/a.csv"]


def test_create_user_is_idempotent_and_keys_work(ceph_cluster: CephCluster) -> None:
    name = _name("user")
    first = ceph_cluster.create_user(name)
    assert ceph_cluster.create_user(name) == first
    info = json.loads(ceph_cluster.admin("user", "info", "--uid", name))
    assert info["keys"][0]["access_key"] == first.access_key
    assert ceph_cluster.site().client(name).list_buckets()["Buckets"] == []


def test_failed_start_raises_with_logs_and_leaves_nothing(tmp_path) -> None:
    workdir = tmp_path / "broken"
    # an OSD data folder that cannot be created: ``ceph-osd --mkfs`` fails after the monitor is up
    message = _failed_start(
        CephCluster(workdir, extra_conf={"osd": {"osd data": "/proc/valeria-no-such-dir/osd"}})
    )
    assert "ceph-osd" in message and "failed" in message
    assert "mon.a.log" in message  # the tail of the monitor's log travels with the error
    assert _processes_mentioning(str(workdir)) == []
    assert not workdir.exists()


def test_non_empty_workdir_is_refused(tmp_path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(CephStartError, match="not empty"):
        CephCluster(tmp_path).start()
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_cli_starts_prints_json_and_stops_everything_on_sigterm(tmp_path) -> None:
    workdir = tmp_path / "cli"
    proc = subprocess.Popen(
        [sys.executable, "-m", "valeria_platform.ceph", "--workdir", str(workdir), "--user", "alice"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read().decode() if proc.stderr else ""
        info = json.loads(line)
        assert info["endpoint"].startswith("https://127.0.0.1:")
        assert os.path.exists(info["ca_bundle"])
        assert set(info["users"]) == {"alice"}
        pids = list(info["pids"].values())
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        print(f"ceph stop {time.monotonic() - t0:.1f} s")
        assert not any(_alive(p) for p in pids)
        assert not workdir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_objects_belong_to_their_writer_in_a_shared_bucket(ceph_cluster: CephCluster) -> None:
    """RGW 16 has no bucket-owner-enforced ownership (what docs/ceph-rgw.md tells admins about).

    A collaborator's plain write into a bucket shared read-write is unreadable by the bucket's
    owner; ``ACL=bucket-owner-full-control`` (what the extension sends) or naming the owner in the
    bucket policy makes it readable.
    """
    site = ceph_cluster.site()
    owner, writer = _name("owner"), _name("writer")
    plain_bucket, owner_named = _name("rw"), _name("rw-owner-named")
    actions = ["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    for bucket, principals in ((plain_bucket, [writer]), (owner_named, [writer, owner])):
        site.client(owner).create_bucket(Bucket=bucket)
        ceph_cluster.set_bucket_policy(owner, bucket, {
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": [f"arn:aws:iam:::user/{p}" for p in principals]},
                "Action": actions,
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }],
        })  # fmt: skip
    w, o = site.client(writer), site.client(owner)
    w.put_object(Bucket=plain_bucket, Key="plain.txt", Body=b"1")
    w.put_object(Bucket=plain_bucket, Key="acl.txt", Body=b"2", ACL="bucket-owner-full-control")
    w.put_object(Bucket=owner_named, Key="plain.txt", Body=b"3")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        o.get_object(Bucket=plain_bucket, Key="plain.txt")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert o.get_object(Bucket=plain_bucket, Key="acl.txt")["Body"].read() == b"2"
    assert o.get_object(Bucket=owner_named, Key="plain.txt")["Body"].read() == b"3"


def test_a_failed_admin_command_names_it_without_the_secret_key(ceph_cluster: CephCluster) -> None:
    name = _name("dup")
    ceph_cluster.create_user(name)
    secret = "Sup3rSecretValueThatMustNotLeak0123456789"
    with pytest.raises(CephError) as err:
        ceph_cluster.admin(
            "user", "create", "--uid", name, "--display-name", name,
            "--access-key", "AKDIFFERENT000000000", "--secret-key", secret,
        )  # fmt: skip
    assert "user create" in str(err.value) and "exists" in str(err.value)
    assert secret not in str(err.value) and "--secret-key ***" in str(err.value)


def test_a_port_taken_by_another_process_fails_fast_and_says_so(tmp_path) -> None:
    """An RGW port in use: radosgw exits at once and the start says why instead of timing out
    (a clash on ports the launcher picked itself is retried once on fresh ports)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = _failed_start(
            CephCluster(
                tmp_path / "clash",
                extra_conf={"client.rgw.a": {"rgw frontends": f"beast endpoint=127.0.0.1:{port}"}},
                start_timeout=60,
            )
        )
    assert "client.rgw.a exited" in message and "Address already in use" in message
    assert "client.rgw.a.log" in message
    assert _processes_mentioning(str(tmp_path / "clash")) == []
