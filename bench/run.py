"""``make bench``: this project against s3contents and jupyter-fs on large-data workloads.

One local S3 server (moto, in a subprocess, counting requests and bytes per S3 operation); one
real jupyter-server subprocess per contender, each in its own virtualenv under ``bench/work/``
(s3contents and jupyter-fs are installed there only, never in the project's environment); every
workload driven over HTTP through the contents REST API the way JupyterLab calls it. Per workload:
S3 requests, bytes to and from S3, wall time, peak server RSS growth (psutil on the server
process), the longest event-loop stall measured inside the server (``bench/stallext.py``) and
from outside (the slowest answer of a trivial API call polled every 10 ms), and a correctness
check of what landed (hashes).

With ``--site ceph`` the S3 server is instead the single-node Ceph RGW over HTTPS (the datalake's
own server software, ``valeria_platform.ceph``), which counts nothing: its tables have no request
or byte columns. Its table is kept in ``bench/RESULTS.md`` (section "On Ceph RGW") next to moto's.

Usage: ``python bench/run.py [--quick] [--site moto|ceph] [--only ours,s3contents,jupyter-fs]``.
Results go to ``bench/RESULTS.md`` and ``bench/RESULTS.png`` (``--site ceph``: also
``bench/RESULTS-ceph.*``; ``--quick``: ``bench/work/RESULTS-quick*.*``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import requests

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work"
sys.path.insert(0, str(REPO / "hub_config"))

from valeria_platform.jupyterlab import upload_models  # noqa: E402
from valeria_platform.moto_s3 import MotoS3  # noqa: E402

MiB = 1024 * 1024
BUCKET = "bench"
KEY_ID, SECRET = "benchkey", "benchsecret-not-a-real-one"
TOKEN = "bench-token"
CHUNK = MiB
POLL_INTERVAL = 10.0
FINDINGS = "<!-- findings: kept across runs -->"
CEPH_BEGIN, CEPH_END = "<!-- ceph: written by --site ceph -->", "<!-- /ceph -->"
MARKERS = (".s3keep", ".s3fskeep")  # s3contents hides folders without its own marker
#: folder markers, not data, when checking what a rename moved (ours gives a moved folder its own)
ANY_MARKER = (*MARKERS, ".valeria_keep")

CONTENDERS = {
    "ours": {"venv": Path(os.environ.get("VALERIA_BENCH_VENV") or REPO / ".venv"), "pip": None},
    "s3contents": {"venv": WORK / "venv-s3contents", "pip": ["s3contents==0.11.2", "jupyter-server==2.21.*"]},
    "jupyter-fs": {"venv": WORK / "venv-jupyterfs", "pip": ["jupyter-fs[fs]==1.2.1", "s3fs"]},
}


@dataclass
class Sizes:
    list_n: int
    upload: int
    download: int
    rename_n: int
    notebook: int

    @classmethod
    def make(cls, quick: bool) -> Sizes:
        if quick:
            return cls(1000, 16 * MiB, 32 * MiB, 100, 1 * MiB)
        return cls(10_000, 256 * MiB, 1024 * MiB, 1000, 5 * MiB)


@dataclass
class Result:
    contender: str
    workload: str
    ok: bool | None = None
    note: str = ""
    wall: float | None = None
    ops: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    rss_delta: int | None = None
    stall_in_ms: float | None = None
    busy_in_ms: float | None = None
    stall_probe_ms: float | None = None

    @property
    def requests(self) -> int:
        return sum(self.ops.values())


# -- set-up -----------------------------------------------------------------------------------------


def ensure_venv(name: str) -> tuple[bool, str]:
    spec = CONTENDERS[name]
    py = spec["venv"] / "bin" / "python"
    if spec["pip"] is None:
        return py.exists(), "" if py.exists() else "project venv missing: run make setup"
    stamp = spec["venv"] / ".bench-installed"
    if stamp.exists():
        return True, ""
    log = WORK / f"install-{name}.log"
    with open(log, "w") as out:
        if not py.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(spec["venv"])], check=True, stdout=out, stderr=out
            )
        rc = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", *spec["pip"], "typing_extensions"], stdout=out, stderr=out
        ).returncode
    if rc != 0:
        return False, f"pip install failed, see {log.relative_to(REPO)}"
    stamp.touch()
    return True, ""


def version_of(name: str, package: str) -> str:
    py = CONTENDERS[name]["venv"] / "bin" / "python"
    out = subprocess.run(
        [str(py), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


def payload(path: Path, size: int, seed: int) -> Path:
    """A deterministic random file, made once and reused between runs."""
    if not path.exists() or path.stat().st_size != size:
        rng = random.Random(seed)
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(8 * MiB, left)
                f.write(rng.randbytes(n))
                left -= n
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def make_notebook(size: int) -> dict:
    cells = []
    line = "x" * 99 + "\n"
    per_cell = 10_000
    for i in range(max(1, size // (per_cell + 200))):
        cells.append(
            {
                "cell_type": "code",
                "execution_count": i + 1,
                "id": f"cell-{i:05d}",
                "metadata": {},
                "outputs": [{"name": "stdout", "output_type": "stream", "text": line * (per_cell // 100)}],
                "source": f"print('cell {i}')",
            }
        )
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@dataclass
class Site:
    """The S3 server of a run: moto (counts requests) or Ceph RGW over HTTPS (counts nothing)."""

    kind: str
    endpoint: str
    key_id: str = KEY_ID
    secret: str = SECRET
    ca_bundle: str = ""
    counter: Any = None  # MotoS3 (reset/stats) or None

    @property
    def counts(self) -> bool:
        return self.counter is not None

    def reset(self) -> None:
        if self.counter is not None:
            self.counter.reset()

    def stats(self) -> dict[str, Any]:
        if self.counter is None:
            return {"ops": {}, "bytes_in": 0, "bytes_out": 0}
        return self.counter.stats()


SITE = Site("moto", "")


def s3_client(endpoint: str, site: Site | None = None):
    import boto3
    from botocore.config import Config

    site = site or SITE
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=site.key_id,
        aws_secret_access_key=site.secret,
        verify=site.ca_bundle or None,
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=32,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def seed(client, sizes: Sizes, contenders: list[str], big: Path, notebook: bytes) -> None:
    client.create_bucket(Bucket=BUCKET)
    jobs: list[tuple[str, bytes]] = []
    for folder in ["list", "big", "uploads", "nb", *[f"rename-{c}" for c in contenders]]:
        jobs += [(f"{folder}/{m}", b"") for m in MARKERS]
    jobs += [(f"list/obj-{i:05d}.txt", f"object {i}\n".encode()) for i in range(sizes.list_n)]
    for c in contenders:
        jobs += [(f"rename-{c}/src/{m}", b"") for m in MARKERS]
        jobs += [
            (f"rename-{c}/src/part-{i:04d}.csv", f"{c},{i}\n".encode() * 10) for i in range(sizes.rename_n)
        ]
        jobs.append((f"nb/{c}.ipynb", notebook))
    t0 = time.monotonic()
    with ThreadPoolExecutor(24) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), jobs))
    from boto3.s3.transfer import TransferConfig

    client.upload_file(
        str(big), BUCKET, "big/download.bin", Config=TransferConfig(multipart_chunksize=64 * MiB)
    )
    print(f"seeded {len(jobs) + 1} objects in {time.monotonic() - t0:.0f} s", flush=True)


# -- one contender's server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, endpoint: str) -> None:
        self.name = name
        self.endpoint = endpoint
        self.port = free_port()
        self.dir = WORK / name
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {TOKEN}"
        self.drive = ""
        self.last_gc_ms: float | None = None

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "ServerApp": {
                "ip": "127.0.0.1",
                "port": self.port,
                "open_browser": False,
                "allow_root": True,
                "root_dir": str(self.dir / "home"),
                "jpserver_extensions": {"stallext": True},
            },
            "IdentityProvider": {"token": TOKEN},
        }
        s3kw = {"key": SITE.key_id, "secret": SITE.secret, "client_kwargs": {"endpoint_url": self.endpoint}}
        if self.name == "ours":
            cfg["ServerApp"]["jpserver_extensions"]["valeria_datalake"] = True
            # the listed folder holds 10,000 files and the other tools' two markers: 10,002 keys,
            # over the default limit (10,000), which would list 9,999 files and a "more" note
            cfg["DatalakeContentsManager"] = {"listing_limit": 20_000}
        elif self.name == "s3contents":
            cfg["ServerApp"]["contents_manager_class"] = "s3contents.S3ContentsManager"
            cfg["S3ContentsManager"] = {
                "bucket": BUCKET,
                "endpoint_url": self.endpoint,
                "access_key_id": SITE.key_id,
                "secret_access_key": SITE.secret,
            }
        else:
            url = f"s3://{BUCKET}"
            self.drive = hashlib.md5((url + "fsspec").encode()).hexdigest()[:8]
            cfg["ServerApp"]["contents_manager_class"] = "jupyterfs.metamanager.MetaManager"
            cfg["ServerApp"]["jpserver_extensions"]["jupyterfs.extension"] = True
            cfg["JupyterFs"] = {
                "resources": [{"name": "bench", "url": url, "type": "fsspec", "auth": "none", "kwargs": s3kw}]
            }
        return cfg

    def path(self, key: str) -> str:
        """The API path of bucket key ``key`` for this contender."""
        if self.name == "ours":
            return f"datalake_{BUCKET}/{key}".rstrip("/")
        if self.name == "jupyter-fs":
            return f"{self.drive}:{key}"
        return key

    def start(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "home").mkdir(parents=True)
        (self.dir / "config").mkdir()
        (self.dir / "config" / "jupyter_server_config.json").write_text(json.dumps(self.config(), indent=1))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JUPYTER", "VALERIA_"))}
        env.update(
            {
                "JUPYTER_CONFIG_DIR": str(self.dir / "config"),
                "JUPYTER_DATA_DIR": str(self.dir / "data"),
                "JUPYTER_RUNTIME_DIR": str(self.dir / "runtime"),
                # this checkout's extension and platform first (the venv may hold another checkout's)
                "PYTHONPATH": os.pathsep.join(
                    [
                        str(BENCH),
                        str(REPO / "server_ext"),
                        str(REPO / "local_platform"),
                        str(REPO / "hub_config"),
                    ]
                ),
                "HOME": str(self.dir),
                # the hub → notebook contract (only ours reads it; the others get keys by config)
                "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_ACCESS_KEY_ID": SITE.key_id,
                "AWS_SECRET_ACCESS_KEY": SITE.secret,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
                "AWS_RESPONSE_CHECKSUM_VALIDATION": "WHEN_REQUIRED",
            }
        )
        if SITE.ca_bundle:  # botocore (every contender's S3 client) trusts the RGW's CA from here
            env["AWS_CA_BUNDLE"] = SITE.ca_bundle
        py = CONTENDERS[self.name]["venv"] / "bin" / "python"
        log = open(self.dir / "server.log", "w")
        self.proc = subprocess.Popen(
            [
                str(py),
                "-m",
                "jupyter_server",
                f"--config={self.dir / 'config' / 'jupyter_server_config.json'}",
            ],
            cwd=self.dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 240  # a shared, loaded machine can take minutes
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited, see {self.dir / 'server.log'}")
            try:
                if self.session.get(self.url + "/api/status", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} server did not start, see {self.dir / 'server.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def api(self, method: str, path: str, body: Any = None, timeout: float = 600, **params: Any):
        data = json.dumps(body) if body is not None else None
        return self.session.request(
            method, f"{self.url}/api/contents/{path}", data=data, params=params, timeout=timeout
        )

    def stall(self) -> tuple[float | None, float | None]:
        """(longest lateness, longest CPU-busy stretch) of the server's loop since the last call, ms."""
        try:
            report = self.session.get(self.url + "/valeria-bench/stall", timeout=30).json()
            self.last_gc_ms = report.get("max_gc_ms")
            return report["max_stall_ms"], report.get("max_busy_ms")
        except Exception:
            return None, None


