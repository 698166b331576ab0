"""LocalDatalakeSpawner: the same SpawnPlan applied to a local process (the local platform).

It runs the same pipeline (fresh token → Vault → validated plan), gives the process the plan's
environment (the S3 keys too: a local process has no Secret objects), and a per-user home and
scratch under VALERIA_LOCAL_ROOT. It cannot switch uid (the hub runs as one user), and says so in
the log at every spawn instead of pretending.
"""

from __future__ import annotations

import os

from jupyterhub.spawner import LocalProcessSpawner

from .spawnbase import PlannedSpawnerMixin


class LocalDatalakeSpawner(PlannedSpawnerMixin, LocalProcessSpawner):
    """Local-process spawner applying the Vault-driven SpawnPlan (no uid switch)."""

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
        self.plan = None
        plan = await self.make_plan()
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
        return await super().start()
