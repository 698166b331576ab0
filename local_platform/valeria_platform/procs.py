"""Child processes of the local platform: started with a log file, waited for, stopped by PID.

Each service runs in its own process group (``start_new_session``), so stopping it also stops the
helpers it forked, and nothing else on the machine is touched.

Also the one home of what every launcher of ``valeria_platform`` needs: :class:`LocalService` (work
folder, log, PID, stop, context manager), :func:`free_port` and :func:`retry_port_clash` (a port
picked free may be taken before the service binds it), :func:`child_env` (the caller's secrets
never reach a child) and :func:`persistent_secret`.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from typing_extensions import Self

# What services print about themselves that must not reach a log (OpenBao's dev mode banner).
_SECRET_LINES = re.compile(rb"((?:Unseal Key|Root Token)\s*:\s*)\S+")

#: environment variables that carry secrets of the caller (S3 keys, Vault/OpenBao tokens): a local
#: service never inherits them
SECRET_ENV_PREFIXES = ("AWS_", "VAULT_", "BAO_")

T = TypeVar("T")


class ServiceError(RuntimeError):
    """A local service failed to start; the message carries the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (another process may take it before we bind it:
    see :func:`retry_port_clash`)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def local_url(port: int | None, scheme: str = "http", host: str = "127.0.0.1") -> str:
    """``scheme://host:port`` of a service on this machine."""
    return f"{scheme}://{host}:{port}"


def child_env(drop: Sequence[str] = SECRET_ENV_PREFIXES, **extra: str) -> dict[str, str]:
    """This process's environment without the variables starting with ``drop``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop))}
    env.update(extra)
    return env


def retry_port_clash(
    attempt: Callable[[], T],
    attempts: int,
    errors: type[Exception] | tuple[type[Exception], ...] = ServiceError,
    clash: Callable[[Exception], bool] = lambda e: True,
    pause: float = 0.0,
) -> T:
    """Run ``attempt()`` up to ``attempts`` times while it fails with one of ``errors`` that
    ``clash(error)`` says is a port taken between picking it free and binding it; re-raise the
    last failure (or any other one) as is."""
    for n in range(1, attempts + 1):
        try:
            return attempt()
        except errors as e:
            if n == attempts or not clash(e):
                raise
        if pause:
            time.sleep(pause)
    raise ValueError(f"attempts must be at least 1, not {attempts}")


def persistent_secret(path: Path, nbytes: int = 32, token: Callable[[int], str] = secrets.token_hex) -> str:
    """A random value (``token(nbytes)``) kept in ``path``, created 0600, so a restart reuses it."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token(nbytes))
    return path.read_text().strip()


def log_tail(path: Path | str, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One long-running child process whose output goes to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | str | None = None,
        redact: Sequence[str] = (),
    ) -> None:
        self.name = name
        #: strings (secrets the service prints, such as a dev root token) replaced in the log
        self.redact = [r for r in redact if r]
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.redact:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            return
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream) -> None:
        secrets = [r.encode() for r in self.redact]
        with open(self.log_path, "ab", buffering=0) as log:
            for line in iter(stream.readline, b""):
                for s in secrets:
                    line = line.replace(s, b"[redacted]")
                line = _SECRET_LINES.sub(rb"\1[redacted]", line)
                log.write(line)
        stream.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for(self, ready: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        """Poll ``ready()`` until true; fail with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                code = self.proc.returncode if self.proc else None
                raise ServiceError(
                    f"{self.name} exited (code {code}) before it was {what}; log {self.log_path}:\n"
                    + log_tail(self.log_path)
                )
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServiceError(
            f"{self.name} was not {what} after {timeout:.0f} s; log {self.log_path}:\n"
            + log_tail(self.log_path)
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group we created, then SIGKILL it if it lingers."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # helpers left in the group (if any) go too
        _signal_group(proc.pid, signal.SIGKILL)
        self.proc = None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class StartStop:
    """``with service:`` starts it and stops it whatever happens inside."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalService(StartStop):
    """What every local service launcher shares: a work folder (a fresh private temp folder unless
    one is given; only a folder made here is removed at :meth:`stop`), its log there, the PID of its
    child process, ``127.0.0.1:port`` (``requested_port`` 0: a free one) and the context manager.

    Subclasses set ``log_name`` and ``temp_prefix``, implement :meth:`start`, and start their child
    with :meth:`_spawn`.
    """

    #: file name of the service's log inside ``workdir``
    log_name = "service.log"
    #: prefix of the temp folder made when no workdir is given
    temp_prefix = "valeria-"

    def __init__(self, workdir: str | Path | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=self.temp_prefix))
        self._proc: ManagedProcess | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / self.log_name

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _url(self, scheme: str = "http") -> str:
        return local_url(self.port, scheme, self.host)

    def _private_workdir(self) -> None:
        """Create the work folder, readable by us alone (it holds the service's secrets)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | str | None = None,
        redact: Sequence[str] = (),
    ) -> ManagedProcess:
        """Start the service's child process, its output going to ``log_path``."""
        self._proc = ManagedProcess(name, argv, self.log_path, env=env, cwd=cwd, redact=redact)
        self._proc.start()
        return self._proc

    def stop(self) -> None:
        """Stop the child process (if any) and remove the work folder if it was made here."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
