"""``make bench-hub USERS=N``: a class of N students logging in and starting servers at once.

Everything real, on 127.0.0.1: PostgreSQL (hub database), the OIDC realm (Keycloak stand-in),
OpenBao (Vault), moto S3 with per-user IAM (counts requests), configurable-http-proxy, and
JupyterHub with hub_config/jupyterhub_config.py and the local spawner: real jupyter servers with the
datalake extension. Counting TCP proxies (valeria_platform.tcpproxy) sit in front of the realm and
OpenBao, each in a process of its own (in this one, the students' threads could slow them).
Each simulated student, in its own thread, all released at the same moment, does over
HTTP what a browser does: the IdP login form post and the OAuth callback, the spawn, opening
JupyterLab (the server's own OAuth), the first ``GET /api/contents/`` of the root (bucket
discovery) and of their bucket; then the server is stopped. login→ready ends with the bucket
listing.

The baseline, in the same run: plain JupyterHub (bench/plain_jupyterhub_config.py) with the same
proxy, database and local spawner but DummyAuthenticator and no pipeline; its servers get the same
S3 environment. Then the login/refresh path alone (no spawn) for ``--login-users`` students.

Writes bench/HUB_RESULTS.md; the last line printed is
``N users: F failures, p95 login-to-ready X s (plain JupyterHub Y s)``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import requests

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO / "hub_config"), str(REPO / "local_platform")]

from valeria_hub.stages import parse_report  # noqa: E402
from valeria_platform.classroom import RESEARCHERS, Student, provision, realm_users, students  # noqa: E402
from valeria_platform.demo import DemoPlatform  # noqa: E402
from valeria_platform.moto_site import start_moto_site  # noqa: E402
from valeria_platform.oidc import NODE_DIR, OIDCProvider, follow_login  # noqa: E402
from valeria_platform.openbao import OpenBao, configure_vault  # noqa: E402
from valeria_platform.postgres import PostgresServer  # noqa: E402
from valeria_platform.procs import ManagedProcess, child_env, free_port, local_url  # noqa: E402
from valeria_platform.tcpproxy import TcpProxyProcess  # noqa: E402

WORK = BENCH / "work" / "hub"
CLIENT_ID = "jupyterhub"
STAGES = ("token_refresh", "vault_login", "vault_read", "vault_revoke", "plan", "start")
HTTP_TIMEOUT = 300
STUDENT = re.compile(r"^student\d+$")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))]


@dataclass
class Result:
    name: str
    login: float | None = None
    ready: float | None = None  # login→ready: start of login to the bucket listing
    failure: str | None = None


@dataclass
class Phase:
    label: str
    results: list[Result] = field(default_factory=list)
    wall: float = 0.0
    hub_cpu: float = 0.0
    hub_rss_max: float = 0.0
    load_max: float = 0.0
    requests: dict[str, Counter] = field(default_factory=dict)
    stages: dict[str, list[float]] = field(default_factory=dict)

    def ok(self, attr: str) -> list[float]:
        return [getattr(r, attr) for r in self.results if r.failure is None and getattr(r, attr) is not None]

    def failures(self) -> Counter:
        return Counter(r.failure for r in self.results if r.failure)


class Monitor:
    """Hub CPU seconds (hub process and its proxy) and peak RSS, load average, sampled every 0.5 s."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.cpu0 = self._cpu()
        self.rss_max = 0.0
        self.load_max = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.rss_max = max(self.rss_max, self.proc.memory_info().rss / 2**20)
            except psutil.Error:
                pass
            self.load_max = max(self.load_max, os.getloadavg()[0])

    def stop(self) -> tuple[float, float, float]:
        self._stop.set()
        self._thread.join()
        return self._cpu() - self.cpu0, self.rss_max, self.load_max


# -- the platform -------------------------------------------------------------------------------------


