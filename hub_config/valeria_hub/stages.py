"""How long each stage of one spawn took: a tiny timer the pipeline fills and anyone can read back.

`SpawnStages.stage(name)` times one stage (async or not, repeated stages add up). When the spawn
is over, `report()` logs one line `Spawn stages of <user>: token_refresh=0.012 vault_login=0.030 ...`
(seconds; bench/hub_load.py reads it from the hub's log) and hands the durations to every callable
in `OBSERVERS` (e.g. a Prometheus histogram: `OBSERVERS.append(lambda stage, seconds: ...)`).
Stage names: token_refresh, vault_login, vault_read, vault_revoke, plan, start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: called as observer(stage, seconds) for every stage of every finished spawn
OBSERVERS: list[Callable[[str, float], None]] = []

LOG_PREFIX = "Spawn stages of "


class SpawnStages:
    """Durations of the stages of one spawn, in the order they first ran."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.durations[name] = self.durations.get(name, 0.0) + time.perf_counter() - t0

    def report(self, username: str, log: logging.Logger) -> None:
        """Log one line with every stage and pass each to the observers (failures included)."""
        if not self.durations:
            return
        log.info(
            "%s%s: %s", LOG_PREFIX, username, " ".join(f"{k}={v:.4f}" for k, v in self.durations.items())
        )
        for observer in OBSERVERS:
            for name, seconds in self.durations.items():
                try:
                    observer(name, seconds)
                except Exception as e:  # an observer never breaks a spawn
                    log.warning("spawn stage observer failed (%s)", type(e).__name__)


def parse_report(line: str) -> tuple[str, dict[str, float]] | None:
    """(username, durations) from a line logged by `report`, or None."""
    at = line.find(LOG_PREFIX)
    if at < 0:
        return None
    user, _, rest = line[at + len(LOG_PREFIX) :].partition(": ")
    try:
        return user, {k: float(v) for k, v in (item.split("=", 1) for item in rest.split())}
    except ValueError:
        return None
