"""``make demo``: the whole platform on 127.0.0.1, every piece the production code path.

    python -m valeria_platform.demo --state .state [--hub-port 8000] [--db-url URL | --postgres] [--users N]

Starts, in order: the single-node Ceph RGW (users alice, bob and curator; seeded buckets), the
OIDC provider standing in for Keycloak (realm ``valeria``), OpenBao configured by the admin's own
``openshift/vault/configure-vault.sh`` and holding each user's S3 keys and uid/gid, then
JupyterHub with ``hub_config/jupyterhub_config.py`` configured through environment variables only
(``VALERIA_SPAWNER=local``, see docs/environment.md). Prints the URL and the logins, and stops
everything on Ctrl+C / SIGTERM. Everything lives in the state folder (``make clean`` removes it);
the hub's database, keys and the users' home/scratch folders survive a restart. ``--users N`` adds
a class of N students (``student001``...; see :mod:`valeria_platform.classroom`): realm users, RGW
users with a bucket each, Vault secrets with distinct uids; they share one random password, printed.

The browser test starts the same :class:`DemoPlatform`, so the demo is what CI drives.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from typing_extensions import Self

from .classroom import Student, provision, realm_users, students
from .oidc import NODE_DIR, OIDCProvider
from .openbao import OpenBao, configure_vault, write_user_secrets
from .procs import (
    SECRET_ENV_PREFIXES,
    ManagedProcess,
    ServiceError,
    StartStop,
    child_env,
    free_port,
    local_url,
    persistent_secret,
    stop_hub_servers,
)
from .seed import SHARED_BUCKET, SeedReport, seed_datalake

REPO = Path(__file__).resolve().parents[2]
HUB_CONFIG = REPO / "hub_config" / "jupyterhub_config.py"

REALM = "valeria"
CLIENT_ID = "jupyterhub"
#: full group paths, as Keycloak's group mapper sends them with "Full group path" on
RESEARCHERS = "/researchers"
HUB_ADMINS = "/hub-admins"
DEMO_PASSWORD = "demo"

#: username -> (uid, gid, supplementary gids, IdP groups)
DEMO_USERS: dict[str, tuple[int, int, list[int], list[str]]] = {
    "alice": (1001, 1001, [1001, 2000], [RESEARCHERS]),
    "bob": (1002, 1002, [1002, 2000, 2001], [RESEARCHERS, HUB_ADMINS]),
}


def _say(msg: str) -> None:
    print(msg, flush=True)


class DemoPlatform(StartStop):
    """Ceph RGW + OIDC provider + OpenBao + JupyterHub, started and stopped together."""

    def __init__(
        self,
        state: str | Path,
        hub_port: int = 8000,
        db_url: str | None = None,
        db_password: str | None = None,
        use_postgres: bool = False,
        password: str = DEMO_PASSWORD,
        access_token_ttl: int = 300,
        progress: Any = _say,
        users: int = 0,
    ) -> None:
        self.state = Path(state).resolve()
        self.hub_port = hub_port
        self.db_url = db_url
        self.db_password = db_password
        self.use_postgres = use_postgres
        self.password = password
        self.access_token_ttl = access_token_ttl
        self.progress = progress
        #: the class of students added with --users (empty by default)
        self.students: list[Student] = students(users) if users else []
        self.ceph: Any = None
        self.oidc: OIDCProvider | None = None
        self.vault: OpenBao | None = None
        self.postgres: Any = None
        self.hub: ManagedProcess | None = None
        self.seed: SeedReport | None = None
        self.timings: dict[str, float] = {}
        self._wrote_pids = False

    # -- where things are ------------------------------------------------------------------------
    @property
    def hub_url(self) -> str:
        return local_url(self.hub_port)

    @property
    def logs_dir(self) -> Path:
        return self.state / "logs"

    @property
    def users_root(self) -> Path:
        return self.state / "users"

    def log_files(self) -> dict[str, Path]:
        """Every service's log, for failure dumps (the hub's log holds the notebook servers' too)."""
        out: dict[str, Path] = {"hub (and notebook servers)": self.logs_dir / "hub.log"}
        if self.oidc is not None:
            out["oidc provider"] = self.oidc.log_path
        if self.vault is not None:
            out["openbao"] = self.vault.log_path
        if self.ceph is not None:
            for p in sorted(self.ceph.logdir.glob("*")):
                out[f"ceph {p.name}"] = p
        return {k: v for k, v in out.items() if v.exists()}

    # -- lifecycle -------------------------------------------------------------------------------
    def _step(self, n: int, total: int, what: str, fn: Any) -> Any:
        self.progress(f"[{n}/{total}] {what} ...")
        t0 = time.monotonic()
        result = fn()
        self.timings[what] = time.monotonic() - t0
        self.progress(f"[{n}/{total}] {what}: ok ({self.timings[what]:.1f} s)")
        return result

    def _preflight(self) -> None:
        """Fail in a second, not after starting Ceph: another demo on this state, or the port taken."""
        pid_file = self.state / "pids.json"
        if pid_file.exists():
            alive = {}
            for name, pid in json.loads(pid_file.read_text() or "{}").items():
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if str(self.state) in cmdline or name.split()[-1] in cmdline:
                    alive[name] = pid
            if alive:
                running = ", ".join(f"{n} {p}" for n, p in alive.items())
                raise ServiceError(
                    f"a demo is already running on {self.state} ({running}); stop it first (Ctrl+C there)"
                )
            pid_file.unlink()
        with socket.socket() as s:
            # as the proxy does: connections in TIME_WAIT from a previous run do not block the port
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.hub_port))
            except OSError:
                raise ServiceError(
                    f"port {self.hub_port} is in use: stop what listens there or use --hub-port"
                ) from None

    def start(self) -> Self:
        self.state.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state, 0o700)
        self.logs_dir.mkdir(exist_ok=True)
        self._preflight()
        total = 5 if self.use_postgres else 4
        try:
            self._step(1, total, "Ceph RGW datalake (alice, bob, curator; seeded buckets)", self._start_ceph)
            self._step(2, total, f"OIDC provider (Keycloak stand-in, realm {REALM})", self._start_oidc)
            self._step(
                3, total, "OpenBao configured by openshift/vault/configure-vault.sh", self._start_vault
            )
            if self.use_postgres:
                self._step(4, total, "PostgreSQL for the hub database", self._start_postgres)
            self._step(total, total, f"JupyterHub on {self.hub_url}", self._start_hub)
        except BaseException:
            self.stop()
            raise
        self._write_pids()
        return self

    def pids(self) -> dict[str, int]:
        """PID of every daemon started here (written to ``<state>/pids.json`` while running)."""
        out: dict[str, int] = {}
        if self.ceph is not None:
            out.update({f"ceph {k}": v for k, v in self.ceph.pids.items()})
        for name, svc in (("oidc provider", self.oidc), ("openbao", self.vault), ("jupyterhub", self.hub)):
            if svc is not None and svc.pid:
                out[name] = svc.pid
        return out

    def _write_pids(self) -> None:
        (self.state / "pids.json").write_text(json.dumps(self.pids(), indent=1) + "\n")
        self._wrote_pids = True

    def _start_ceph(self) -> None:
        from .ceph import CephCluster

        workdir = self.state / "ceph"
        # memstore keeps objects in RAM: every run starts an empty cluster and seeds it again
        shutil.rmtree(workdir, ignore_errors=True)
        self.ceph = CephCluster(workdir).start()
        for name in (*DEMO_USERS, "curator"):
            self.ceph.create_user(name)
        self.seed = seed_datalake(self.ceph.site(), self.ceph.share_read_only)

    def _start_oidc(self) -> None:
        users = [
            {"username": name, "password": self.password, "email": f"{name}@example.org", "groups": groups}
            for name, (_, _, _, groups) in DEMO_USERS.items()
        ] + realm_users(self.students)
        self.client_secret = persistent_secret(self.state / "oidc-client-secret")
        self.oidc = OIDCProvider(
            realm=REALM,
            users=users,
            clients=[{
                "client_id": CLIENT_ID,
                "client_secret": self.client_secret,
                "redirect_uris": [f"{self.hub_url}/hub/oauth_callback"],
                "post_logout_redirect_uris": [f"{self.hub_url}/hub/login"],
            }],
            access_token_ttl=self.access_token_ttl,
            workdir=self.state / "oidc",
        ).start()  # fmt: skip

    def _start_vault(self) -> None:
        assert self.oidc is not None and self.ceph is not None
        self.vault = OpenBao(workdir=self.state / "openbao").start()
        configure_vault(self.vault, self.oidc.issuer, audience=CLIENT_ID)
        subjects = self.oidc.subjects()  # Vault paths follow the immutable `sub`, not the username
        for name, (uid, gid, groups, _) in DEMO_USERS.items():
            keys = self.ceph.users[name]
            write_user_secrets(self.vault, subjects[name], keys.access_key, keys.secret_key, uid, gid, groups)
        if self.students:
            self.progress(
                f"      a class of {len(self.students)} students: RGW users, buckets, Vault secrets"
            )
            provision(self.students, self.ceph.site(), self.vault, subjects)

    def _start_postgres(self) -> None:
        from .postgres import PostgresServer

        self.postgres = PostgresServer(self.state / "postgres").start()
        password = persistent_secret(self.state / "hub-db-password", 16)
        self.postgres.create_database("jupyterhub", "jupyterhub", password)
        self.db_url = self.postgres.url("jupyterhub")
        self.db_password = password

    def hub_environment(self) -> dict[str, str]:
        """Exactly what an admin would set for the hub (docs/environment.md), nothing in code."""
        assert self.oidc is not None and self.vault is not None and self.ceph is not None
        hub_dir = self.state / "hub"
        venv_bin = str(Path(sys.executable).parent)
        path = os.pathsep.join(
            [venv_bin, str(NODE_DIR / "node_modules" / ".bin"), os.environ.get("PATH", "")]
        )
        env = child_env(drop=(*SECRET_ENV_PREFIXES, "VALERIA_", "JUPYTERHUB_"))
        env.update({
            "PATH": path,
            "JUPYTERHUB_CRYPT_KEY": persistent_secret(hub_dir / "crypt-key"),
            "VALERIA_OIDC_REALM_URL": self.oidc.issuer,
            "VALERIA_OIDC_CLIENT_ID": CLIENT_ID,
            "VALERIA_OIDC_CLIENT_SECRET": self.client_secret,
            "VALERIA_OIDC_ALLOWED_GROUPS": RESEARCHERS,
            "VALERIA_OIDC_ADMIN_GROUPS": HUB_ADMINS,
            "VALERIA_HUB_PUBLIC_URL": self.hub_url,
            "VALERIA_HUB_BIND_URL": local_url(free_port()),
            "VALERIA_PROXY_API_URL": local_url(free_port()),
            "VALERIA_DB_URL": self.db_url or f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}",
            "VALERIA_VAULT_ADDR": self.vault.addr,
            "VALERIA_S3_ENDPOINT": self.ceph.https_endpoint,
            "VALERIA_S3_CA_BUNDLE": self.ceph.ca_bundle,
            "VALERIA_S3_SHARED_BUCKETS": SHARED_BUCKET,
            "VALERIA_SPAWNER": "local",
            "VALERIA_LOCAL_ROOT": str(self.users_root),
        })  # fmt: skip
        if self.db_password:
            env["VALERIA_DB_PASSWORD"] = self.db_password
        return env

    @staticmethod
    def _enable_notebook_extension() -> None:
        """What a wheel install (and ``make setup``) does: enable valeria_datalake in this venv,
        with its JupyterLab extension (once built: ``make labextension``) and settings defaults."""
        config = REPO / "server_ext" / "jupyter-config"
        share = Path(sys.prefix) / "share" / "jupyter"
        copies = [
            (config / "jupyter_server_config.d" / "valeria_datalake.json",
             Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "valeria_datalake.json"),
            (config / "lab-settings" / "valeria-datalake.json",
             share / "lab" / "settings" / "overrides.d" / "valeria-datalake.json"),
        ]  # fmt: skip
        for src, dest in copies:
            if src.exists() and (not dest.exists() or dest.read_bytes() != src.read_bytes()):
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
        built = REPO / "server_ext" / "valeria_datalake" / "labextension"
        link = share / "labextensions" / "valeria-datalake"
        if (built / "package.json").exists() and not (
            link.is_symlink() and link.resolve() == built.resolve()
        ):
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.is_dir():
                shutil.rmtree(link)
            link.symlink_to(built, target_is_directory=True)

    def _start_hub(self) -> None:
        self._enable_notebook_extension()
        if shutil.which("configurable-http-proxy", path=str(NODE_DIR / "node_modules" / ".bin")) is None:
            raise ServiceError(
                f"configurable-http-proxy is missing in {NODE_DIR}/node_modules (make node-deps)"
            )
        hub_dir = self.state / "hub"
        hub_dir.mkdir(exist_ok=True)
        self.users_root.mkdir(exist_ok=True)
        env = self.hub_environment()
        jupyterhub = str(Path(sys.executable).parent / "jupyterhub")
        self.hub = ManagedProcess(
            "jupyterhub", [jupyterhub, "-f", str(HUB_CONFIG)], self.logs_dir / "hub.log", env=env, cwd=hub_dir
        )
        self.hub.start()
        self.hub.wait_for(self._hub_answers, 90, "answering on " + self.hub_url)

    def _hub_answers(self) -> bool:
        with urllib.request.urlopen(f"{self.hub_url}/hub/api", timeout=2) as r:
            return "version" in json.load(r)

    def _stop_hub(self) -> None:
        """Stop the hub, then its users' servers: it leaves them running (cleanup_servers is False,
        so that they outlive a hub restart), and they would outlive the demo."""
        if self.hub is not None:
            self.hub.stop(timeout=20)
            stop_hub_servers(self.hub.env["VALERIA_HUB_BIND_URL"])

    def stop(self) -> None:
        """Stop everything that was started, hub first. Safe to call twice."""
        for name, stop in (
            ("hub", self._stop_hub),
            ("postgres", lambda: self.postgres and self.postgres.stop()),
            ("openbao", lambda: self.vault and self.vault.stop()),
            ("oidc", lambda: self.oidc and self.oidc.stop()),
            ("ceph", lambda: self.ceph and self.ceph.stop()),
        ):
            try:
                stop()
            except Exception as e:  # keep stopping the others
                self.progress(f"stopping {name} failed: {e}")
        self.hub = None
        self.postgres = None
        if self._wrote_pids:
            (self.state / "pids.json").unlink(missing_ok=True)
            self._wrote_pids = False

    def banner(self) -> str:
        ceph = f"{self.ceph.https_endpoint} (Ceph RGW, CA {self.ceph.ca_bundle})" if self.ceph else "?"
        buckets = ", ".join(f"{b} ({o})" for b, o in (self.seed.buckets.items() if self.seed else []))
        lines = [
            "",
            f"  Valeria JupyterHub is running:  {self.hub_url}",
            "",
            f"  log in as  alice / {self.password}   (researchers)",
            f"         or  bob   / {self.password}   (researchers, hub admins: {self.hub_url}/hub/admin)",
            *([f"         or  {self.students[0].name}..{self.students[-1].name} / {self.students[0].password}"
               f"   (a class of {len(self.students)}, bucket <name>-data each)"] if self.students else []),
            "",
            f"  datalake   {ceph}",
            f"  buckets    {buckets}",
            f"  identity   {self.oidc.issuer if self.oidc else '?'}",
            f"  vault      {self.vault.addr if self.vault else '?'} (OpenBao dev)",
            f"  hub db     {self.db_url or 'sqlite (' + str(self.state / 'hub' / 'jupyterhub.sqlite') + ')'}",
            f"  state      {self.state}   logs in {self.logs_dir} and each service's folder",
            "",
            "  Ctrl+C stops everything.",
            "",
        ]  # fmt: skip
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the whole Valeria platform on 127.0.0.1")
    parser.add_argument("--state", default=".state", help="folder holding all demo state (default .state)")
    parser.add_argument("--hub-port", type=int, default=8000, help="public port of the hub (default 8000)")
    parser.add_argument(
        "--db-url", help="SQLAlchemy URL of the hub database (password in VALERIA_DB_PASSWORD)"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="start a local PostgreSQL for the hub database"
    )
    parser.add_argument(
        "--users", type=int, default=0, metavar="N",
        help="also create N students (realm users, RGW users with a bucket each, Vault secrets)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    platform = DemoPlatform(
        args.state, hub_port=args.hub_port, db_url=args.db_url,
        db_password=os.environ.get("VALERIA_DB_PASSWORD"), use_postgres=args.postgres, users=args.users,
    )  # fmt: skip
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    try:
        platform.start()
        _say(platform.banner())
        _say(f"  started in {time.monotonic() - t0:.1f} s")
        while not stop.is_set():
            if platform.hub is None or not platform.hub.running():
                _say(f"JupyterHub exited; see {platform.logs_dir / 'hub.log'}")
                return 1
            stop.wait(1.0)
    except KeyboardInterrupt:
        _say("\nstopping ...")
    except Exception as e:  # ServiceError, CephStartError...: the message carries the log tail
        _say(f"demo failed to start: {e}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        platform.stop()
        _say("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
