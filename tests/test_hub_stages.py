"""The spawn stage timer: what the pipeline records, what it logs, and how it is read back."""

from __future__ import annotations

import logging

import pytest
from valeria_hub.stages import OBSERVERS, SpawnStages, parse_report


def test_stages_add_up_log_one_line_and_feed_observers(caplog):
    stages = SpawnStages()
    with stages.stage("vault_read"):
        pass
    with stages.stage("vault_read"):
        pass
    with pytest.raises(RuntimeError), stages.stage("start"):
        raise RuntimeError("a failed stage is timed too")
    seen: list[tuple[str, float]] = []
    OBSERVERS.append(lambda name, seconds: seen.append((name, seconds)))
    OBSERVERS.append(lambda name, seconds: 1 / 0)  # a broken observer breaks nothing
    try:
        with caplog.at_level(logging.INFO):
            stages.report("alice", logging.getLogger("test"))
    finally:
        del OBSERVERS[-2:]
    (line,) = [r.getMessage() for r in caplog.records if "Spawn stages" in r.getMessage()]
    user, durations = parse_report("[I 2026 JupyterHub] " + line)
    assert user == "alice" and list(durations) == ["vault_read", "start"]
    assert [name for name, _ in seen] == ["vault_read", "start"]
    assert all(v >= 0 for v in durations.values())
    assert parse_report("something else") is None
