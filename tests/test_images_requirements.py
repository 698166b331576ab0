"""The images in images/: linted, pinned, and their Python requirements proven installable.

Images cannot be built here (no container runtime, no registry). What can be checked without one:
- every Dockerfile passes hadolint;
- every base image is pinned, every COPY source exists in the build context (the repository root)
  and is not excluded by .dockerignore;
- each image's pinned requirements satisfy what the package declares;
- the same pins install into a real fresh venv (no --system-site-packages), the package installs
  from exactly the files the Dockerfile copies, `pip check` is clean, and what the image's
  entrypoint imports imports. Images with the same requirements share one venv.
"""

from __future__ import annotations

import configparser
import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
HADOLINT = Path(sys.executable).with_name("hadolint")

NOTEBOOK_IMPORTS = [
    "jupyterhub.singleuser",
    "jupyterlab",
    "jupyter_server.serverapp",
    "s3fs",
    "valeria_datalake",
]
#: what each image's entrypoint needs at runtime: the modules it imports, and a shell check
ENTRYPOINT_IMPORTS = {
    "hub": [
        "jupyterhub.app",
        "oauthenticator.generic",
        "kubespawner",
        "jupyterhub_idle_culler",
        "hvac",
        "psycopg2",
        "sqlalchemy",
        "valeria_hub",
        "valeria_hub.settings",
    ],
    "notebook-scipy": NOTEBOOK_IMPORTS,
    "notebook-r": NOTEBOOK_IMPORTS,
}


def image_ids() -> list[str]:
    return [d.parent.name for d in DOCKERFILES]


def test_every_image_is_known() -> None:
    assert set(image_ids()) == set(ENTRYPOINT_IMPORTS), "a new image needs its entrypoint imports listed here"
    for name in image_ids():
        assert (IMAGES / name / "requirements.txt").is_file(), f"images/{name} has no pinned requirements.txt"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=image_ids())
