"""Measure the event-loop stalls and S3 requests of ``DatalakeContentsManager`` on big workloads.

Not a test (wall-clock numbers vary with the machine's load): a script to run before and after a
change. It starts moto in a subprocess (requests counted), seeds one bucket, builds the contents
manager on this process's event loop with ``valeria_platform.loopstall`` watching that loop, and
runs each workload the way the contents handler does (``file_exists`` then ``save`` for an upload
chunk; ``json.dumps`` of the model for an answer)::

    .venv/bin/python bench/datalake_stalls.py [--list 10000] [--upload-mib 256] [--repeat 3]

``max stall`` is the longest lateness of a 1 ms sleep on the loop; ``loop CPU`` the CPU time the
loop's own thread used during that lateness (work done on the loop, whatever the machine's load).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from jupyter_server.services.contents.handlers import json_default
from jupyter_server.utils import ensure_async
from valeria_platform.loopstall import LoopStallMonitor
from valeria_platform.moto_site import start_moto_site

MiB = 1024 * 1024
BUCKET = "alice-perf"


def seed(site, n_list: int, n_rename: int, notebook: bytes) -> None:
    client = site.client("alice")
    client.create_bucket(Bucket=BUCKET)
    jobs = [(f"list/obj-{i:05d}.txt", b"x") for i in range(n_list)]
    jobs += [(f"rename/src/obj-{i:04d}.txt", b"y") for i in range(n_rename)]
    jobs.append(("nb/big.ipynb", notebook))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), jobs))


def big_notebook(mib: float) -> bytes:
    cells = []
    blob = base64.b64encode(os.urandom(48 * 1024)).decode()
    while sum(len(c["outputs"][0]["data"]["image/png"]) for c in cells) < mib * MiB:
        cells.append(
            {
                "cell_type": "code",
                "execution_count": 1,
                "id": f"c{len(cells):06d}",
                "metadata": {},
                "outputs": [{"output_type": "display_data", "data": {"image/png": blob}, "metadata": {}}],
                "source": "plot()",
            }
        )
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb).encode()


async def measure(name: str, monitor: LoopStallMonitor, site, coro_factory, repeat: int) -> None:
    for i in range(repeat):
        site.counter.reset()
        await asyncio.sleep(0.05)
        monitor.reset()
        t0 = time.perf_counter()
        note = await coro_factory()
        wall = time.perf_counter() - t0
        await asyncio.sleep(0.01)
        r = monitor.reset()
        ops = site.counter.stats()["ops"]
        gcs = getattr(monitor, "gc_times", None)
        if gcs:
            worst = max(gcs, key=lambda g: g[1])
            note += f"  [{len(gcs)} GCs, longest gen{worst[0]} {worst[1] * 1000:.0f} ms]"
            gcs.clear()
        print(
            f"{name:<14} run {i + 1}: wall {wall:6.2f} s  max stall {r.max_stall * 1000:7.1f} ms  "
            f"loop CPU {r.max_busy * 1000:6.1f} ms  >50ms {r.over_50ms:3d}  "
            f"requests {sum(ops.values())} {dict(sorted(ops.items()))}  {note}",
            flush=True,
        )


async def main(args: argparse.Namespace) -> None:
    from valeria_datalake.manager import DatalakeContentsManager

    gc_times: list[tuple[int, float]] = []
    if args.gc_report:  # how long each garbage collection held the GIL, whatever thread ran it
        import gc

        started = {}

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                started["t"] = time.perf_counter()
            elif "t" in started:
                gc_times.append((info["generation"], time.perf_counter() - started.pop("t")))

        gc.callbacks.append(on_gc)
        args.gc_times = gc_times
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.debug:  # name every callback that holds the loop over 20 ms
        import logging

        logging.basicConfig(level=logging.WARNING)
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.02
    site = start_moto_site()
    try:
        site.user("alice")
        t0 = time.monotonic()
        notebook = big_notebook(args.notebook_mib)
        seed(site, args.list, args.rename, notebook)
        print(f"seeded in {time.monotonic() - t0:.0f} s", flush=True)
        os.environ.update(site.env("alice", ()))
        root = tempfile.mkdtemp(prefix="valeria-stalls-")
        cm = DatalakeContentsManager(root_dir=root, s3_list_threads=args.list_threads)
        monitor = LoopStallMonitor(interval=0.001).start()
        monitor.gc_times = gc_times
        await cm.get("", content=True)  # discovery, outside the measurements
        await cm.get(f"datalake_{BUCKET}/nb", content=True)  # the listing threads' client, too
        import gc

        tracked, frozen = len(gc.get_objects()), gc.get_freeze_count()
        print(f"objects tracked by the GC: {tracked}, frozen: {frozen}", flush=True)
        gc_times.clear()  # start-up collections are not part of any workload
        folder = f"datalake_{BUCKET}"

        async def answer(model) -> int:
            return len(json.dumps(model, default=json_default))  # what ContentsHandler does

        async def list_cold():
            cm.s3.listings.invalidate(BUCKET)
            model = await cm.get(f"{folder}/list", content=True)
            await answer(model)
            return f"{len(model['content'])} entries (expected list calls {math.ceil(args.list / 1000)})"

        state = {"src": "rename/src", "dst": "rename/dst"}

        async def rename():
            await cm.rename(f"{folder}/{state['src']}", f"{folder}/{state['dst']}")
            state["src"], state["dst"] = state["dst"], state["src"]
            return f"{args.rename} objects"

        async def notebook_open_save():
            model = await cm.get(f"{folder}/nb/big.ipynb", content=True, type="notebook")
            await answer(model)
            saved = await cm.save({"type": "notebook", "content": model["content"]}, f"{folder}/nb/big.ipynb")
            await answer(saved)
            await cm.create_checkpoint(f"{folder}/nb/big.ipynb")
            return f"{len(notebook) / MiB:.1f} MiB"

        chunk = base64.b64encode(os.urandom(MiB)).decode("ascii")

        async def upload():
            path = f"{folder}/up/big-{time.monotonic_ns()}.bin"
            n = args.upload_mib
            for i in range(1, n + 1):
                number = -1 if i == n else i
                await asyncio.sleep(0)  # each chunk is its own HTTP request: the loop turns in between
                await ensure_async(cm.file_exists(path))  # the handler asks this before every PUT
                model = {"type": "file", "format": "base64", "chunk": number, "content": chunk}
                saved = await cm.save(model, path)
                await answer(saved)
            return f"{n} MiB, size {saved['size']}"

        async def idle():
            await asyncio.sleep(3)
            return "nothing to do: the machine's own noise"

        work = {
            "idle": idle,
            "list": list_cold,
            "rename": rename,
            "notebook": notebook_open_save,
            "upload": upload,
        }
        for name in args.workloads.split(","):
            await measure(name, monitor, site, work[name], args.repeat)
        await monitor.stop()
        await cm.close()
    finally:
        site.counter.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", type=int, default=10_000)
    ap.add_argument("--rename", type=int, default=1000)
    ap.add_argument("--notebook-mib", type=float, default=5.0)
    ap.add_argument("--upload-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--list-threads", type=int, default=4, help="DatalakeContentsManager.s3_list_threads")
    ap.add_argument("--switch-interval", type=float, default=0.0, help="sys.setswitchinterval (s)")
    ap.add_argument("--gc-report", action="store_true", help="report the longest garbage collection")
    ap.add_argument("--debug", action="store_true", help="asyncio debug mode: log callbacks over 20 ms")
    ap.add_argument("--workloads", default="list,rename,notebook,upload")
    sys.exit(asyncio.run(main(ap.parse_args())))
