"""What an admin runs in the first week besides the hub: builds that start once, and the nightly
database backup, whose script is run here against the real PostgreSQL and restored."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.test_openshift_templates import objects_of, one, render

PG_BIN = os.environ.get("VALERIA_PG_BIN", "/usr/lib/postgresql/15/bin")


def test_builds_start_only_when_asked() -> None:
    """A ConfigChange trigger starts a build at every `oc apply` that changes a BuildConfig (a new
    GIT_REF), and the docs' `oc start-build` would start a second one of the same commit."""
    for bc in objects_of(render("valeria-builds.yaml"), "BuildConfig"):
        kinds = [t["type"] for t in bc["spec"].get("triggers", [])]
        assert "ConfigChange" not in kinds and "ImageChange" not in kinds, bc["metadata"]["name"]


def _backup_job(**params: str) -> dict:
    objects = render("valeria-backup.yaml", **params)
    cron = one(objects, "CronJob")
    pvc = one(objects, "PersistentVolumeClaim")
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    return spec["containers"][0]


@pytest.mark.parametrize("password_file", ["plain", "echo-made"])
def test_backup_cronjob_dumps_verifies_rotates_and_restores(
    postgres, tmp_path: Path, password_file: str
) -> None:
    container = _backup_job(BACKUP_KEEP="2")
    env_spec = {e["name"]: e for e in container["env"]}
    assert env_spec["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "valeria-hub-db",
        "key": "password",
    }
    script = container["command"][2]
    # some data of the hub's, in the hub's database, as the hub's user
    conn = postgres.connect("jupyterhub", "jupyterhub", postgres.hub_password)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS backup_probe")
        cur.execute("CREATE TABLE backup_probe (name text)")
        cur.execute("INSERT INTO backup_probe VALUES ('alice'), ('bob')")
    conn.close()
    # three older dumps already there; BACKUP_KEEP=2 keeps the new one and the newest old one
    dumps = tmp_path / "backup"
    dumps.mkdir()
    for day in ("20261101", "20261102", "20261103"):
        (dumps / f"jupyterhub-{day}T023000Z.dump").write_bytes(b"old")
    env = {
        "PATH": f"{PG_BIN}:{os.environ['PATH']}",
        "PGHOST": postgres.host,
        "PGPORT": str(postgres.port),
        "PGDATABASE": "jupyterhub",
        "PGUSER": "jupyterhub",
        "PGPASSWORD": postgres.hub_password + ("\n" if password_file == "echo-made" else ""),
        "BACKUP_DIR": str(dumps),
        "BACKUP_KEEP": env_spec["BACKUP_KEEP"]["value"],
    }
    result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert postgres.hub_password not in result.stdout + result.stderr
    kept = sorted(p.name for p in dumps.iterdir())
    assert len(kept) == 2 and kept[0] == "jupyterhub-20261103T023000Z.dump", kept
    new_dump = dumps / kept[1]
    # the restore test docs/upgrade.md describes: into a scratch database, then look at the data
    admin = postgres.connect()
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS restore_check")
        cur.execute("CREATE DATABASE restore_check OWNER jupyterhub")
    try:
        restore = subprocess.run(
            [f"{PG_BIN}/pg_restore", "--no-owner", "--exit-on-error", "-d", "restore_check", str(new_dump)],
            env={**env, "PGDATABASE": "restore_check", "PGPASSWORD": postgres.hub_password},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert restore.returncode == 0, restore.stderr
        check = postgres.connect("restore_check", "jupyterhub", postgres.hub_password)
        with check.cursor() as cur:
            cur.execute("SELECT name FROM backup_probe ORDER BY name")
            assert [r[0] for r in cur.fetchall()] == ["alice", "bob"]
        check.close()
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS restore_check")
        admin.close()
        conn = postgres.connect("jupyterhub", "jupyterhub", postgres.hub_password)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS backup_probe")
        conn.close()


def test_a_failed_dump_removes_nothing(tmp_path: Path) -> None:
    """Nothing is deleted before its copy is verified: pg_dump failing leaves every old dump."""
    script = _backup_job(BACKUP_KEEP="1")["command"][2]
    dumps = tmp_path / "backup"
    dumps.mkdir()
    for day in ("20261101", "20261102"):
        (dumps / f"jupyterhub-{day}T023000Z.dump").write_bytes(b"old")
    env = {
        "PATH": f"{PG_BIN}:{os.environ['PATH']}",
        "PGHOST": "127.0.0.1",
        "PGPORT": "9",  # nothing listens there
        "PGDATABASE": "jupyterhub",
        "PGUSER": "jupyterhub",
        "PGPASSWORD": "x",
        "PGCONNECT_TIMEOUT": "3",
        "BACKUP_DIR": str(dumps),
        "BACKUP_KEEP": "1",
    }
    result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert sorted(p.name for p in dumps.iterdir() if p.suffix == ".dump") == [
        "jupyterhub-20261101T023000Z.dump",
        "jupyterhub-20261102T023000Z.dump",
    ]


def test_the_hub_template_gives_spawns_time_for_a_first_image_pull() -> None:
    from valeria_hub.settings import HubSettings

    from tests.test_openshift_templates import hub_environment

    settings = HubSettings.from_env(hub_environment(render("valeria-hub.yaml")))
    assert (settings.start_timeout, settings.http_timeout) == (600, 120)
    assert settings.cull_idle_timeout == 3600
    assert settings.vault_kv_mount == "valeria-kv" and settings.vault_auth_mount == "valeria-jwt"
    assert settings.ca_bundle == "/etc/pki/valeria/ca-bundle.crt"
    assert settings.ca_bundle_configmap == "valeria-hub-trusted-ca"
    slow = HubSettings.from_env(hub_environment(render("valeria-hub.yaml", START_TIMEOUT="1200")))
    assert slow.start_timeout == 1200