class Platform:
    """PostgreSQL, realm (behind a counting proxy), OpenBao (behind one), moto S3, the class."""

    def __init__(self, class_: list[Student]) -> None:
        self.class_ = class_
        self.stoppers: list[Any] = []

    def start(self, provisioned: int) -> None:
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        self.pg = PostgresServer(WORK / "pg").start()
        self.stoppers.append(self.pg.stop)
        self.kc_proxy = TcpProxyProcess().start()
        self.stoppers.append(self.kc_proxy.stop)
        self.client_secret = secrets.token_urlsafe(16)
        self.hub_port = free_port()
        self.plain_port = free_port()
        self.oidc = OIDCProvider(
            users=realm_users(self.class_),
            clients=[{
                "client_id": CLIENT_ID, "client_secret": self.client_secret,
                "redirect_uris": [f"{local_url(p)}/hub/oauth_callback" for p in (self.hub_port,)],
            }],
            workdir=WORK / "oidc",
            public_base=self.kc_proxy.url,
        ).start()  # fmt: skip
        self.stoppers.append(self.oidc.stop)
        self.kc_proxy.set_target(self.oidc.port)
        self.vault = OpenBao(workdir=WORK / "openbao").start()
        self.stoppers.append(self.vault.stop)
        self.vault_proxy = TcpProxyProcess(self.vault.port).start()
        self.stoppers.append(self.vault_proxy.stop)
        configure_vault(self.vault, self.oidc.issuer, audience=CLIENT_ID)
        self.s3 = start_moto_site()
        self.stoppers.append(self.s3.counter.stop)
        t0 = time.monotonic()
        provision(self.class_[:provisioned], self.s3, self.vault, self.oidc.subjects())
        print(f"provisioned {provisioned} students in {time.monotonic() - t0:.0f} s", flush=True)
        DemoPlatform._enable_notebook_extension()

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception as e:
                print(f"stopping failed: {e}")

    def database(self, name: str) -> tuple[str, str]:
        password = secrets.token_urlsafe(16)
        self.pg.create_database(name, name, password)
        return self.pg.url(name, name), password

    def base_env(self) -> dict[str, str]:
        path = os.pathsep.join([str(Path(sys.executable).parent), str(NODE_DIR / "node_modules" / ".bin"),
                                os.environ.get("PATH", "")])  # fmt: skip
        env = child_env(drop=("AWS_", "VAULT_", "BAO_", "VALERIA_", "JUPYTERHUB_"), PATH=path)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "server_ext"), str(REPO / "hub_config"),
                                             str(REPO / "local_platform")])  # fmt: skip
        return env

    def valeria_hub(self, name: str, hub_args: list[str], **overrides: str) -> ManagedProcess:
        db_url, db_password = self.database(name)
        env = self.base_env()
        env.update({
            "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
            "VALERIA_OIDC_REALM_URL": self.oidc.issuer,
            "VALERIA_OIDC_CLIENT_ID": CLIENT_ID,
            "VALERIA_OIDC_CLIENT_SECRET": self.client_secret,
            "VALERIA_OIDC_ALLOWED_GROUPS": RESEARCHERS,
            "VALERIA_HUB_PUBLIC_URL": local_url(self.hub_port),
            "VALERIA_HUB_BIND_URL": local_url(free_port()),
            "VALERIA_PROXY_API_URL": local_url(free_port()),
            "VALERIA_DB_URL": db_url,
            "VALERIA_DB_PASSWORD": db_password,
            "VALERIA_VAULT_ADDR": self.vault_proxy.url,
            "VALERIA_UID_MIN": "1000",
            "VALERIA_UID_MAX": "60000",
            "VALERIA_S3_ENDPOINT": self.s3.endpoint,
            "VALERIA_SPAWNER": "local",
            "VALERIA_LOCAL_ROOT": str(WORK / name / "users"),
            **overrides,
        })  # fmt: skip
        return self._start_hub(name, [str(REPO / "hub_config" / "jupyterhub_config.py")], env, hub_args,
                               local_url(self.hub_port))  # fmt: skip

    def plain_hub(self, hub_args: list[str]) -> ManagedProcess:
        db_url, db_password = self.database("plainhub")
        keys_file = WORK / "plain-keys.json"
        keys_file.write_text(json.dumps({n: [u.access_key, u.secret_key] for n, u in self.s3.users.items()}))
        env = self.base_env()
        env.update({
            "PGPASSWORD": db_password,
            "PLAIN_PASSWORD": self.class_[0].password,
            "PLAIN_PUBLIC_URL": local_url(self.plain_port),
            "PLAIN_HUB_BIND_URL": local_url(free_port()),
            "PLAIN_PROXY_API_URL": local_url(free_port()),
            "PLAIN_DB_URL": db_url,
            "PLAIN_KEYS_FILE": str(keys_file),
            "PLAIN_USERS_ROOT": str(WORK / "plainhub" / "users"),
            "PLAIN_S3_ENDPOINT": self.s3.endpoint,
        })  # fmt: skip
        return self._start_hub("plainhub", [str(BENCH / "plain_jupyterhub_config.py")], env, hub_args,
                               local_url(self.plain_port))  # fmt: skip

    def _start_hub(
        self, name: str, config: list[str], env: dict, args: list[str], url: str
    ) -> ManagedProcess:
        workdir = WORK / name
        workdir.mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(workdir)
        proc = ManagedProcess(name, [sys.executable, "-m", "jupyterhub", "-f", *config, *args],
                              workdir / "hub.log", env=env, cwd=workdir)  # fmt: skip
        proc.start()
        proc.wait_for(lambda: requests.get(f"{url}/hub/health", timeout=2).status_code == 200, 120, "healthy")
        self.stoppers.append(lambda: stop_servers_under(workdir))
        return proc


