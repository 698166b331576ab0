"""The audit log's and the metrics' guards, without a hub: what a careless caller cannot leak.

The real hub's lines are checked in tests/test_hub_observability.py; here, what those runs do not
reach: a value that is not plain (an auth state, an object whose str() holds a token) is dropped,
an unknown field or event is refused, label values stay within their fixed sets, and the audit
logger writes JSON to stdout through its one handler without reaching JupyterHub's log.
"""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from valeria_hub import audit, metrics
from valeria_hub.errors import SpawnRefused


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured():
    logger = audit.audit_logger()
    handler = Capture()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


class Leaky:
    def __str__(self) -> str:
        return "access-token-DO-NOT-LEAK"


def test_values_that_are_not_plain_are_dropped(captured):
    audit.audit(
        "login",
        user="alice",
        groups=["researchers", {"token": "x"}, Leaky()],
        ip=Leaky(),
        admin={"auth_state": {"access_token": "access-token-DO-NOT-LEAK"}},
    )
    (record,) = captured.records
    line = audit.JsonLineFormatter().format(record)
    assert "DO-NOT-LEAK" not in line
    doc = json.loads(line)
    assert doc["event"] == "login" and doc["user"] == "alice" and doc["groups"] == ["researchers"]
    assert "ip" not in doc and "admin" not in doc
    assert doc["time"].endswith("+00:00")


def test_long_text_is_cut(captured):
    audit.audit("admin_action", path="/hub/api/users/" + "x" * 5000)
    (record,) = captured.records
    assert len(record.audit_fields["path"]) == 256


@pytest.mark.parametrize(
    "event, fields", [("loginn", {}), ("login", {"token": "t"}), ("spawn", {"auth_state": {}})]
)
def test_unknown_events_and_fields_are_refused(captured, event, fields):
    with pytest.raises(ValueError):
        audit.audit(event, **fields)
    assert captured.records == []


def test_the_audit_logger_writes_json_lines_to_stdout_only(monkeypatch):
    logger = logging.getLogger(audit.LOGGER_NAME)
    saved = list(logger.handlers)
    for handler in saved:
        logger.removeHandler(handler)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    try:
        audit.audit_logger()
        audit.audit_logger()  # idempotent: still one handler
        assert len(logger.handlers) == 1 and logger.propagate is False
        audit.audit("stop", user="alice", server="")
        (line,) = out.getvalue().splitlines()
        assert json.loads(line)["event"] == "stop" and line.startswith('{"time":')
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in saved:
            logger.addHandler(handler)


def test_refusal_reasons_and_stages_are_a_fixed_set():
    assert metrics.refusal_reason("uid-range") == "uid-range"
    assert metrics.refusal_reason("alice'); DROP") == "other"
    assert metrics.refusal_reason(None) == "other"
    before = metrics.SPAWN_REFUSALS.labels("other")._value.get()
    assert metrics.count_refusal(SpawnRefused("no", reason="<script>")) == "other"
    assert metrics.SPAWN_REFUSALS.labels("other")._value.get() == before + 1
    metrics.observe_stage("user-supplied", 1.0)  # a name outside the fixed set makes no series
    stages = {s.labels.get("stage") for m in metrics.SPAWN_STAGE_SECONDS.collect() for s in m.samples}
    assert "user-supplied" not in stages and "token_refresh" in stages


def test_keycloak_operations_come_from_the_discovered_urls():
    class Authenticator:
        token_url = "https://sso.example.org/realms/v/protocol/openid-connect/token"
        userdata_url = "https://sso.example.org/realms/v/protocol/openid-connect/userinfo"

    a = Authenticator()
    assert metrics.keycloak_operation(a.token_url, a) == "token"
    assert metrics.keycloak_operation(a.userdata_url + "?x=1", a) == "userinfo"
    assert metrics.keycloak_operation(
        "https://sso.example.org/realms/v/.well-known/openid-configuration", a
    ) == ("discovery")
    assert metrics.keycloak_operation("https://sso.example.org/anything/else", a) == "other"
