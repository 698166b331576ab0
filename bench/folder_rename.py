"""Rename (move) a folder of N small objects inside one bucket: time and S3 requests, moto and Ceph.

Runs ``DatalakeContentsManager.rename`` directly (no HTTP), back and forth, ``--repeat`` times per
concurrency, on moto (requests counted) and on a single-node Ceph RGW (HTTPS) started for the run.
Prints the time of each phase of the transfer (``transfer.py``: scan, existence check, folder
markers, copies, verify, delete), the event loop's longest stall (and the CPU the loop itself
used during it, which machine load does not inflate) and the growth of the process's RSS.

    /work/tools/wtpytest --py bench/folder_rename.py --n 1000 --sites moto,ceph
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from valeria_datalake import transfer
from valeria_datalake.manager import DatalakeContentsManager
from valeria_platform.loopstall import LoopStallMonitor
from valeria_platform.moto_site import start_moto_site

BUCKET = "alice-bench-rename"


def seed(site, n: int) -> None:
    site.user("alice")
    client = site.client("alice")
    client.create_bucket(Bucket=BUCKET)
    with ThreadPoolExecutor(16) as pool:
        keys = [f"a/obj-{i:04d}.txt" for i in range(n)]
        list(pool.map(lambda k: client.put_object(Bucket=BUCKET, Key=k, Body=b"y"), keys))


#: seconds spent in each phase of the transfers since the last reset
PHASES: dict[str, float] = defaultdict(float)
_PHASE_NAMES = {"scan": "scan", "exists": "exists", "make_dirs": "markers", "verify": "verify",
                "remove_source": "delete"}  # fmt: skip


def time_phases() -> None:
    """Wrap the transfer's phase methods (and the copies) with timers, for this benchmark only."""

    def timed(name, fn):
        async def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                PHASES[name] += time.perf_counter() - t0

        return wrapper

    for cls in (transfer.S3Side,):
        for method, name in _PHASE_NAMES.items():
            setattr(cls, method, timed(name, getattr(cls, method)))
    orig_bounded = transfer.run_bounded

    async def bounded(items, work, limit):  # the copies are the one run_bounded of transfer()
        await timed("copies", orig_bounded)(items, work, limit)

    transfer.run_bounded = bounded


PHASE_ORDER = ("scan", "exists", "markers", "copies", "verify", "delete")


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


async def run(site, n: int, concurrencies: list[int], repeat: int) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:  # the previous site's
        del os.environ[name]
    os.environ.update(site.env("alice", ()))
    src, dst = "a", "b"
    for conc in concurrencies:
        root = tempfile.mkdtemp(prefix="valeria-bench-")
        cm = DatalakeContentsManager(root_dir=root, transfer_concurrency=conc, server_copy_concurrency=conc)
        folder = f"datalake_{BUCKET}"
        await cm.get(folder, content=True)  # discovery and clients, outside the measurement
        times, stalls, busy = [], [], []
        rss0 = rss_mib()
        for _ in range(repeat):
            if site.counter:
                site.counter.reset()
            PHASES.clear()
            async with LoopStallMonitor() as monitor:
                t0 = time.perf_counter()
                await cm.rename(f"{folder}/{src}", f"{folder}/{dst}")
                times.append(time.perf_counter() - t0)
            stalls.append(monitor.report().max_stall * 1000)
            busy.append(monitor.report().max_busy * 1000)
            src, dst = dst, src
        ops = site.counter.stats()["ops"] if site.counter else {}
        shown = ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
        phases = " / ".join(f"{PHASES[p]:.2f}" for p in PHASE_ORDER)
        median, best = statistics.median(times), min(times)
        print(
            f"| {site.kind} | {n} | {conc} | {median:.2f} s | {best:.2f} s | {phases} | {max(stalls):.0f} ms "
            f"| {max(busy):.0f} ms | {rss_mib() - rss0:+.0f} MiB | {shown} |",
            flush=True,
        )
        await cm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--concurrency", default="8,32")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sites", default="moto,ceph")
    args = ap.parse_args()
    concs = [int(c) for c in args.concurrency.split(",")]
    time_phases()
    print(
        "| site | objects | concurrency | median | best | phases, last run (s): "
        + " / ".join(PHASE_ORDER)
        + " | max loop stall | loop CPU in it | RSS growth | S3 requests (last run) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
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