def stop_servers_under(workdir: Path) -> None:
    """Kill the notebook servers a hub left running (cleanup_servers is False): HOME under workdir."""
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "jupyterhub-singleuser" in " ".join(proc.info["cmdline"] or []):
                if proc.environ().get("HOME", "").startswith(str(workdir)):
                    proc.kill()
        except psutil.Error:
            continue


# -- one student ----------------------------------------------------------------------------------------


def xsrf(session: requests.Session, path: str) -> str:
    values = [c.value for c in session.cookies if c.name == "_xsrf" and c.path == path]
    return values[-1] if values else ""


def login_valeria(url: str, s: requests.Session, student: Student) -> None:
    r = s.get(
        f"{url}/hub/oauth_login", params={"next": "/hub/home"}, allow_redirects=False, timeout=HTTP_TIMEOUT
    )
    r = follow_login(s, r, student.name, student.password, timeout=HTTP_TIMEOUT)
    if r.status_code != 200 or not r.url.endswith("/hub/home"):
        raise Failure("login", f"HTTP {r.status_code}")


def login_plain(url: str, s: requests.Session, student: Student) -> None:
    s.get(f"{url}/hub/login", timeout=HTTP_TIMEOUT)
    form = {"username": student.name, "password": student.password, "_xsrf": xsrf(s, "/hub/")}
    r = s.post(f"{url}/hub/login?next=%2Fhub%2Fhome", data=form, timeout=HTTP_TIMEOUT)
    if r.status_code != 200 or not r.url.endswith("/hub/home"):
        raise Failure("login", f"HTTP {r.status_code}")


class Failure(Exception):
    def __init__(self, phase: str, cause: str) -> None:
        super().__init__(f"{phase}: {cause}")
        self.cause = f"{phase}: {cause}"


def hub_api(url: str, s: requests.Session, method: str, path: str) -> requests.Response:
    return s.request(method, f"{url}/hub/api{path}", headers={"X-XSRFToken": xsrf(s, "/hub/")},
                     timeout=HTTP_TIMEOUT)  # fmt: skip