class Watch:
    """During one workload: the server's RSS every 10 ms, and a trivial API call every 10 ms."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.proc = psutil.Process(server.proc.pid)
        self.base = self.peak = self.proc.memory_info().rss
        self.worst_probe = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._rss), threading.Thread(target=self._probe)]

    def _rss(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.01)

    def _probe(self) -> None:
        s = requests.Session()
        s.headers["Authorization"] = f"token {TOKEN}"
        url = self.server.url + "/api"
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                s.get(url, timeout=60)
            except requests.RequestException:
                pass
            self.worst_probe = max(self.worst_probe, time.perf_counter() - t0)
            time.sleep(0.01)

    def __enter__(self) -> Watch:  # noqa: PYI034
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def measure(server: Server, moto: Site, workload: str, fn) -> Result:
    r = Result(server.name, workload)
    server.stall()  # start a fresh in-server window
    moto.reset()
    t0 = time.perf_counter()
    check = None
    try:
        with Watch(server) as w:
            outcome = fn()
            r.wall = time.perf_counter() - t0
        if callable(outcome):
            check = outcome  # verified after the S3 counters are read: the check's reads are ours
        else:
            r.ok, r.note = outcome
    except Exception as e:  # a contender failing a workload is a result, not a crash
        r.wall = time.perf_counter() - t0
        r.ok, r.note = False, f"{type(e).__name__}: {str(e)[:120]}"
    stats = moto.stats()
    if check is not None:
        try:
            r.ok, r.note = check()
        except Exception as e:
            r.ok, r.note = False, f"check failed: {type(e).__name__}: {str(e)[:120]}"
    r.ops, r.bytes_in, r.bytes_out = stats["ops"], stats["bytes_in"], stats["bytes_out"]
    r.rss_delta = w.peak - w.base if "w" in locals() else None
    r.stall_in_ms, r.busy_in_ms = server.stall()
    r.stall_probe_ms = round(w.worst_probe * 1000, 1) if "w" in locals() else None
    print(
        f"  {workload:<14} ok={r.ok!s:<5} {r.wall:7.2f} s  S3 req {r.requests if SITE.counts else 'n/a':>6}"
        f"  in {r.bytes_in / MiB:8.1f} MiB"
        f"  out {r.bytes_out / MiB:8.1f} MiB  RSS +{(r.rss_delta or 0) / MiB:7.1f} MiB"
        f"  stall {r.stall_in_ms} ms (busy {r.busy_in_ms}, GC {server.last_gc_ms})"
        f" / probe {r.stall_probe_ms} ms  {r.note}",
        flush=True,
    )
    return r


# -- workloads --------------------------------------------------------------------------------------------


def w_list(server: Server, n: int):
    def run():
        resp = server.api("GET", server.path("list"), content=1)
        if resp.status_code != 200:
            return False, f"HTTP {resp.status_code}"
        names = {e["name"] for e in resp.json()["content"] if e["type"] == "file"}
        expected = {f"obj-{i:05d}.txt" for i in range(n)}
        missing = len(expected - names)
        return missing == 0, f"{len(names)} files listed" + (f", {missing} missing" if missing else "")

    return run


def w_upload(server: Server, client, src: Path, digest: str):
    key = f"uploads/{server.name}.bin"
    path = server.path(key)

    def run():
        with open(src, "rb") as f:
            for model in upload_models(path, f, CHUNK):
                resp = server.api("PUT", path, model)
                if resp.status_code >= 400:
                    return False, f"chunk {model['chunk']}: HTTP {resp.status_code}"
        return verify

    def verify():
        size = src.stat().st_size
        h = hashlib.sha256()
        try:
            body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
        except Exception:
            return False, "nothing in S3"
        got = 0
        for block in body.iter_chunks(8 * MiB):
            h.update(block)
            got += len(block)
        if h.hexdigest() != digest:
            return False, f"wrong content in S3 ({got / MiB:.1f} of {size / MiB:.0f} MiB)"
        return True, "sha256 matches"

    return run


def w_download(server: Server, digest: str):
    def run():
        url = f"{server.url}/files/{server.path('big/download.bin')}"
        h = hashlib.sha256()
        with server.session.get(url, params={"download": 1}, stream=True, timeout=900) as resp:
            if resp.status_code != 200:
                return False, f"HTTP {resp.status_code}"
            for block in resp.iter_content(MiB):
                h.update(block)
        return h.hexdigest() == digest, "sha256 matches" if h.hexdigest() == digest else "wrong bytes"

    return run


def w_rename(server: Server, client, n: int, etags: dict[str, str]):
    base = f"rename-{server.name}"

    def run():
        resp = server.api("PATCH", server.path(f"{base}/src"), {"path": server.path(f"{base}/dst")})
        if resp.status_code >= 400:
            return False, f"HTTP {resp.status_code}"
        return verify

    def verify():
        found: dict[str, str] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{base}/"):
            found.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
        moved = {k.split("/dst/", 1)[1]: v for k, v in found.items() if "/dst/" in k}
        left = [k for k in found if "/src/" in k and not k.endswith(ANY_MARKER)]
        want = {k.split("/src/", 1)[1]: v for k, v in etags.items()}
        data_moved = {k: v for k, v in moved.items() if not k.endswith(ANY_MARKER)}
        if data_moved != want:
            return False, f"{len(data_moved)} of {n} objects at the destination"
        if left:
            return False, f"{len(left)} objects left at the source"
        return True, f"{n} objects moved, ETags match"

    return run


def w_notebook(server: Server, client, original: dict):
    key = f"nb/{server.name}.ipynb"
    path = server.path(key)

    def run():
        resp = server.api("GET", path, type="notebook", content=1, hash=1)
        if resp.status_code != 200:
            return False, f"open: HTTP {resp.status_code}"
        model = resp.json()
        nb = model["content"]
        nb["cells"][0]["source"] = "print('edited')"
        resp = server.api("PUT", path, {"type": "notebook", "format": "json", "content": nb})
        if resp.status_code >= 400:
            return False, f"save: HTTP {resp.status_code}"
        resp = server.session.post(f"{server.url}/api/contents/{path}/checkpoints", timeout=600)
        if resp.status_code >= 400:
            return False, f"checkpoint: HTTP {resp.status_code}"
        return verify

    def verify():
        stored = json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        want = [c["source"] for c in original["cells"]]
        want[0] = "print('edited')"
        got = [
            "".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in stored["cells"]
        ]
        outputs_ok = all(
            "".join(a["outputs"][0]["text"]) == b["outputs"][0]["text"]
            for a, b in zip(stored["cells"], original["cells"], strict=False)
        )
        ok = got == want and outputs_ok
        return ok, "saved notebook matches" if ok else "saved notebook differs"

    return run


# -- report -----------------------------------------------------------------------------------------------


def fmt_bytes(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= 0.1 * MiB else f"{n / 1024:.1f} KiB"


def table(results: list[Result], skipped: dict[str, str]) -> str:
    head = (
        "| workload | contender | correct | wall s | S3 requests | to S3 | from S3 | server RSS + | "
        "loop stall (inside) | loop busy (inside, CPU) | slowest /api (outside) | notes |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    rows = []
    for r in results:
        top = ", ".join(f"{k} {v}" for k, v in sorted(r.ops.items(), key=lambda kv: -kv[1])[:4])
        counted = (
            f"| {r.requests} ({top}) | {fmt_bytes(r.bytes_in)} | {fmt_bytes(r.bytes_out)} "
            if SITE.counts
            else "| n/a | n/a | n/a "
        )
        rows.append(
            f"| {r.workload} | {r.contender} | {'yes' if r.ok else 'NO'} | {r.wall:.2f} "
            + counted
            + f"| {fmt_bytes(r.rss_delta or 0)} "
            f"| {'n/a' if r.stall_in_ms is None else r.stall_in_ms} ms "
            f"| {'n/a' if r.busy_in_ms is None else r.busy_in_ms} ms | {r.stall_probe_ms} ms "
            f"| {r.note} |"
        )
    for name, why in skipped.items():
        rows.append(f"| (all) | {name} | not run | | | | | | | | | {why} |")
    return head + "\n".join(rows) + "\n"


def chart(results: list[Result], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r.workload for r in results))
    names = list(dict.fromkeys(r.contender for r in results))
    metrics = [
        ("wall time (s)", lambda r: r.wall or 0),
        ("S3 requests", lambda r: r.requests),
        ("server RSS growth (MiB)", lambda r: (r.rss_delta or 0) / MiB),
        ("longest loop stall, inside (ms)", lambda r: r.stall_in_ms or 0),
        ("longest CPU-busy stretch of the loop, inside (ms)", lambda r: r.busy_in_ms or 0),
    ]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(11, 16))
    width = 0.8 / max(1, len(names))
    for ax, (title, get) in zip(axes, metrics, strict=True):
        for i, name in enumerate(names):
            vals, hatches = [], []
            for w in workloads:
                r = next((x for x in results if x.contender == name and x.workload == w), None)
                vals.append(max(get(r), 1e-3) if r else 0)
                hatches.append("" if (r and r.ok) else "xx")
            bars = ax.bar([j + i * width for j in range(len(workloads))], vals, width, label=name)
            for b, h in zip(bars, hatches, strict=True):
                b.set_hatch(h)
        ax.set_title(title + "  (hatched: wrong result)")
        ax.set_yscale("log")
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(workloads))], workloads)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {psutil.virtual_memory().total / 1024**3:.0f} GiB RAM, "
        f"{platform.platform()}, Python {platform.python_version()}"
    )


# -- main -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for development")
    ap.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    ap.add_argument(
        "--workloads", default="list,upload,download,rename,notebook", help="comma-separated workloads"
    )
    ap.add_argument("--site", choices=("moto", "ceph"), default="moto", help="the S3 server")
    args = ap.parse_args(argv)
    sizes = Sizes.make(args.quick)
    wanted = [w.strip() for w in args.workloads.split(",")]
    WORK.mkdir(parents=True, exist_ok=True)

    contenders, skipped = [], {}
    for name in [c.strip() for c in args.only.split(",") if c.strip()]:
        ok, why = ensure_venv(name)
        if ok:
            contenders.append(name)
        else:
            skipped[name] = why
            print(f"{name}: not run ({why})")

    up_src = payload(WORK / f"upload-{sizes.upload // MiB}m.bin", sizes.upload, 1)
    dl_src = payload(WORK / f"download-{sizes.download // MiB}m.bin", sizes.download, 2)
    up_digest, dl_digest = sha256_file(up_src), sha256_file(dl_src)
    original_nb = make_notebook(sizes.notebook)
    nb_bytes = json.dumps(original_nb, indent=1).encode()

    results: list[Result] = []
    started = datetime.now(timezone.utc)
    with start_site(args.site) as moto:
        client = s3_client(moto.endpoint)
        seed(client, sizes, contenders, dl_src, nb_bytes)
        rename_etags = {}
        for c in contenders:
            rename_etags[c] = {
                o["Key"]: o["ETag"]
                for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=BUCKET, Prefix=f"rename-{c}/src/part-"
                )
                for o in page.get("Contents", [])
            }
        for name in contenders:
            print(f"\n== {name}", flush=True)
            server = Server(name, moto.endpoint)
            try:
                server.start()
                server.api("GET", "")  # what JupyterLab does first; buckets discovered here
                if "list" in wanted:
                    results.append(measure(server, moto, "list cold", w_list(server, sizes.list_n)))
                    time.sleep(POLL_INTERVAL)  # JupyterLab re-lists an open folder 10 s after the last answer
                    results.append(measure(server, moto, "list poll", w_list(server, sizes.list_n)))
                if "upload" in wanted:
                    results.append(
                        measure(server, moto, "upload", w_upload(server, client, up_src, up_digest))
                    )
                if "download" in wanted:
                    results.append(measure(server, moto, "download", w_download(server, dl_digest)))
                if "rename" in wanted:
                    run = w_rename(server, client, sizes.rename_n, rename_etags[name])
                    results.append(measure(server, moto, "rename folder", run))
                if "notebook" in wanted:
                    results.append(measure(server, moto, "notebook", w_notebook(server, client, original_nb)))
            except Exception as e:
                skipped[name] = f"server failed: {type(e).__name__}: {e}"
                print(f"  {skipped[name]}")
            finally:
                server.stop()
        site_text = (
            f"moto {version_of('ours', 'moto')} in a subprocess, counting every request by S3 operation "
            "and every byte"
            if args.site == "moto"
            else f"the single-node Ceph RGW ({ceph_version()}, memstore OSD) over HTTPS with its own CA, "
            "the datalake's server software; it counts nothing, so the request and byte columns are n/a"
        )

    versions = {n: version_of(n, "jupyter_server") for n in contenders}
    extra = {"s3contents": ("s3contents", "s3fs"), "jupyter-fs": ("jupyter-fs", "s3fs"), "ours": ("s3fs",)}
    lines = []
    for n in contenders:
        pk = ", ".join(f"{p} {version_of(n, p)}" for p in extra[n])
        lines.append(f"- **{n}**: jupyter-server {versions[n]}, {pk} (`{shown_path(CONTENDERS[n]['venv'])}`)")
    label = "quick" if args.quick else "full"
    suffix = "" if args.site == "moto" else "-ceph"
    md_path = WORK / f"RESULTS-quick{suffix}.md" if args.quick else BENCH / f"RESULTS{suffix}.md"
    png_path = md_path.with_suffix(".png")
    text = table(results, skipped)
    print("\n" + text)
    try:
        chart(results, png_path)
    except ImportError:  # matplotlib is optional: the table is the result
        print("matplotlib not installed: no chart")
    # hand-written findings below the marker survive a re-run
    kept = ""
    if md_path.exists() and FINDINGS in md_path.read_text():
        kept = "\n" + FINDINGS + md_path.read_text().split(FINDINGS, 1)[1]
    md_path.write_text(
        f"# Large-data benchmark ({label} run)\n\n"
        f"Run {started:%Y-%m-%d %H:%M} UTC with `python bench/run.py{' --quick' if args.quick else ''}"
        f"{' --site ceph' if args.site == 'ceph' else ''}` "
        f"(`make bench`). Machine: {machine()}. Other jobs may have shared the machine.\n\n"
        f"S3: {site_text}; "
        "one bucket for all contenders. Each contender: a real `jupyter server` subprocess in its own "
        "virtualenv, driven over HTTP through the contents REST API as JupyterLab calls it.\n\n"
        + "\n".join(lines)
        + f"\n\nSizes: list {sizes.list_n} objects; upload {sizes.upload // MiB} MiB in 1 MiB base64 chunks; "
        f"download {sizes.download // MiB} MiB via `/files/...?download=1`; rename a folder of "
        f"{sizes.rename_n} objects; open + save + checkpoint a {len(nb_bytes) / MiB:.1f} MiB notebook.\n\n"
        "Columns: *S3 requests* and *to/from S3* are what the S3 server received and sent during the "
        "workload; *server RSS +* is the peak growth of the server process's resident memory (psutil, "
        "every 10 ms); *loop stall (inside)* is the longest lateness of a 1 ms sleep in the server's own "
        "event loop (`valeria_platform.loopstall` loaded by `bench/stallext.py` into every contender's "
        "server), and *loop busy* the CPU time the loop's thread used during that lateness (the part "
        "that is work done on the loop rather than the process waiting for a core on a shared "
        "machine); *slowest /api (outside)* is the slowest answer to `GET /api` polled every 10 ms from "
        "another thread during the workload. *correct* checks what landed: names listed, sha256 of the "
        "uploaded object in S3 and of the downloaded bytes, ETags of the moved objects and nothing left "
        "behind, the saved notebook's cells. 'list poll' repeats the listing 10 s after the cold one "
        "answered, as JupyterLab's poll of an open folder does. Every folder carries "
        "`.s3keep` and `.s3fskeep` markers, without which s3contents does not see a folder.\n\n"
        + text
        + f"\n![chart]({png_path.name})\n"
        + ceph_section(md_path, args.site)
        + kept
    )
    if args.site == "ceph":
        splice_ceph(md_path.with_name(md_path.name.replace("-ceph", "")), text, started, args.quick)
    print(f"wrote {md_path.relative_to(REPO)} and {png_path.relative_to(REPO)}")
    return 0


@contextlib.contextmanager
def start_site(kind: str):
    """The S3 server of the run, as :data:`SITE` (which the servers and clients read)."""
    global SITE
    if kind == "moto":
        with MotoS3(subprocess=True) as moto:
            SITE = Site("moto", moto.endpoint, counter=moto)
            yield SITE
        return
    from valeria_platform.ceph import CephCluster

    cluster = CephCluster(WORK / "ceph", memstore_bytes=6 << 30)
    cluster.start()
    try:
        user = cluster.create_user("bench")
        SITE = Site("ceph", cluster.https_endpoint, user.access_key, user.secret_key, cluster.ca_bundle)
        yield SITE
    finally:
        cluster.stop()


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (``VALERIA_BENCH_VENV`` may be outside)."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def ceph_version() -> str:
    out = subprocess.run(["radosgw", "--version"], capture_output=True, text=True)
    return " ".join(out.stdout.split()[:3]) or "Ceph"


def ceph_section(md_path: Path, site: str) -> str:
    """The Ceph table kept in the moto results file across moto re-runs."""
    if site != "moto" or not md_path.exists():
        return ""
    old = md_path.read_text()
    if CEPH_BEGIN not in old:
        return ""
    return "\n" + CEPH_BEGIN + old.split(CEPH_BEGIN, 1)[1].split(CEPH_END, 1)[0] + CEPH_END + "\n"


def splice_ceph(results_md: Path, text: str, started: datetime, quick: bool) -> None:
    """Put the Ceph table into the moto results file (replacing the previous one)."""
    if not results_md.exists():
        return
    body = results_md.read_text()
    section = (
        f"{CEPH_BEGIN}\n## On Ceph RGW (HTTPS)\n\nRun {started:%Y-%m-%d %H:%M} UTC with "
        f"`python bench/run.py{' --quick' if quick else ''} --site ceph` (`make bench`); same workloads "
        f"and sizes, the single-node Ceph RGW over HTTPS instead of moto (details: "
        f"[RESULTS-ceph.md](RESULTS-ceph.md)). RGW counts no requests: those columns are n/a.\n\n"
        + text
        + CEPH_END
    )
    if CEPH_BEGIN in body:
        head, rest = body.split(CEPH_BEGIN, 1)
        body = head + section + rest.split(CEPH_END, 1)[1]
    elif FINDINGS in body:
        head, rest = body.split(FINDINGS, 1)
        body = head + section + "\n\n" + FINDINGS + rest
    else:
        body += "\n" + section + "\n"
    results_md.write_text(body)


if __name__ == "__main__":
    sys.exit(main())
