"""Packaging and wiring of the server extension, and the path rules (pure, no server)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp: this module only)
from tornado.web import HTTPError
from valeria_datalake import DatalakeContentsManager
from valeria_datalake.paths import PathRouter, normalize
from valeria_datalake.s3.client import S3Settings

from tests.fixtures.s3 import datalake_server_config

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def test_extension_is_listed_enabled():
    out = subprocess.run(
        [str(VENV_BIN / "jupyter"), "server", "extension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert "valeria_datalake \x1b[32menabled" in text or "valeria_datalake enabled" in text, text
    assert "valeria_datalake 0.1.0" in text and "OK" in text.split("valeria_datalake 0.1.0", 1)[1][:40]


def test_wheel_ships_the_enabling_config(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    # local_platform/ is copied too, to prove the wheel leaves it out even when it is beside the code
    for tree in ("server_ext", "hub_config", "local_platform"):
        shutil.copytree(
            REPO / tree, src / tree, ignore=shutil.ignore_patterns("__pycache__", "node_modules", "*.pyc")
        )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("valeria_jupyterhub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = [n for n in names if n.endswith("etc/jupyter/jupyter_server_config.d/valeria_datalake.json")]
    assert data, names
    # the prebuilt JupyterLab extension and the platform's JupyterLab defaults (make labextension)
    lab = ".data/data/share/jupyter/"
    assert any(n.endswith(lab + "labextensions/valeria-datalake/package.json") for n in names), names
    assert any(
        n.endswith(lab + "labextensions/valeria-datalake/schemas/valeria-datalake/plugin.json") for n in names
    )
    assert any("/labextensions/valeria-datalake/static/remoteEntry." in n for n in names), names
    assert any(n.endswith(lab + "lab/settings/overrides.d/valeria-datalake.json") for n in names), names
    assert "valeria_datalake/manager.py" in names and "valeria_datalake/s3/client.py" in names
    # the product wheel holds product code only: no local platform, no tests, no bench
    tops = {n.split("/", 1)[0] for n in names}
    assert not any(t.startswith(("valeria_platform", "tests", "bench", "local_platform")) for t in tops), tops


def test_jupyterlab_extension_is_listed_enabled():
    """``make labextension`` put the prebuilt extension where a wheel install puts it."""
    out = subprocess.run(
        [str(VENV_BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True, timeout=120
    )
    text = out.stdout + out.stderr
    line = next((ln for ln in text.splitlines() if "valeria-datalake" in ln), "")
    assert "v0.1.0" in line and "enabled" in line and "OK" in line, text


@pytest.fixture
def jp_server_config(request, moto_world, tmp_path, monkeypatch):
    extra = getattr(request, "param", {})
    config = datalake_server_config(moto_world.site, tmp_path, monkeypatch)
    config.merge(extra)
    return config


def test_extension_installs_the_contents_manager(jp_serverapp):
    assert isinstance(jp_serverapp.contents_manager, DatalakeContentsManager)


@pytest.mark.parametrize(
    "jp_server_config",
    [{"ServerApp": {"contents_manager_class": AsyncLargeFileManager}}],
    indirect=True,
)
def test_an_admin_configured_contents_manager_is_kept(jp_serverapp):
    assert type(jp_serverapp.contents_manager) is AsyncLargeFileManager


# -- the path rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["..", "a/../b", "a/./b", "a//b", "a\x00b", "n" * 256, "é" * 128, "x/" * 2100],
)
def test_illegal_paths_are_400(bad):
    with pytest.raises(HTTPError) as e:
        normalize(bad)
    assert e.value.status_code == 400


def test_routing():
    r = PathRouter("datalake_", scratch_enabled=True)
    assert r.locate("/").kind == "root"
    loc = r.locate("/datalake_my-bucket/a b/ç.txt/")
    assert (loc.kind, loc.bucket, loc.inner) == ("bucket", "my-bucket", "a b/ç.txt")
    assert r.locate("datalake_my-bucket").is_mount_root
    assert r.locate("scratch/x").kind == "scratch" and r.locate("scratch/x").inner == "x"
    assert r.locate("scratchy").kind == "home"
    assert r.locate("Datalake_x").kind == "home"  # case matters
    assert r.locate("datalake_Relaxed_Name").bucket == "Relaxed_Name"  # RGW's relaxed bucket names
    assert PathRouter("datalake_", scratch_enabled=False).locate("scratch/x").kind == "home"
    with pytest.raises(HTTPError) as e:
        r.locate("datalake_Not_A_Bucket!")
    assert e.value.status_code == 404


def test_s3_settings_follow_the_hub_contract():
    env = {
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SECRET-VALUE",
        "AWS_ENDPOINT_URL": "https://second",
        "S3_ENDPOINT_URL": "https://third",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_CA_BUNDLE": "/etc/ca.pem",
    }
    s = S3Settings.from_environ(env)
    assert (s.endpoint_url, s.region, s.ca_bundle) == ("https://second", "eu-west-3", "/etc/ca.pem")
    assert s.checksum_calculation == "when_required" and s.path_style
    assert (
        S3Settings.from_environ({**env, "AWS_ENDPOINT_URL_S3": "https://first"}).endpoint_url
        == "https://first"
    )
    assert S3Settings.from_environ({"S3_ENDPOINT_URL": "https://third"}).endpoint_url == "https://third"
    assert "SECRET-VALUE" not in repr(s)
    assert not S3Settings.from_environ({}).has_credentials


async def test_without_credentials_or_scratch_home_still_works(tmp_path, monkeypatch, caplog):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "VALERIA_SCRATCH_DIR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "f.txt").write_text("x")
    cm = DatalakeContentsManager(root_dir=str(tmp_path), scratch_dir=str(tmp_path / "missing"))
    root = await cm.get("")
    assert [e["name"] for e in root["content"]] == ["f.txt"]  # no scratch, no bucket
    with pytest.raises(HTTPError) as e:
        await cm.get("datalake_any-bucket/x")
    assert e.value.status_code == 403
    assert (await cm.get("f.txt"))["content"] == "x"
    assert "no S3 credentials" in caplog.text