def wait_server(url: str, s: requests.Session, ready: bool, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = hub_api(url, s, "GET", "/user")
        if r.status_code == 503:  # a service was down for this poll (as JupyterLab, poll again)
            time.sleep(0.5)
            continue
        if r.status_code != 200:
            raise Failure("wait", f"HTTP {r.status_code}")
        server = r.json()["servers"].get("")
        if ready and server and server.get("ready"):
            return
        if ready and not server:
            raise Failure("spawn", "server stopped before it was ready (start timeout or crash)")
        if not ready and not server:
            return
        time.sleep(0.5)
    raise Failure("wait", "not ready after 900 s")


def one_student(url: str, student: Student, login: Any, spawn: bool, start_at: float) -> Result:
    result = Result(student.name)
    s = requests.Session()
    time.sleep(max(0.0, start_at - time.monotonic()))
    t0 = time.monotonic()
    try:
        try:
            login(url, s, student)
        except requests.RequestException as e:
            raise Failure("login", connection_error(e)) from None
        result.login = time.monotonic() - t0
        if not spawn:
            time.sleep(1.5)  # past auth_refresh_age: the next request refreshes the access token
            r = hub_api(url, s, "GET", "/user")
            if r.status_code != 200:
                raise Failure("refresh", f"HTTP {r.status_code}")
            return result
        r = hub_api(url, s, "POST", f"/users/{student.name}/server")
        if r.status_code not in (201, 202):
            raise Failure("spawn", f"HTTP {r.status_code} {r.json().get('message', '')[:70]}")
        wait_server(url, s, ready=True)
        r = s.get(f"{url}/user/{student.name}/lab", timeout=HTTP_TIMEOUT)
        if r.status_code != 200:
            raise Failure("lab", f"HTTP {r.status_code} at {generic_path(urlsplit(r.url).path)}")
        r = s.get(f"{url}/user/{student.name}/api/contents/", params={"content": "1"}, timeout=HTTP_TIMEOUT)
        names = [e["name"] for e in r.json().get("content", [])] if r.status_code == 200 else []
        folder = f"datalake_{student.bucket}"
        if folder not in names:
            raise Failure("contents", f"HTTP {r.status_code}, no {folder} in the root")
        r = s.get(f"{url}/user/{student.name}/api/contents/{folder}", params={"content": "1"},
                  timeout=HTTP_TIMEOUT)  # fmt: skip
        if r.status_code != 200:
            raise Failure("contents", f"bucket HTTP {r.status_code}")
        result.ready = time.monotonic() - t0
        hub_api(url, s, "DELETE", f"/users/{student.name}/server")
        wait_server(url, s, ready=False)
    except Failure as f:
        result.failure = f.cause
    except requests.RequestException as e:
        result.failure = f"http: {connection_error(e)}"
    return result


def connection_error(e: requests.RequestException) -> str:
    """The exception's class, which side it hit and why, in a few words (for the failure table)."""
    where = generic_path(urlsplit(e.request.url).path) if e.request is not None and e.request.url else "?"
    reasons = ("refused", "reset", "RemoteDisconnected", "timed out", "aborted")
    why = next((w for w in reasons if w in str(e)), "")
    return f"{type(e).__name__} ({why or 'other'}) at {where}"


def generic_path(path: str) -> str:
    return "/".join("<user>" if STUDENT.match(p) else "<id>" if len(p) > 24 else p for p in path.split("/"))


def generic_paths(requests_seen: Counter) -> Counter:
    """Requests by path with user names and random ids replaced, so paths add up across users."""
    out: Counter = Counter()
    for (_, path), n in requests_seen.items():
        out[generic_path(path)] += n
    return out


def run_phase(label: str, url: str, hub: ManagedProcess, class_: list[Student], login: Any, spawn: bool,
              platform: Platform, ramp: float = 0.0) -> Phase:  # fmt: skip
    """Every student starts at the same moment, or spread evenly over `ramp` seconds."""
    phase = Phase(label)
    for proxy in (platform.kc_proxy, platform.vault_proxy):
        proxy.reset()
    platform.s3.counter.reset()
    monitor = Monitor(hub.pid)
    start_at = time.monotonic() + 2.0
    t0 = time.monotonic()
    with ThreadPoolExecutor(len(class_)) as pool:
        starts = [start_at + ramp * i / len(class_) for i in range(len(class_))]
        phase.results = list(pool.map(lambda st, at: one_student(url, st, login, spawn, at), class_, starts))
    phase.wall = time.monotonic() - t0 - 2.0 - ramp
    phase.hub_cpu, phase.hub_rss_max, phase.load_max = monitor.stop()
    phase.requests = {
        "Keycloak": generic_paths(platform.kc_proxy.requests),
        "Vault": generic_paths(platform.vault_proxy.requests),
        "S3": Counter(platform.s3.counter.stats()["ops"]),
    }
    names = {st.name for st in class_}
    for line in hub.log_path.read_text(errors="replace").splitlines():
        parsed = parse_report(line)
        if parsed and parsed[0] in names:
            for stage, seconds in parsed[1].items():
                phase.stages.setdefault(stage, []).append(seconds)
    return phase


# -- the report -------------------------------------------------------------------------------------------


def fmt(x: float) -> str:
    return "-" if x != x else (f"{x:.2f}" if x >= 0.1 else f"{x * 1000:.0f} ms")


def report(n: int, ours: Phase, plain: Phase | None, logins: Phase | None, notes: list[str]) -> str:
    lines = [
        "# Hub under a class of students (`make bench-hub`)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"({psutil.virtual_memory().total / 2**30:.0f} GiB), shared with other jobs: see the load average. "
        "Command: `" + " ".join(["python", "bench/hub_load.py", *sys.argv[1:]]) + "`.",
        "",
        "| | " + " | ".join(p.label for p in (ours, plain, logins) if p) + " |",
        "|---|" + "---|" * len([p for p in (ours, plain, logins) if p]),
    ]
    phases = [p for p in (ours, plain, logins) if p]

    def row(name: str, fn) -> None:
        lines.append(f"| {name} | " + " | ".join(fn(p) for p in phases) + " |")

    row("students", lambda p: str(len(p.results)))
    row("failures", lambda p: str(sum(p.failures().values())))

    def spread(values: list[float]) -> str:
        if not values:
            return "-"
        return " / ".join(fmt(x) for x in (pct(values, 50), pct(values, 95), max(values)))

    row("login p50 / p95 / max (s)", lambda p: spread(p.ok("login")))
    row("login→ready p50 / p95 / max (s)", lambda p: spread(p.ok("ready")))
    row("wall time of the phase (s)", lambda p: fmt(p.wall))
    row("hub CPU (s) / peak RSS (MiB)", lambda p: f"{p.hub_cpu:.1f} / {p.hub_rss_max:.0f}")
    row("peak load average (1 min)", lambda p: f"{p.load_max:.1f}")
    for service in ("Keycloak", "Vault", "S3"):
        row(
            f"{service} requests per student",
            lambda p, s=service: f"{sum(p.requests[s].values()) / max(1, len(p.results)):.1f}",
        )
    for stage in STAGES:

        def stage_row(p: Phase, s: str = stage) -> str:
            values = p.stages.get(s, [])
            return " / ".join(fmt(pct(values, q)) for q in (50, 95)) if values else "-"

        row(f"stage {stage} p50 / p95", stage_row)
    lines += ["", "Failures by cause:", ""]
    for p in phases:
        causes = p.failures()
        lines.append(f"- {p.label}: " + (", ".join(f"{c} × {k}" for k, c in causes.most_common()) or "none"))
    lines += ["", "Requests by path (whole phase):", ""]
    for p in phases:
        for service in ("Keycloak", "Vault", "S3"):
            top = ", ".join(f"`{k}` {v}" for k, v in p.requests[service].most_common(8))
            lines.append(f"- {p.label}, {service}: {top or 'none'}")
    lines += ["", *notes]
    p95 = pct(ours.ok("ready"), 95)
    plain95 = pct(plain.ok("ready"), 95) if plain else float("nan")
    lines += ["", f"{n} users: {sum(ours.failures().values())} failures, p95 login-to-ready {p95:.1f} s "
              f"(plain JupyterHub {plain95:.1f} s)"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="students who spawn (default 50)")
    parser.add_argument(
        "--login-users", type=int, default=500, help="students in the login-only run (0: skip)"
    )
    parser.add_argument(
        "--login-ramp", type=float, default=0.0, help="spread the login-only students over this many seconds"
    )
    parser.add_argument("--no-plain", action="store_true", help="skip the plain JupyterHub baseline")
    parser.add_argument(
        "--hub-arg", action="append", default=[], help="extra JupyterHub option for both hubs (repeatable)"
    )
    parser.add_argument("--out", default=str(BENCH / "HUB_RESULTS.md"))
    parser.add_argument("--note", action="append", default=[], help="a line added to the report")
    args = parser.parse_args(argv)

    # both hubs get a lecture's timeouts: 50 servers starting at once on 2 cores need minutes to
    # answer (run 1: every spawn of both hubs failed JupyterHub's default 30 s http_timeout)
    args.hub_arg = ["--Spawner.http_timeout=300", "--Spawner.start_timeout=600", *args.hub_arg]
    class_ = students(max(args.users, args.login_users))
    platform = Platform(class_)
    ours = plain = logins = None
    try:
        platform.start(provisioned=args.users)
        spawners = class_[: args.users]
        # the hub's defaults against Keycloak's default token lifetime (300 s, the realm's too): a
        # token obtained at the login is not refreshed again for the spawn (runs 1-5 set the margin
        # to the lifetime, so every spawn and every poll refreshed: the login-only phase does that)
        hub = platform.valeria_hub("valeriahub", args.hub_arg)
        url = local_url(platform.hub_port)
        print(f"ours: {args.users} students log in and spawn ...", flush=True)
        ours = run_phase("Valeria hub", url, hub, spawners, login_valeria, True, platform)
        hub.stop(timeout=60)
        if not args.no_plain:
            plain_hub = platform.plain_hub(args.hub_arg)
            print(f"plain JupyterHub: {args.users} students log in and spawn ...", flush=True)
            plain = run_phase("plain JupyterHub", local_url(platform.plain_port), plain_hub, spawners,
                              login_plain, True, platform)  # fmt: skip
            plain_hub.stop(timeout=60)
        if args.login_users:
            # every request after auth_refresh_age refreshes: the token is always within the margin
            hub = platform.valeria_hub("loginhub", args.hub_arg, VALERIA_AUTH_REFRESH_AGE="1",
                                       VALERIA_TOKEN_REFRESH_MARGIN="300")  # fmt: skip
            print(f"login and refresh only: {args.login_users} students ...", flush=True)
            ramp = f", over {args.login_ramp:.0f} s" if args.login_ramp else ""
            label = f"login+refresh only ({args.login_users}{ramp})"
            logins = run_phase(label, url, hub, class_[: args.login_users], login_valeria, False, platform,
                               args.login_ramp)  # fmt: skip
            hub.stop(timeout=60)
    finally:
        platform.stop()
    text = report(args.users, ours, plain, logins, args.note)
    Path(args.out).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
