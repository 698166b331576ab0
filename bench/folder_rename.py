"""Rename (move) a folder of N small objects inside one bucket: time and S3 requests, moto and Ceph.

Runs ``DatalakeContentsManager.rename`` directly (no HTTP), back and forth, ``--repeat`` times per
concurrency, on moto (requests counted) and on a single-node Ceph RGW started for the run.

    /work/tools/wtpytest --py bench/folder_rename.py --n 1000 --sites moto,ceph
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from valeria_datalake.manager import DatalakeContentsManager
from valeria_platform.moto_site import start_moto_site

BUCKET = "alice-bench-rename"


def seed(site, n: int) -> None:
    site.user("alice")
    client = site.client("alice")
    client.create_bucket(Bucket=BUCKET)
    with ThreadPoolExecutor(16) as pool:
        keys = [f"a/obj-{i:04d}.txt" for i in range(n)]
        list(pool.map(lambda k: client.put_object(Bucket=BUCKET, Key=k, Body=b"y"), keys))


async def run(site, n: int, concurrencies: list[int], repeat: int) -> None:
    os.environ.update(site.env("alice", ()))
    src, dst = "a", "b"
    for conc in concurrencies:
        root = tempfile.mkdtemp(prefix="valeria-bench-")
        cm = DatalakeContentsManager(root_dir=root, transfer_concurrency=conc)
        folder = f"datalake_{BUCKET}"
        await cm.get(folder, content=True)  # discovery and clients, outside the measurement
        times = []
        for _ in range(repeat):
            if site.counter:
                site.counter.reset()
            t0 = time.perf_counter()
            await cm.rename(f"{folder}/{src}", f"{folder}/{dst}")
            times.append(time.perf_counter() - t0)
            src, dst = dst, src
        ops = site.counter.stats()["ops"] if site.counter else {}
        shown = ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
        median, best = statistics.median(times), min(times)
        print(f"| {site.kind} | {n} | {conc} | {median:.2f} s | {best:.2f} s | {shown} |", flush=True)
        await cm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--concurrency", default="8,32")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sites", default="moto,ceph")
    args = ap.parse_args()
    concs = [int(c) for c in args.concurrency.split(",")]
    print("| site | objects | concurrency | median | best | S3 requests (last run) |")
    print("|---|---|---|---|---|---|")
    for kind in args.sites.split(","):
        if kind == "moto":
            site = start_moto_site()
            try:
                seed(site, args.n)
                asyncio.run(run(site, args.n, concs, args.repeat))
            finally:
                site.counter.stop()
        else:
            from valeria_platform.ceph import CephCluster

            cluster = CephCluster(tempfile.mkdtemp(prefix="valeria-bench-ceph-"))
            cluster.start()
            try:
                site = cluster.site()
                seed(site, args.n)
                asyncio.run(run(site, args.n, concs, args.repeat))
            finally:
                cluster.stop()


if __name__ == "__main__":
    main()
