"""Opening a bucket folder of up to 1,000,000 objects: listing time, S3 requests and server RSS.

moto runs in this process (a thread), so the objects are injected straight into its backend
(light ``FakeKey`` records, seconds for a million) instead of a million PUTs. Our jupyter-server
runs as a subprocess (``bench/run.py``'s ``Server``); each folder is listed once the way
JupyterLab opens it (``GET /api/contents/<folder>?content=1``), with the server's RSS sampled
every 10 ms. The listing stops at ``DatalakeContentsManager.listing_limit`` (10,000): the time
and memory should not grow with the folder.

Usage: ``python bench/huge_folder.py [--sizes 10000,100000,1000000]`` (``make bench`` runs it).
Prints a table and writes ``bench/work/huge_folder.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import WORK, Server, Watch, s3_client
from valeria_platform.moto_s3 import MotoS3

MiB = 1024 * 1024


def inject_keys(bucket_name: str, prefix: str, count: int) -> float:
    """Put ``count`` 1-byte objects under ``prefix`` into moto's in-process backend; seconds taken.

    Each key is a ``FakeKey`` built without its constructor (which opens a spooled temporary
    file per object) and holding only what a listing reads.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import FakeKey, s3_backends

    bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket_name]
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    t0 = time.perf_counter()
    for i in range(count):
        key = object.__new__(FakeKey)
        name = f"{prefix}obj-{i:07d}.txt"
        key.__dict__.update(
            name=name,
            _etag="9dd4e461268c8034f5c8564e155c67a6",
            last_modified=now,
            contentsize=1,
            _storage_class="STANDARD",
            checksum_algorithm=None,
        )
        bucket.keys[name] = key
    return time.perf_counter() - t0


class PatientServer(Server):
    """Our server, waiting for moto: one ListObjectsV2 page of a million-key bucket takes moto
    longer than the default 30 s read timeout (it scans and sorts the whole bucket per page)."""

    def __init__(self, endpoint: str) -> None:
        super().__init__("ours", endpoint)
        self.dir = WORK / "ours-huge-folder"  # not run.py's folder: both may run at once

    def config(self) -> dict:
        cfg = super().config()
        cfg["DatalakeContentsManager"] = {"s3_read_timeout": 900.0}
        return cfg


def list_folder(server: Server, moto: MotoS3, api_path: str) -> dict:
    server.api("GET", "")  # discovery outside the measurement, as JupyterLab's first call
    moto.reset()
    with Watch(server) as watch:
        t0 = time.perf_counter()
        resp = server.api("GET", api_path, content=1, timeout=1800)
        wall = time.perf_counter() - t0
    model = resp.json() if resp.status_code == 200 else {}
    ops = moto.stats()["ops"]
    return {
        "status": resp.status_code,
        "wall": wall,
        "entries": len(model.get("content") or []),
        "truncated": "message" in model,
        "lists": ops.get("ListObjectsV2", 0),
        "requests": sum(ops.values()),
        "rss_base": watch.base,
        "rss_delta": watch.peak - watch.base,
        "bytes": len(resp.content),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated folder sizes")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    with MotoS3() as moto:
        client = s3_client(moto.endpoint)
        injected = {}
        for n in sizes:  # one bucket per size: moto scans a whole bucket for every page
            client.create_bucket(Bucket=f"huge-{n}")
            injected[n] = inject_keys(f"huge-{n}", "folder/", n)
            print(f"injected {n:,} keys in {injected[n]:.1f} s", flush=True)
        server = PatientServer(moto.endpoint)
        try:
            server.start()
            for n in sizes:
                r = list_folder(server, moto, f"datalake_huge-{n}/folder")
                rows.append((n, r))
                print(
                    f"  {n:>9,} objects: HTTP {r['status']} {r['wall']:6.2f} s, {r['entries']:,} entries "
                    f"(truncated: {r['truncated']}), {r['lists']} ListObjectsV2, "
                    f"server RSS {r['rss_base'] / MiB:.0f} MiB +{r['rss_delta'] / MiB:.1f} MiB",
                    flush=True,
                )
        finally:
            server.stop()
        bench_rss = psutil.Process().memory_info().rss
    table = (
        "| objects in the folder | HTTP | wall s | entries listed | says 'more' | ListObjectsV2 | "
        "S3 requests | answer size | server RSS before | server RSS + |\n"
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n"
    )
    for n, r in rows:
        table += (
            f"| {n:,} | {r['status']} | {r['wall']:.2f} | {r['entries']:,} | "
            f"{'yes' if r['truncated'] else 'no'} | {r['lists']} | {r['requests']} | "
            f"{r['bytes'] / MiB:.1f} MiB | {r['rss_base'] / MiB:.0f} MiB | {r['rss_delta'] / MiB:.1f} MiB |\n"
        )
    timings = ", ".join(f"{n:,} in {t:.1f} s" for n, t in injected.items())
    note = (
        f"Keys injected into moto's backend ({timings}; "
        f"bench process RSS {bench_rss / MiB:.0f} MiB with moto and every key). "
        "moto re-sorts the whole bucket for every ListObjectsV2 page, so the wall time on moto grows "
        "with the bucket even though the request count does not; Ceph RGW lists from an index.\n"
    )
    print("\n" + table + "\n" + note)
    (WORK / "huge_folder.md").write_text(
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `python bench/huge_folder.py "
        f"--sizes {args.sizes}`\n\n" + table + "\n" + note
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
