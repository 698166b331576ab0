"""Seeing the hub: its Prometheus metrics at /hub/metrics and its JSON audit log, through a real hub.

One hub of its own (so counts start at zero): JupyterHub + proxy + the OIDC realm + OpenBao +
PostgreSQL, with a `metrics` service token. The scenario drives a refused login (carol, no group),
a login and spawn (alice), a spawn refused by Vault's values (bob, uid out of range), admin actions
by bob (stop alice's server, create and delete a user) and a forced re-login (alice's grant revoked),
then reads /hub/metrics with the service token and the audit lines from the hub's stdout.
"""

from __future__ import annotations

import json
import secrets

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from valeria_platform.openbao import KV_MOUNT, write_user_secrets

from tests.fixtures.hub import RunningHub, hub_api, hub_login, start_db_hub
from tests.fixtures.services import VAULT_USERS
from tests.test_dashboard import missing_from
from tests.test_hub_spawn import wait_server

pytestmark = pytest.mark.hub

Samples = dict[tuple[str, frozenset], float]


def parse_metrics(text: str) -> Samples:
    """{(sample name, frozenset of labels): value} of a Prometheus text exposition."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def audit_lines(hub: RunningHub) -> list[dict]:
    return [json.loads(line) for line in hub.log_text().splitlines() if line.startswith('{"time":')]


@pytest.fixture(scope="module")
def observed(tmp_path_factory, oidc_provider, openbao, postgres):
    """The hub, after the scenario; yields (hub, metrics text, secrets that must not appear)."""
    metrics_token = secrets.token_hex(32)
    workdir = tmp_path_factory.mktemp("hub-observed")
    hub = start_db_hub(
        workdir, oidc_provider, openbao, postgres, name="hub-observed", VALERIA_METRICS_TOKEN=metrics_token
    )
    leaks = list(hub.secrets)
    leaks += [v[4] for v in VAULT_USERS.values()]
    try:
        # carol is in no allowed group: refused
        _, r = hub_login(hub, oidc_provider, "carol")
        assert r.status_code == 403
        # alice logs in and spawns
        alice, r = hub_login(hub, oidc_provider, "alice")
        assert r.status_code == 200
        assert hub_api(hub, alice, "POST", "/users/alice/server").status_code in (201, 202)
        wait_server(hub, alice, ready=True)
        state = hub.auth_state("alice") or {}
        leaks += [state.get("access_token"), state.get("refresh_token"), state.get("id_token")]
        # bob's uid in Vault is out of range: refused, no server
        bob, r = hub_login(hub, oidc_provider, "bob")
        assert r.status_code == 200
        _, gid, groups, access, secret = VAULT_USERS["bob"]
        bob_sub = oidc_provider.subjects()["bob"]  # Vault paths follow the OIDC subject
        openbao.client().secrets.kv.v2.create_or_update_secret(
            path=f"valeria/users/{bob_sub}/posix",
            secret={"uid": "70000", "gid": str(gid)},
            mount_point=KV_MOUNT,
        )
        try:
            assert hub_api(hub, bob, "POST", "/users/bob/server").status_code == 403
        finally:
            write_user_secrets(openbao, bob_sub, access, secret, 1002, gid, groups)
        # then his S3 keys are missing in Vault: refused, a Vault error counted
        openbao.client().secrets.kv.v2.delete_metadata_and_all_versions(
            path=f"valeria/users/{bob_sub}/s3", mount_point=KV_MOUNT
        )
        try:
            assert hub_api(hub, bob, "POST", "/users/bob/server").status_code == 403
        finally:
            write_user_secrets(openbao, bob_sub, access, secret, 1002, gid, groups)
        state = hub.auth_state("bob") or {}
        leaks += [state.get("access_token"), state.get("refresh_token"), state.get("id_token")]
        # bob is a hub admin: he stops alice's server, and tries to create a user
        assert hub_api(hub, bob, "DELETE", "/users/alice/server").status_code in (202, 204)
        wait_server(hub, alice, ready=False)
        # creating users is not an admin right here (users come from Keycloak): refused, still audited
        assert hub_api(hub, bob, "POST", "/users/dave").status_code == 403
        # alice's grant is revoked: her next spawn needs a new login
        oidc_provider.revoke_user("alice")
        assert hub_api(hub, alice, "POST", "/users/alice/server").status_code == 403
        # the metrics endpoint: only with a read:metrics token
        assert requests.get(f"{hub.url}/hub/metrics", timeout=30).status_code == 403
        assert alice.get(f"{hub.url}/hub/metrics", timeout=30).status_code == 403  # no read:metrics
        r = requests.get(
            f"{hub.url}/hub/metrics", headers={"Authorization": f"token {metrics_token}"}, timeout=30
        )
        assert r.status_code == 200, r.text[:300]
        exported = r.text
        # the metrics service may read metrics and nothing else: its attempt to stop a server fails
        as_metrics = {"Authorization": f"token {metrics_token}"}
        r = requests.delete(f"{hub.url}/hub/api/users/alice/server", headers=as_metrics, timeout=30)
        assert r.status_code == 403
        yield hub, exported, [s for s in leaks if s]
    finally:
        hub.stop()


def test_hub_metrics_count_the_scenario(observed):
    _, text, _ = observed
    m = parse_metrics(text)
    stage = "valeria_spawn_stage_duration_seconds_count"
    # three spawns went through the pipeline (alice's, bob's two refused ones); alice's
    # expired-login spawn is refused by JupyterHub's pre-spawn refresh, before the spawner
    assert value(m, stage, stage="token_refresh") == 3
    assert value(m, stage, stage="vault_login") == 3
    assert value(m, stage, stage="vault_read") == 3  # identity and S3 keys: one observation a spawn
    assert value(m, stage, stage="vault_revoke") == 3
    assert value(m, stage, stage="plan") == 2  # bob's second spawn stopped at the missing keys
    assert value(m, stage, stage="start") == 1
    assert value(m, "valeria_spawns_total") == 1
    assert value(m, "valeria_spawn_refusals_total", reason="uid-range") == 1
    assert value(m, "valeria_spawn_refusals_total", reason="missing") == 1
    refusals = {k: v for k, v in m.items() if k[0] == "valeria_spawn_refusals_total" and v}
    assert len(refusals) == 2
    for operation, ok, n in (("login", 3, 3), ("read", 5, 6), ("revoke", 3, 3)):
        assert value(m, "valeria_vault_requests_total", operation=operation, outcome="ok") == ok
        assert value(m, "valeria_vault_request_duration_seconds_count", operation=operation) == n
    assert value(m, "valeria_vault_requests_total", operation="read", outcome="missing") == 1
    # Keycloak: discovery once, a code exchange per login (3) plus refresh grants, userinfo each
    assert value(m, "valeria_keycloak_requests_total", operation="discovery", outcome="ok") == 1
    assert value(m, "valeria_keycloak_requests_total", operation="token", outcome="ok") >= 5
    assert value(m, "valeria_keycloak_requests_total", operation="token", outcome="http_4xx") >= 1
    assert value(m, "valeria_keycloak_requests_total", operation="userinfo", outcome="ok") >= 3
    assert value(m, "valeria_keycloak_request_duration_seconds_count", operation="token") >= 6
    assert value(m, "valeria_token_refreshes_total", outcome="ok") >= 2
    assert value(m, "valeria_token_refreshes_total", outcome="refused") >= 1
    assert value(m, "valeria_forced_relogins_total") >= 1
    assert value(m, "valeria_audit_events_total", event="login") == 2
    assert value(m, "valeria_audit_events_total", event="admin_action") == 2
    # JupyterHub's own metrics are still there
    assert total(m, "jupyterhub_server_spawn_duration_seconds_count", status="success") == 1
    # no label value comes from user input: every series has a label set from our fixed lists
    for (name, labels), _ in m.items():
        if name.startswith("valeria_"):
            assert all(v in KNOWN_LABEL_VALUES for k, v in labels if k != "le"), (name, labels)


KNOWN_LABEL_VALUES = {
    *("token_refresh", "vault_login", "vault_read", "vault_revoke", "plan", "start"),
    *("login", "read", "revoke", "other", "ok", "error", "refused"),
    *("discovery", "token", "userinfo", "http_4xx", "http_5xx", "unreachable"),
    *("login_refused", "spawn", "spawn_refused", "spawn_failed", "stop", "admin_action"),
    *("uid-range", "missing"),
}


def test_audit_log_has_one_json_line_per_event(observed):
    hub, _, _ = observed
    lines = audit_lines(hub)
    by_event: dict[str, list[dict]] = {}
    for line in lines:
        assert set(line) >= {"time", "event"}
        by_event.setdefault(line["event"], []).append(line)
    uid, gid, groups, _, _ = VAULT_USERS["alice"]

    (refused_login,) = by_event["login_refused"]
    assert refused_login["user"] == "carol" and refused_login["reason"] == "not-allowed"
    logins = {line["user"]: line for line in by_event["login"]}
    assert set(logins) == {"alice", "bob"}
    assert logins["bob"]["admin"] is True and logins["alice"]["admin"] is False
    # (group names as Keycloak sends them: with or without the leading slash of a full path)
    assert "researchers" in [g.lstrip("/") for g in logins["alice"]["groups"]]
    assert logins["alice"]["ip"] == "127.0.0.1"

    (spawn,) = by_event["spawn"]
    assert spawn["user"] == "alice" and spawn["uid"] == uid and spawn["gid"] == gid
    assert spawn["supplemental_gids"] == groups

    refused = by_event["spawn_refused"]
    assert [(r["user"], r["reason"], r["status"]) for r in refused] == [
        ("bob", "uid-range", 403),
        ("bob", "missing", 403),
    ]
    assert not any("uid" in r for r in refused)  # no plan was made

    assert [line["user"] for line in by_event["stop"]] == ["alice"]
    admin = [(a["actor"], a["method"], a["path"], a["target"], a["status"]) for a in by_event["admin_action"]]
    stop = [a for a in admin if a[:4] == ("bob", "DELETE", "/hub/api/users/alice/server", "alice")]
    assert len(stop) == 1 and stop[0][4] in (202, 204)
    assert ("bob", "POST", "/hub/api/users/dave", "dave", 403) in admin
    # a refused attempt by a service is an admin action too
    assert ("metrics", "DELETE", "/hub/api/users/alice/server", "alice", 403) in admin
    kinds = {a["actor"]: a["actor_kind"] for a in by_event["admin_action"]}
    assert kinds == {"bob": "user", "metrics": "service"}
    # users' own spawns and stops are not admin actions
    assert not any(a["actor"] == a["target"] for a in by_event["admin_action"])


def test_no_secret_in_the_audit_log_or_the_hub_log(observed):
    hub, _, leaks = observed
    assert len(leaks) >= 10
    audit_text = "\n".join(json.dumps(line) for line in audit_lines(hub))
    assert [s[:8] for s in leaks if s in audit_text] == []
    assert [s[:8] for s in leaks if s in hub.log_text()] == []


def test_dashboard_hub_queries_name_exported_metrics(observed):
    _, text, _ = observed
    exported = {name for name, _ in parse_metrics(text)}
    assert missing_from("valeria-hub", exported) == set()
