"""PostgreSQL 15 on loopback for the hub database (production uses PostgreSQL too).

``initdb`` and ``pg_ctl`` refuse to run as root, so as root they run as the ``postgres`` user
(``runuser -u postgres --``) on a data directory owned by it; as any other user they run directly.
Only TCP on 127.0.0.1 with SCRAM passwords; no Unix socket. The cluster is kept in the workdir, so
a second start reuses it (the demo starts in seconds the second time).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typing_extensions import Self

from .procs import LocalService, ServiceError, free_port, log_tail, persistent_secret, retry_port_clash

PG_BIN = Path(os.environ.get("VALERIA_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _sql_ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"unsafe SQL identifier {name!r}")
    return '"' + name + '"'


class PostgresServer(LocalService):
    """One PostgreSQL cluster in ``workdir`` listening on ``127.0.0.1:port`` (a free port when 0)."""

    log_name = "postgres.log"  # a copy of the server's own log, made at stop

    def __init__(self, workdir: str | Path, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(Path(workdir), port, host)
        self._as_postgres = os.geteuid() == 0
        self._users: dict[str, str] = {}  # database -> owner
        self._fallback_dir: Path | None = None

    # -- paths -------------------------------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        return self._base / "data"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID (pg_ctl daemonizes it), from its postmaster.pid, or None."""
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def _base(self) -> Path:
        return self._fallback_dir or self.workdir / "pg"

    @property
    def _password_file(self) -> Path:
        return self.workdir / "pg-superuser-password"

    def _run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def _postgres_can_use(self, path: Path) -> bool:
        if not self._as_postgres:
            return True
        return self._run(["test", "-w", str(path)]).returncode == 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Self:
        if not (PG_BIN / "initdb").exists():
            raise ServiceError(
                f"PostgreSQL 15 server binaries are missing in {PG_BIN} (make setup installs them)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        persistent_secret(self._password_file, 24, secrets.token_urlsafe)
        base = self.workdir / "pg"
        base.mkdir(exist_ok=True)
        if self._as_postgres:
            pg = pwd.getpwnam("postgres")
            os.chown(base, pg.pw_uid, pg.pw_gid)
            os.chmod(base, 0o700)
            if self._fallback_dir is None and not self._postgres_can_use(base):
                # a parent folder (pytest's 0700 tmp dirs) is closed to the postgres user
                self._fallback_dir = Path(tempfile.mkdtemp(prefix="valeria-pg-"))
                os.chown(self._fallback_dir, pg.pw_uid, pg.pw_gid)
        if not (self.datadir / "PG_VERSION").exists():
            self._initdb()
        return retry_port_clash(self._start_on_a_port, attempts=1 if self.requested_port else 3, pause=0.5)

    def _start_on_a_port(self) -> Self:
        self.port = self.requested_port or free_port(self.host)
        opts = f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories='' -c fsync=off"
        r = self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self._server_log),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        if r.returncode != 0:
            raise ServiceError(f"pg_ctl start failed:\n{r.stdout}{r.stderr}\n{log_tail(self._server_log)}")
        return self

    @property
    def _server_log(self) -> Path:
        # written by the postgres user: inside its own folder
        return self._base / "server.log"

    def _initdb(self) -> None:
        pwfile = self._base / "pwfile"
        pwfile.write_text(self._password_file.read_text())
        if self._as_postgres:
            pg = pwd.getpwnam("postgres")
            os.chown(pwfile, pg.pw_uid, pg.pw_gid)
        os.chmod(pwfile, 0o600)
        try:
            r = self._run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=reject",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if r.returncode != 0:
            raise ServiceError(f"initdb failed:\n{r.stdout}{r.stderr}")

    def stop(self, keep_data: bool = False) -> None:
        """Stop the server; its data is removed only if it lives in a fallback temp folder and
        ``keep_data`` is false (a cluster in the workdir always stays)."""
        if self.datadir.exists() and (self.datadir / "postmaster.pid").exists():
            r = self._run(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"], timeout=60
            )
            if r.returncode != 0 and (self.datadir / "postmaster.pid").exists():
                raise ServiceError(f"pg_ctl stop failed:\n{r.stdout}{r.stderr}")
        # keep the server's log next to the others for failure dumps
        if self._server_log.exists():
            shutil.copyfile(self._server_log, self.log_path)
        if self._fallback_dir is not None and not keep_data:
            shutil.rmtree(self._fallback_dir, ignore_errors=True)
            self._fallback_dir = None

    def restart_after(self, outage: Callable[[], None] = lambda: None) -> None:
        """Stop the server (data kept), run ``outage()`` while it is down, start it on the same port."""
        self.stop(keep_data=True)
        try:
            outage()
        finally:
            self.requested_port = self.port
            self.start()

    # -- databases ---------------------------------------------------------------------------------
    def connect(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> Any:
        import psycopg2

        if password is None and user == "postgres":
            password = self._password_file.read_text()
        return psycopg2.connect(
            host=self.host, port=self.port, dbname=dbname, user=user, password=password, connect_timeout=10
        )

    def create_database(self, name: str, user: str, password: str) -> None:
        """Create (or update) role ``user`` with ``password`` and database ``name`` it owns."""
        conn = self.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(f"{verb} ROLE {_sql_ident(user)} LOGIN PASSWORD %s", (password,))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if not cur.fetchone():
                    cur.execute(f"CREATE DATABASE {_sql_ident(name)} OWNER {_sql_ident(user)}")
        finally:
            conn.close()
        self._users[name] = user

    def url(self, db: str, user: str | None = None) -> str:
        """SQLAlchemy URL without the password (give it separately, e.g. ``VALERIA_DB_PASSWORD``)."""
        user = user or self._users.get(db, "postgres")
        return f"postgresql+psycopg2://{user}@{self.host}:{self.port}/{db}"
