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
import sys
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
        self._terminated = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # what this run prints starts here (a log reused by a restart keeps the earlier runs)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._terminated = False
        # a service that prints secrets goes through a pipe that redacts them, the others straight
        # to the log (the child keeps its own copy of the file)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.redact else log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        if self.redact:
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

    def wait_for(
        self,
        ready: Callable[[], bool],
        timeout: float,
        what: str = "ready",
        also: Sequence[ManagedProcess] = (),
    ) -> None:
        """Poll ``ready()`` until true; fail with the log tail if the process (or one of ``also``,
        the processes it needs) dies, or if time runs out. Either way the failed process is
        stopped, with whatever it started in its process group."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in (self, *also):
                if not proc.running():
                    code = proc.proc.returncode if proc.proc else None
                    proc.stop()  # what it started in its group (a hub's proxy) goes with it
                    raise ServiceError(
                        f"{proc.name} exited (code {code}) before {self.name} was {what}; "
                        f"log {proc.log_path}:\n" + log_tail(proc.log_path)
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

    def wait_for_line(self, prefix: str, timeout: float = 30.0) -> str:
        """The first line this run printed that starts with ``prefix`` (a ``READY ...`` handshake)."""
        found: list[str] = []

        def printed() -> bool:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                text = log.read().decode(errors="replace")
            found.extend(line for line in text.splitlines() if line.startswith(prefix))
            return bool(found)

        self.wait_for(printed, timeout, f"printing {prefix.strip()!r}")
        return found[0]

    def terminate(self) -> None:
        """SIGTERM the process group we created (once, if the process still runs); do not wait."""
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self._terminated = True
            _signal_group(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the process to end; whether it has."""
        try:
            if self.proc is not None:
                self.proc.wait(timeout=max(0.0, timeout))
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group we created, then SIGKILL it if it lingers."""
        proc = self.proc
        if proc is None:
            return
        self.terminate()
        if not self.wait(timeout):
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


def processes_with_env(name: str, prefix: str) -> list[int]:
    """PIDs of the processes (this one aside) whose environment variable ``name`` starts with
    ``prefix``, read from /proc (processes of other users are not readable, so not found)."""
    key = name.encode() + b"="
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        value = next((item[len(key) :] for item in environ if item.startswith(key)), None)
        if value is not None and value.decode(errors="replace").startswith(prefix):
            found.append(int(entry.name))
    return found


def process_ended(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie has: only its parent's reaping is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def stop_pids(pids: Sequence[int], timeout: float = 10.0) -> None:
    """SIGTERM each process, then SIGKILL the ones still running after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(process_ended(pid) for pid in pids):
            time.sleep(0.1)
        pids = [pid for pid in pids if not process_ended(pid)]
        if not pids:
            return


def stop_hub_servers(hub_bind_url: str, timeout: float = 10.0) -> list[int]:
    """Stop what a stopped local hub leaves running (``JupyterHub.cleanup_servers = False`` keeps
    servers across hub restarts): its users' notebook servers and their kernels, which all carry
    ``JUPYTERHUB_API_URL`` under ``hub_bind_url``. Returns their PIDs."""
    pids = processes_with_env("JUPYTERHUB_API_URL", hub_bind_url.rstrip("/") + "/")
    stop_pids(pids, timeout)
    return pids


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


def package_env(**extra: str) -> dict[str, str]:
    """:func:`child_env` for a child that runs ``python -m valeria_platform...``: it imports this
    very package, wherever it was imported from."""
    here = str(Path(__file__).resolve().parents[1])
    return child_env(PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])), **extra)


class LocalService(StartStop):
    """What every local service launcher shares: a work folder (a fresh private temp folder, made
    when first needed, unless one is given; only a folder made here is removed at :meth:`stop`), its
    log there, the child processes (PIDs, ordered stop), ``127.0.0.1:port`` (``requested_port`` 0:
    a free one) and the context manager.

    Subclasses set ``log_name`` and ``temp_prefix``, implement :meth:`start`, and start their
    children with :meth:`_spawn` (or :meth:`_spawn_ready` for a ``python -m`` child that prints
    ``READY <values>``).
    """

    #: file name of the service's log inside ``workdir``
    log_name = "service.log"
    #: prefix of the temp folder made when no workdir is given
    temp_prefix = "valeria-"
    #: seconds each child gets to stop before the next one (in reverse start order) is signalled
    stop_step = 15.0
    #: seconds all children get to stop before the ones still running are killed
    stop_timeout = 15.0

    def __init__(self, workdir: str | Path | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._own_workdir = workdir is None
        self._workdir = Path(workdir) if workdir else None
        self._procs: dict[str, ManagedProcess] = {}

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=self.temp_prefix))
        return self._workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / self.log_name

    @property
    def pids(self) -> dict[str, int]:
        """PID of every child process running now, by name."""
        return {name: p.pid for name, p in self._procs.items() if p.pid is not None}

    @property
    def pid(self) -> int | None:
        """PID of the (first) child process, or None."""
        return next(iter(self.pids.values()), None)

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
        log: Path | None = None,
    ) -> ManagedProcess:
        """Start the child process ``name``, its output going to ``log`` (default ``log_path``)."""
        proc = ManagedProcess(name, argv, log or self.log_path, env=env, cwd=cwd, redact=redact)
        self._procs[name] = proc
        proc.start()
        return proc

    def _spawn_ready(
        self, name: str, module: str, *args: str, timeout: float = 30.0, **env: str
    ) -> list[str]:
        """Run ``python -m module args`` (with :func:`package_env` plus ``env``) and wait for the
        line ``READY <values>`` it prints once it listens; returns the values."""
        proc = self._spawn(name, [sys.executable, "-m", module, *args], env=package_env(**env))
        return proc.wait_for_line("READY ", timeout).split()[1:]

    def _stop_processes(self) -> None:
        """Stop the children in reverse start order, each given ``stop_step`` seconds before the
        next is signalled; whatever still runs ``stop_timeout`` seconds after the first signal is
        killed."""
        procs = list(reversed(self._procs.values()))
        self._procs.clear()
        deadline = time.monotonic() + self.stop_timeout
        for p in procs:
            p.terminate()
            p.wait(min(self.stop_step, deadline - time.monotonic()))
        for p in procs:
            p.stop(timeout=max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop the child processes (if any) and remove the work folder if it was made here."""
        self._stop_processes()
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