def test_hadolint_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in dockerfile.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        buf += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def copy_sources(dockerfile: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context."""
    copies = []
    for word, args in instructions(dockerfile):
        if word != "COPY":
            continue
        parts = [p for p in args.split() if not p.startswith("--chown") and not p.startswith("--chmod")]
        if any(p.startswith("--from") for p in parts):
            continue
        copies.append((parts[:-1], parts[-1]))
    return copies


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relpath: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        parts = relpath.split("/")
        for i in range(len(parts)):
            prefix = "/".join(parts[: i + 1])
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(parts[i], bare):
                return True
    return False


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=image_ids())
def test_base_images_pinned_and_copies_exist(dockerfile: Path) -> None:
    froms = [args.split()[0] for word, args in instructions(dockerfile) if word == "FROM"]
    assert froms
    for ref in froms:
        name, _, tag = ref.rpartition(":")
        assert name and tag, f"{ref}: base image without a tag"
        assert tag not in ("latest", "stable", "lts") and re.search(r"\d", tag), f"{ref}: tag is not a pin"
    patterns = dockerignore_patterns()
    copies = copy_sources(dockerfile)
    assert copies
    for sources, _dest in copies:
        for src in sources:
            assert (REPO / src).exists(), f"{dockerfile.parent.name}: COPY {src} is not in the build context"
            assert not ignored(src, patterns), f"COPY {src} is excluded by .dockerignore"


def pinned(requirements: Path) -> dict[str, Requirement]:
    reqs = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            specs = list(req.specifier)
            assert len(specs) == 1 and specs[0].operator == "==", f"{requirements}: {line} is not pinned"
            reqs[canonical(req.name)] = req
    return reqs


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements(extra: str | None) -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    if extra:
        lines += cfg["options.extras_require"][extra].splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("image", image_ids())
def test_pins_satisfy_the_package(image: str) -> None:
    """Every requirement the package declares for this image is pinned, inside the declared range."""
    pins = pinned(IMAGES / image / "requirements.txt")
    for req in declared_requirements("hub" if image == "hub" else None):
        pin = pins.get(canonical(req.name))
        assert pin is not None, f"images/{image}/requirements.txt does not pin {req.name}"
        version = next(iter(pin.specifier)).version
        assert req.specifier.contains(version, prereleases=True), f"{image}: {pin} is outside {req}"


def build_context_copy(dockerfile: Path, dest: Path) -> Path:
    """Reproduce the Dockerfile's COPYs of the package sources into dest; return the source folder."""
    src_root = None
    for sources, target in copy_sources(dockerfile):
        if not target.startswith("/tmp/valeria/src"):
            continue
        src_root = dest / "src"
        tdir = dest / target.removeprefix("/tmp/valeria/").rstrip("/")
        for src in sources:
            path = REPO / src
            if path.is_dir():
                to = tdir if len(sources) == 1 and not target.endswith("/") else tdir / path.name
                shutil.copytree(path, to, ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
            else:
                tdir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, tdir / path.name)
    assert src_root is not None, f"{dockerfile} copies no package sources to /tmp/valeria/src"
    return src_root


@pytest.fixture(scope="session")
def image_venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One fresh venv per distinct requirements file (created lazily by image_venv)."""
    return {}


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, **kw)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("image", image_ids())
def test_pinned_requirements_install_into_fresh_venv(
    image: str, image_venvs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    requirements = IMAGES / image / "requirements.txt"
    effective = sorted(str(r) for r in pinned(requirements).values())
    key = hashlib.sha256("\n".join(effective).encode()).hexdigest()[:12]
    if key not in image_venvs:
        root = tmp_path_factory.mktemp(f"venv-{image}")
        venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(root / "venv")
        py = root / "venv" / "bin" / "python"
        # --no-compile: byte-compiling every installed module is half the install time, and proves nothing
        run([str(py), "-m", "pip", "install", "-q", "--no-compile", "-r", str(requirements)])
        src = build_context_copy(IMAGES / image / "Dockerfile", root / "ctx")
        # the Dockerfile installs the package with --no-deps, after the pins
        run([str(py), "-m", "pip", "install", "-q", "--no-compile", "--no-deps", str(src)])
        run([str(py), "-m", "pip", "check"])
        image_venvs[key] = root / "venv"
    venv_dir = image_venvs[key]
    py = venv_dir / "bin" / "python"
    # the venv is fresh: nothing from the project's own .venv or source tree can leak in
    where = run([str(py), "-c", "import valeria_hub, sys; print(valeria_hub.__file__); print(sys.prefix)"])
    assert str(venv_dir) in where.stdout and "/work/main/hub_config" not in where.stdout
    modules = ENTRYPOINT_IMPORTS[image]
    run([str(py), "-c", "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)", *modules])
    if image.startswith("notebook"):
        # what the Dockerfile greps for: the wheel's data file enables the extension in the env
        listing = run([str(venv_dir / "bin" / "jupyter"), "server", "extension", "list"], cwd=venv_dir)
        text = listing.stdout + listing.stderr
        assert re.search(r"valeria_datalake.*enabled", text), text
        assert re.search(r"valeria_datalake .*OK", text), text
        assert (venv_dir / "bin" / "jupyterhub-singleuser").exists()
    else:
        assert (venv_dir / "bin" / "jupyterhub").exists()
        assert (venv_dir / "bin" / "jupyterhub-idle-culler").exists() or run(
            [str(py), "-c", "import jupyterhub_idle_culler.__main__"]
        )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=image_ids())
def test_images_run_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    """OpenShift checks runAsNonRoot against a numeric USER; the hub must run as any uid in group 0."""
    users = [args for word, args in instructions(dockerfile) if word == "USER"]
    assert users and users[-1].isdigit() and int(users[-1]) != 0, f"last USER is {users[-1:]}"
    if dockerfile.parent.name == "hub":
        runs = " ".join(args for word, args in instructions(dockerfile) if word == "RUN")
        assert "chgrp -R 0 /srv/jupyterhub" in runs and "chmod -R g=u /srv/jupyterhub" in runs
        envs = " ".join(args for word, args in instructions(dockerfile) if word == "ENV")
        assert "HOME=/srv/jupyterhub" in envs
        workdirs = [args for word, args in instructions(dockerfile) if word == "WORKDIR"]
        assert workdirs[-1] == "/srv/jupyterhub"
