"""Child processes of the local platform: started with a log file, waited for, stopped by PID.

Each service runs in its own process group (``start_new_session``), so stopping it also stops the
helpers it forked, and nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# What services print about themselves that must not reach a log (OpenBao's dev mode banner).
_SECRET_LINES = re.compile(rb"((?:Unseal Key|Root Token)\s*:\s*)\S+")


class ServiceError(RuntimeError):
    """A local service failed to start; the message carries the tail of its log."""


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
