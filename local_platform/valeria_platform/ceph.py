"""A throwaway single-node Ceph cluster (one monitor, one memstore OSD, RGW) on 127.0.0.1.

The real S3 of the datalake is Ceph RGW; this brings up the same daemons from Debian's packages
(``radosgw ceph-mon ceph-osd ceph-common``) so that tests and the demo meet RGW's behaviour
(ListBuckets lists only owned buckets, sharing by bucket policy, its checksum quirks over HTTPS).
No systemd, no Docker, no block device: objects live in the OSD's memory (memstore).

    from valeria_platform.ceph import CephCluster

    with CephCluster("/tmp/ceph-work") as ceph:       # or ceph = CephCluster(d).start() ... ceph.stop()
        alice = ceph.create_user("alice")              # S3User(name, access_key, secret_key)
        ceph.https_endpoint, ceph.ca_bundle            # "https://127.0.0.1:PORT", path of the CA PEM
        ceph.http_endpoint                             # plain HTTP on another port
        ceph.set_bucket_policy("alice", "bucket", policy_dict)   # as the bucket's owner
        site = ceph.site()                             # S3Site(kind="ceph", endpoint=https..., ...)

``workdir`` must be absent or empty; the cluster owns it and ``stop()`` removes it, after ending
every daemon it started by PID (SIGTERM in reverse start order, SIGKILL after ``stop_timeout``).
A failed start stops what was started and raises :class:`CephStartError` whose message ends with
the tail of the monitor, OSD and RGW logs; a failed command afterwards raises :class:`CephError`
(secret keys in it replaced by ``***``).

Options: ``start_timeout`` / ``stop_timeout`` (seconds), ``memstore_bytes`` (capacity the OSD
reports; RAM is used only as objects are written), ``rgw_threads``, and ``extra_conf``
(``{"client.rgw.a": {"rgw max listing results": "500"}}``: ceph.conf settings added or overriding).
``ceph.pids``, ``ceph.rss_bytes()``, ``ceph.start_seconds`` and ``ceph.log_report()`` are for
measurements and diagnostics; ``ceph.admin(...)`` / ``ceph.ceph(...)`` run ``radosgw-admin`` /
``ceph`` against this cluster.

CLI (for the demo or by hand): ``python -m valeria_platform.ceph --workdir D [--user alice ...]``
starts the cluster, prints ``{"endpoint", "http_endpoint", "ca_bundle", "users": {...}}`` as one JSON
line on stdout, and runs until SIGINT/SIGTERM. The JSON carries the users' secret keys: it is meant
for the local demo only.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import secrets
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from typing_extensions import Self

from .procs import LocalService, ManagedProcess, ServiceError, free_port, local_url, retry_port_clash
from .s3site import S3Site, S3User
from .tls import make_server_tls

#: the programs this module runs (Debian: radosgw, ceph-mon, ceph-osd, ceph-common, ceph-base)
BINARIES = ("monmaptool", "ceph-authtool", "ceph-mon", "ceph-osd", "ceph", "radosgw", "radosgw-admin")
LOG_NAMES = ("mon.a", "osd.0", "client.rgw.a")
RGW_NAME = "client.rgw.a"


class CephError(RuntimeError):
    """A Ceph command failed (the message names it; secret keys are replaced by ``***``)."""


class CephStartError(CephError):
    """The cluster did not come up; the message carries the tail of the daemons' logs."""


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as e:
        return f"(cannot read: {e.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def _random_key(n: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


