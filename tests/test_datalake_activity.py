"""A busy kernel counts as server activity (what the idle culler reads), an idle one does not."""

from __future__ import annotations

from types import SimpleNamespace

from valeria_datalake.activity import KEY, mark_if_busy


def test_busy_kernels_mark_activity_idle_ones_do_not():
    kernels = {"a": SimpleNamespace(execution_state="idle"), "b": SimpleNamespace(execution_state="starting")}
    app = SimpleNamespace(
        kernel_manager=SimpleNamespace(_kernels=kernels), web_app=SimpleNamespace(settings={})
    )
    assert mark_if_busy(app) is False and app.web_app.settings == {}
    kernels["c"] = SimpleNamespace(execution_state="busy")
    assert mark_if_busy(app) is True
    first = app.web_app.settings["last_activity_times"][KEY]
    assert mark_if_busy(app) is True and app.web_app.settings["last_activity_times"][KEY] >= first
    assert first.tzinfo is not None  # compared with jupyter-server's aware UTC datetimes
