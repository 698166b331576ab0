"""SpawnPlan validation: no uid 0, nothing out of range, nothing malformed, no path tricks."""

from __future__ import annotations

import pytest
from valeria_hub.errors import PlanError
from valeria_hub.plan import build_plan, check_username, parse_identity, parse_s3_keys
from valeria_hub.settings import HubSettings

from tests.fixtures.hub import hub_env

SETTINGS = HubSettings.from_env(hub_env(VALERIA_UID_MIN="1000", VALERIA_UID_MAX="60000"))
KEYS = {"access_key": "AKIAALICE", "secret_key": "alice-secret-DO-NOT-LEAK"}


def test_identity_ints_and_cli_strings():
    ident = parse_identity({"uid": 1234, "gid": "2345", "groups": "3000, 3001,3000"}, SETTINGS)
    assert (ident.uid, ident.gid, ident.groups) == (1234, 2345, (3000, 3001))
    ident = parse_identity({"uid": "1234", "gid": 1234, "groups": [5000]}, SETTINGS)
    assert ident.groups == (5000,)
    assert parse_identity({"uid": 1234, "gid": 1234}, SETTINGS).groups == ()


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"uid": 0, "gid": 1234}, "uid-zero"),
        ({"uid": "0", "gid": 1234}, "uid-zero"),
        ({"uid": 1234, "gid": 0}, "uid-zero"),
        ({"uid": 999, "gid": 1234}, "uid-range"),
        ({"uid": 60001, "gid": 1234}, "uid-range"),
        ({"uid": 1234, "gid": 1234, "groups": [0]}, "uid-zero"),
        ({"uid": 1234, "gid": 1234, "groups": [99999]}, "uid-range"),
        ({"uid": -1234, "gid": 1234}, "uid-range"),
        ({"uid": "-1234", "gid": 1234}, "malformed"),
        ({"uid": "12a4", "gid": 1234}, "malformed"),
        ({"uid": " 1234", "gid": 1234}, "malformed"),
        ({"uid": 1234.0, "gid": 1234}, "malformed"),
        ({"uid": True, "gid": 1234}, "malformed"),
        ({"uid": None, "gid": 1234}, "malformed"),
        ({"uid": [1234], "gid": 1234}, "malformed"),
        ({"uid": "0x4d2", "gid": 1234}, "malformed"),
        ({"uid": 1234, "gid": 1234, "groups": {"a": 1}}, "malformed"),
        ({"uid": 1234, "gid": 1234, "groups": list(range(2000, 2100))}, "malformed"),
        ({"gid": 1234}, "missing"),
        ({"uid": 1234}, "missing"),
        (None, "malformed"),
        ("uid=1234", "malformed"),
    ],
)
def test_bad_identity_refused(data, reason):
    with pytest.raises(PlanError) as info:
        parse_identity(data, SETTINGS)
    assert info.value.reason == reason
    assert "administrators" in str(info.value)


@pytest.mark.parametrize(
    "data, reason",
    [
        ({}, "missing"),
        ({"access_key": "AKIA"}, "missing"),
        ({"access_key": "", "secret_key": "x"}, "missing"),
        ({"access_key": "AKIA", "secret_key": "has space-DO-NOT-LEAK"}, "malformed"),
        ({"access_key": "AKIA", "secret_key": "line\nbreak-DO-NOT-LEAK"}, "malformed"),
        ({"access_key": "AKIA", "secret_key": 12345}, "malformed"),
        ({"access_key": "AKIA", "secret_key": "ok", "session_token": ["x"]}, "malformed"),
        (None, "malformed"),
    ],
)
def test_bad_keys_refused_without_echo(data, reason):
    with pytest.raises(PlanError) as info:
        parse_s3_keys(data)
    assert info.value.reason == reason
    assert "DO-NOT-LEAK" not in str(info.value)


def test_keys_repr_hides_secret():
    keys = parse_s3_keys({**KEYS, "session_token": "tok-DO-NOT-LEAK"})
    assert "DO-NOT-LEAK" not in repr(keys)


@pytest.mark.parametrize("name", ["../bob", "a/b", "", "Alice", "a" * 80, ".hidden", "x..y", "a b"])
def test_unsafe_usernames_refused(name):
    with pytest.raises(PlanError):
        check_username(name)


def test_kubernetes_plan():
    ident = parse_identity({"uid": 1234, "gid": 2345, "groups": [3000]}, SETTINGS)
    plan = build_plan(SETTINGS, "alice", ident, parse_s3_keys(KEYS))
    assert (plan.uid, plan.gid, plan.supplemental_gids) == (1234, 2345, (3000,))
    assert plan.home_dir == "/home/alice" and plan.scratch_dir == "/scratch/alice"
    assert [(v.server, v.export_path, v.mount_path) for v in plan.volumes] == [
        ("nfs.example.org", "/home/alice", "/home/alice"),
        ("nfs.example.org", "/scratch/alice", "/scratch/alice"),
    ]
    assert plan.secret_env == {
        "AWS_ACCESS_KEY_ID": "AKIAALICE",
        "AWS_SECRET_ACCESS_KEY": "alice-secret-DO-NOT-LEAK",
    }
    assert plan.public_env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9"
    assert plan.public_env["VALERIA_SCRATCH_DIR"] == "/scratch/alice"
    assert not set(plan.public_env) & set(plan.secret_env)
    assert "DO-NOT-LEAK" not in repr(plan)


def test_plan_uses_path_templates():
    settings = HubSettings.from_env(
        hub_env(
            VALERIA_NFS_HOME_PATH="/lustre/home/{uid}", VALERIA_NFS_SCRATCH_PATH="/lustre/scratch/{username}"
        )
    )
    ident = parse_identity({"uid": 4321, "gid": 4321}, settings)
    plan = build_plan(settings, "bob", ident, parse_s3_keys(KEYS))
    assert [v.export_path for v in plan.volumes] == ["/lustre/home/4321", "/lustre/scratch/bob"]


def test_local_plan(tmp_path):
    settings = HubSettings.from_env(hub_env(VALERIA_SPAWNER="local", VALERIA_LOCAL_ROOT=str(tmp_path)))
    plan = build_plan(
        settings, "alice", parse_identity({"uid": 1234, "gid": 1234}, settings), parse_s3_keys(KEYS)
    )
    assert plan.volumes == ()
    assert plan.home_dir == str(tmp_path / "alice" / "home")
    assert plan.public_env["VALERIA_SCRATCH_DIR"] == str(tmp_path / "alice" / "scratch")