class CephCluster(LocalService):
    """One monitor, one memstore OSD and one RGW (beast, HTTP + HTTPS) on loopback, in ``workdir``."""

    #: seconds each daemon gets to stop before the next one is signalled (see :meth:`stop`)
    stop_step = 3.0

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        start_timeout: float = 90.0,
        stop_timeout: float = 20.0,
        memstore_bytes: int = 4 << 30,
        rgw_threads: int = 64,
        extra_conf: dict[str, dict[str, str]] | None = None,
    ) -> None:
        super().__init__(Path(workdir).resolve())
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.memstore_bytes = memstore_bytes
        self.rgw_threads = rgw_threads
        self.extra_conf = extra_conf or {}
        self.fsid = str(uuid.uuid4())
        self.users: dict[str, S3User] = {}
        self.http_port = 0
        self.https_port = 0
        self.ca_bundle = ""
        self.start_seconds: float | None = None
        self._lock = threading.Lock()
        self._users_lock = threading.Lock()

    # -- paths and endpoints ------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.workdir / "ceph.conf"

    @property
    def logdir(self) -> Path:
        return self.workdir / "log"

    @property
    def https_endpoint(self) -> str:
        return local_url(self.https_port, "https")

    @property
    def http_endpoint(self) -> str:
        return local_url(self.http_port)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Self:
        """Bring the cluster up; raises :class:`CephStartError` (with the daemons' logs) if it fails.

        Ports are picked free just before the daemons bind them; if another process takes one in
        between (``Address already in use``), the start is retried once on fresh ports.
        """
        missing = [b for b in BINARIES if shutil.which(b) is None]
        if missing:
            raise CephStartError(
                f"Ceph binaries not found: {', '.join(missing)} "
                "(apt-get install --no-install-recommends radosgw ceph-mon ceph-osd ceph-common)"
            )
        if self.workdir.exists() and any(self.workdir.iterdir()):
            raise CephStartError(f"{self.workdir} is not empty: the cluster needs a folder of its own")
        t0 = time.monotonic()
        retry_port_clash(
            self._start_once,
            attempts=2,
            errors=CephStartError,
            clash=lambda e: "Address already in use" in str(e),
        )
        self.start_seconds = time.monotonic() - t0
        return self

    def _start_once(self) -> None:
        self.fsid = str(uuid.uuid4())
        self.users.clear()  # users of an earlier run of this object died with its cluster
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._own_workdir = True  # absent or empty before: the cluster's own, removed at stop
        atexit.register(self.stop)
        try:
            self._prepare()
            self._start_mon()
            self._start_osd()
            self._start_rgw()
        except BaseException as e:
            report = self.log_report()
            self.stop()
            if isinstance(e, (CephError, ServiceError)):
                raise CephStartError(f"{e}\n{report}") from None
            if isinstance(e, Exception):
                raise CephStartError(f"Ceph cluster did not start: {e!r}\n{report}") from e
            raise

    def stop(self) -> None:
        """End every daemon started here (by PID) and remove the work folder. Idempotent.

        Daemons stop in reverse start order (RGW, OSD, monitor), each given ``stop_step`` seconds
        before the next is signalled: RGW stopping while the OSD and monitor are already gone waits
        ~5 s on RADOS, in order the three take ~0.2 s. Whatever is still alive after
        ``stop_timeout`` in all is killed with SIGKILL.
        """
        with self._lock:
            own = self._own_workdir
            super().stop()
            if own:
                self._own_workdir = False
                atexit.unregister(self.stop)

    # -- diagnostics ----------------------------------------------------------------------------
    def log_report(self, lines: int = 40) -> str:
        """The tail of each daemon's log and console output, for error messages and CI logs."""
        out = []
        for name in LOG_NAMES:
            for suffix in (".log", ".out"):
                path = self.logdir / f"{name}{suffix}"
                if path.exists():
                    out.append(f"----- {path.name} (last {lines} lines) -----\n{_tail(path, lines)}")
        return "\n".join(out) if out else "(no Ceph logs were written)"

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each daemon (from /proc), by Ceph name."""
        rss = {}
        for name, pid in self.pids.items():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            rss[name] = int(line.split()[1]) * 1024
            except OSError:
                pass
        return rss

    # -- users and buckets ----------------------------------------------------------------------
    def create_user(self, uid: str, display_name: str | None = None) -> S3User:
        """An RGW user with its own S3 keys (created once; the same user is returned after)."""
        with self._users_lock:
            if uid in self.users:
                return self.users[uid]
            access = _random_key(20, string.ascii_uppercase + string.digits)
            secret = _random_key(40, string.ascii_letters + string.digits)
            self.admin(
                "user", "create", "--uid", uid, "--display-name", display_name or uid,
                "--access-key", access, "--secret-key", secret,
            )  # fmt: skip
            user = S3User(name=uid, access_key=access, secret_key=secret)
            self.users[uid] = user
            return user

    def set_bucket_policy(self, owner: str, bucket: str, policy: dict[str, Any] | str) -> None:
        """Put a bucket policy as the bucket's owner (RGW principals: ``arn:aws:iam:::user/<uid>``)."""
        body = policy if isinstance(policy, str) else json.dumps(policy)
        self.site().client(owner).put_bucket_policy(Bucket=bucket, Policy=body)

    def share_read_only(self, owner: str, bucket: str, *readers: str) -> None:
        """Let ``readers`` list and read ``bucket`` (and nothing more), by bucket policy."""
        principals = [f"arn:aws:iam:::user/{r}" for r in readers]
        self.set_bucket_policy(owner, bucket, {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": principals},
                 "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                 "Resource": [f"arn:aws:s3:::{bucket}"]},
                {"Effect": "Allow", "Principal": {"AWS": principals},
                 "Action": ["s3:GetObject"],
                 "Resource": [f"arn:aws:s3:::{bucket}/*"]},
            ],
        })  # fmt: skip

    def site(self) -> S3Site:
        """This cluster as an :class:`S3Site` over HTTPS (users made on demand by ``create_user``)."""
        return S3Site(
            kind="ceph",
            endpoint=self.https_endpoint,
            ca_bundle=self.ca_bundle,
            users=self.users,
            make_user=self.create_user,
        )

    def admin(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``radosgw-admin`` as client.admin; returns its stdout."""
        return self._run(["radosgw-admin", "-c", str(self.conf), "-n", "client.admin", *args], timeout)

    def ceph(self, *args: str, timeout: float = 30.0) -> str:
        """Run the ``ceph`` CLI as client.admin; returns its stdout."""
        cmd = ["ceph", "-c", str(self.conf), "-n", "client.admin", "--connect-timeout", "15", *args]
        return self._run(cmd, timeout)

    # -- start-up steps -------------------------------------------------------------------------
    def _run(self, cmd: Sequence[str], timeout: float = 60.0) -> str:
        secrets_ = [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a in ("--secret-key", "--secret")]

        def redact(text: str) -> str:
            for value in secrets_:
                text = text.replace(value, "***")
            return text

        shown = redact(" ".join(cmd[:3]) + (" ..." if len(cmd) > 3 else ""))
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CephError(f"{shown} timed out after {timeout:.0f} s") from None
        if r.returncode != 0:
            detail = redact((r.stderr or r.stdout).decode(errors="replace")[-2000:].strip())
            raise CephError(f"{redact(' '.join(cmd))} failed ({r.returncode}): {detail}")
        return r.stdout.decode()

    def _prepare(self) -> None:
        w = self.workdir
        for sub in ("log", "run", "mon/ceph-a", "osd/ceph-0", "rgw"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        mon_v2, mon_v1 = free_port(), free_port()
        self.http_port, self.https_port = free_port(), free_port()
        tls = make_server_tls(w / "tls", "rgw", hosts=("127.0.0.1", "localhost"))
        self.ca_bundle = str(tls.ca_cert)
        self._mon_addrs = f"[v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]"
        sections = _settings(
            fsid=self.fsid,
            w=w,
            mon=self._mon_addrs,
            http=self.http_port,
            https=self.https_port,
            cert=tls.chain,
            key=tls.key,
            memstore=self.memstore_bytes,
            threads=self.rgw_threads,
        )
        for section, values in self.extra_conf.items():
            sections.setdefault(section, {}).update(values)
        self.conf.write_text(_render_conf(sections))
        keyring = str(w / "keyring")
        self._run(["ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.",
                   "--cap", "mon", "allow *"])  # fmt: skip
        for name, caps in (
            ("client.admin", ("mon", "allow *", "osd", "allow *", "mds", "allow *", "mgr", "allow *")),
            ("osd.0", ("mon", "allow profile osd", "osd", "allow *", "mgr", "allow profile osd")),
            (RGW_NAME, ("mon", "allow rw", "osd", "allow rwx", "mgr", "allow rw")),
        ):
            cap_args = []
            for i in range(0, len(caps), 2):
                cap_args += ["--cap", caps[i], caps[i + 1]]
            self._run(["ceph-authtool", keyring, "--gen-key", "-n", name, *cap_args])
        os.chmod(keyring, 0o600)
        self._run(["monmaptool", "--create", "--fsid", self.fsid, "--addv", "a", self._mon_addrs,
                   str(w / "monmap")])  # fmt: skip

    def _daemon(self, name: str, cmd: list[str]) -> ManagedProcess:
        """Start one daemon, its console output in ``log/<name>.out``."""
        return self._spawn(name, cmd, log=self.logdir / f"{name}.out")

    def _wait(self, daemon: ManagedProcess, what: str, check: Callable[[], bool], deadline: float) -> None:
        """Wait for ``check()`` while every daemon started so far runs."""
        others = [p for p in self._procs.values() if p is not daemon]
        daemon.wait_for(check, max(0.0, deadline - time.monotonic()), what, also=others)

    def _start_mon(self) -> None:
        c = ["-c", str(self.conf)]
        self._run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(self.workdir / "monmap"),
                   "--keyring", str(self.workdir / "keyring")])  # fmt: skip
        self._daemon("mon.a", ["ceph-mon", *c, "-f", "-i", "a"])

    def _start_osd(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph("osd", "new", osd_uuid, "0", timeout=max(5.0, deadline - time.monotonic()))
        if osd_id.strip() != "0":
            raise CephStartError(f"ceph osd new returned {osd_id.strip()!r}, expected 0")
        c = ["-c", str(self.conf)]
        self._run(["ceph-osd", *c, "--mkfs", "-i", "0", "--osd-uuid", osd_uuid])
        osd = self._daemon("osd.0", ["ceph-osd", *c, "-f", "-i", "0"])

        def osd_up() -> bool:
            stat = json.loads(self.ceph("osd", "stat", "-f", "json", timeout=15))
            return stat.get("num_up_osds") == 1 and stat.get("num_in_osds") == 1

        self._wait(osd, "up and in", osd_up, deadline)

    def _start_rgw(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        rgw = self._daemon(RGW_NAME, ["radosgw", "-c", str(self.conf), "-f", "-n", RGW_NAME])

        def rgw_answers() -> bool:
            try:
                with urllib.request.urlopen(self.http_endpoint, timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        self._wait(rgw, "answering on HTTP", rgw_answers, deadline)


def _settings(**v: Any) -> dict[str, dict[str, str]]:
    """ceph.conf of the throwaway cluster, by section (the reasons are in shared/NOTES.md)."""
    w = v["w"]
    return {
        "global": {
            "fsid": v["fsid"],
            "mon host": v["mon"],
            "mon initial members": "a",
            # every messenger on loopback: without "cluster addr" ceph-osd binds its cluster and
            # heartbeat-back ports on 0.0.0.0 (measured: four ports)
            "public addr": "127.0.0.1",
            "cluster addr": "127.0.0.1",
            "ms bind ipv6": "false",
            "auth cluster required": "cephx",
            "auth service required": "cephx",
            "auth client required": "cephx",
            "keyring": f"{w}/keyring",
            "run dir": f"{w}/run",
            "admin socket": f"{w}/run/$name.asok",
            "log file": f"{w}/log/$name.log",
            "log to stderr": "false",
            "err to stderr": "true",
            "pid file": "",
            # objects in RAM: no block device, fast start (bluestore on a sparse file takes ~5 s)
            "osd objectstore": "memstore",
            "memstore device bytes": str(v["memstore"]),
            # one OSD: pools of size 1, placement across OSDs rather than hosts
            "osd pool default size": "1",
            "osd pool default min size": "1",
            "mon allow pool size one": "true",
            "mon allow pool delete": "true",
            "osd crush chooseleaf type": "0",
            # RGW creates ~8 pools: keep them small or they overflow the PG-per-OSD limit
            "osd pool default pg num": "8",
            "osd pool default pgp num": "8",
            "osd pool default pg autoscale mode": "off",
            "mon max pg per osd": "1000",
            # start-up 13 s -> ~2 s
            "paxos propose interval": "0.05",
            # no manager daemon: do not let the monitor complain or wait for one
            "mon mgr mkfs grace": "86400",
            "mon warn on pool no redundancy": "false",
            "auth allow insecure global id reclaim": "false",
            "mon warn on insecure global id reclaim allowed": "false",
        },
        "mon": {"mon data": f"{w}/mon/$cluster-$id"},
        "osd": {
            "osd data": f"{w}/osd/$cluster-$id",
            "osd max object name len": "460",
            "osd max object namespace len": "64",
        },
        RGW_NAME: {
            "rgw data": f"{w}/rgw",
            # beast: civetweb cannot do TLS with OpenSSL 3
            "rgw frontends": (
                f"beast endpoint=127.0.0.1:{v['http']} ssl_endpoint=127.0.0.1:{v['https']} "
                f"ssl_certificate={v['cert']} ssl_private_key={v['key']}"
            ),
            "rgw thread pool size": str(v["threads"]),
            "rgw enable usage log": "false",
            # lifecycle workers poll every 5 s and hold up a SIGTERM that long; no test or demo uses
            # lifecycle rules (expiration) on the throwaway cluster
            "rgw enable lc threads": "false",
        },
    }


def _render_conf(sections: dict[str, dict[str, str]]) -> str:
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out += [f"{k} = {val}" for k, val in values.items()]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a throwaway single-node Ceph RGW on 127.0.0.1")
    parser.add_argument("--workdir", required=True, help="folder for the cluster (absent or empty)")
    parser.add_argument("--user", action="append", default=[], help="RGW user to create (repeatable)")
    args = parser.parse_args(argv)
    cluster = CephCluster(args.workdir)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster.start()
        for name in args.user:
            cluster.create_user(name)
        info = {
            "endpoint": cluster.https_endpoint,
            "http_endpoint": cluster.http_endpoint,
            "ca_bundle": cluster.ca_bundle,
            "start_seconds": round(cluster.start_seconds or 0, 2),
            "pids": cluster.pids,
            "users": {u.name: {"access_key": u.access_key, "secret_key": u.secret_key}
                      for u in cluster.users.values()},
        }  # fmt: skip
        print(json.dumps(info), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except CephError as e:
        print(str(e), file=sys.stderr)
        sys.exit(1)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
