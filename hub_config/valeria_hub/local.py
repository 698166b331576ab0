"""LocalDatalakeSpawner: the same SpawnPlan applied to a local process (the local platform).

It runs the same pipeline (fresh token → Vault → validated plan), gives the process the plan's
environment (the S3 keys too: a local process has no Secret objects), and a per-user home and
scratch under VALERIA_LOCAL_ROOT. It cannot switch uid (the hub runs as one user), and says so in
the log at every spawn instead of pretending.

Across hub restarts (`JupyterHub.cleanup_servers = False`) it re-adopts its servers the way
KubeSpawner re-adopts pods by name: the spawner state keeps the pid *and* the process's start time,
and poll() only claims a pid whose start time still matches. A bare pid (upstream's state) would
adopt whatever process reused the number after a reboot or a container restart.
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port

from .spawnbase import PlannedSpawnerMixin
from .stages import SpawnStages


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot, /proc/<pid>/stat field 22), or None.

    Together with the pid it names one process for the machine's uptime: a reused pid has another.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain spaces: split after its ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


#: ports of this hub's running local servers
_PORTS_IN_USE: set[int] = set()


def distinct_port() -> int:
    """A free port that no running server of this hub has. JupyterHub's random_port() (bind to
    port 0, close) can hand the same port to two of a class's servers starting at once: the second
    exits with "address in use" while the hub, polling that port, finds the first one up (bench:
    one 404 on a student's first /lab per 50-student run, plain JupyterHub too)."""
    while (port := random_port()) in _PORTS_IN_USE:
        pass
    _PORTS_IN_USE.add(port)
    return port


class DistinctPortMixin:
    """Mixed into a LocalProcessSpawner subclass (before it): a port of its own for every start."""

    async def start(self):
        self.port = distinct_port()
        return await super().start()

    async def stop(self, now=False):
        try:
            return await super().stop(now=now)
        finally:
            _PORTS_IN_USE.discard(self.port)


class LocalDatalakeSpawner(PlannedSpawnerMixin, DistinctPortMixin, LocalProcessSpawner):
    """Local-process spawner applying the Vault-driven SpawnPlan (no uid switch)."""

    #: start time of the server process (see process_start_time), persisted with the pid
    started: int | None = None

    def get_state(self):
        state = super().get_state()
        if self.pid and self.started is not None:
            state["started"] = self.started
        return state

    def load_state(self, state):
        super().load_state(state)
        self.started = state.get("started")

    def clear_state(self):
        super().clear_state()
        self.started = None

    async def poll(self):
        if self.proc is None and self.pid:
            # resumed from the database after a hub restart: is it still the process we started?
            now = process_start_time(self.pid)
            if self.started is None or now != self.started:
                self.log.warning(
                    "Server of %s: pid %d is no longer the process the hub started; not adopting it",
                    self.user.name,
                    self.pid,
                )
                self.clear_state()
                return 0
        return await super().poll()

    def make_preexec_fn(self, name):
        # no setuid: the hub's own user runs every local server (logged at each spawn)
        return None

    def user_env(self, env):
        env["USER"] = self.user.name
        if self.plan is not None:
            env["HOME"] = self.plan.home_dir
        return env

    def get_env(self):
        env = super().get_env()
        if self.plan is not None:
            env.update(self.plan.public_env)
            env.update(self.plan.secret_env)
        return env

    def get_args(self):
        args = super().get_args()
        if os.geteuid() == 0:
            args.append("--ServerApp.allow_root=True")
        return args

    async def start(self):
        stages = SpawnStages()
        try:
            return await self._start(stages)
        finally:
            stages.report(self.user.name, self.log)

    async def _start(self, stages: SpawnStages):
        self.plan = None
        self.started = None
        plan = await self.make_plan(stages)
        for path in (plan.home_dir, plan.scratch_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)
        self.plan = plan
        self.notebook_dir = plan.home_dir
        self.log.warning(
            "Local spawner: %s runs as the hub's own uid %d, not as the uid %d / gid %d from Vault "
            "(a local process cannot switch users; the Kubernetes spawner does)",
            self.user.name,
            os.geteuid(),
            plan.uid,
            plan.gid,
        )
        with stages.stage("start"):
            address = await super().start()
        self.started = process_start_time(self.pid)
        return address
