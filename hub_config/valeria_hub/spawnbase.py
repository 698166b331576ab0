"""What every Valeria spawner shares: the settings trait and running the spawn pipeline.

The Kubernetes spawner and the local-process spawner differ only in how they apply a SpawnPlan;
how the plan is made (fresh token → Vault → validated plan) lives here once.
"""

from __future__ import annotations

from traitlets import Instance
from traitlets.config import LoggingConfigurable

from . import metrics
from .audit import audit, spawn_fields
from .errors import SpawnRefused
from .pipeline import AuthStateSource, plan_spawn
from .plan import SpawnPlan
from .settings import HubSettings
from .stages import SpawnStages
from .vault import VaultClient


class PlannedSpawnerMixin(LoggingConfigurable):
    """Mixed into a JupyterHub Spawner subclass (before the Spawner in the bases)."""

    valeria_settings = Instance(HubSettings, allow_none=True, config=True, help="The hub's HubSettings.")

    plan: SpawnPlan | None = None

    def _auth_state_source(self) -> AuthStateSource:
        """A fresh (refreshed if near expiry) auth state when the authenticator can give one."""
        authenticator = getattr(self, "authenticator", None) or getattr(self.user, "authenticator", None)
        if authenticator is not None and hasattr(authenticator, "fresh_auth_state"):
            return lambda: authenticator.fresh_auth_state(self.user)
        return self.user.get_auth_state

    async def make_plan(self, stages: SpawnStages | None = None) -> SpawnPlan:
        """Run the spawn pipeline; any failure raises SpawnRefused and nothing starts."""
        if self.valeria_settings is None:
            raise SpawnRefused(
                "The hub is misconfigured (no settings); contact the administrators.", "config"
            )
        vault = VaultClient(self.valeria_settings, log=self.log)
        try:
            return await plan_spawn(
                self.valeria_settings,
                vault,
                self.user.name,
                self._auth_state_source(),
                log=self.log,
                stages=stages,
            )
        except SpawnRefused as e:
            self._refused(e)
            raise

    def _refused(self, error: SpawnRefused) -> None:
        reason = metrics.count_refusal(error)
        audit("spawn_refused", **spawn_fields(self), reason=reason, status=error.status_code)

    async def start(self):
        """The spawner's own start (after make_plan, timed by the subclass), audited."""
        try:
            result = await super().start()
        except SpawnRefused as e:
            self._refused(e)
            raise
        except Exception as e:
            audit("spawn_failed", **spawn_fields(self), reason=type(e).__name__)
            raise
        metrics.SPAWNS.inc()
        audit("spawn", **spawn_fields(self))
        return result

    async def stop(self, now=False):
        try:
            return await super().stop(now=now)
        finally:
            audit("stop", **spawn_fields(self))
