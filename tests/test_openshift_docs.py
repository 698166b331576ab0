"""The admin docs say only what the repository does: links, parameters, variables, commands.

An admin deploys by following docs/ and nothing else, so every command and name the docs give is
checked against the code it refers to: the parameter file in deploy.md renders the hub template,
every `-p NAME=` exists in its template, every variable is in the environment table, every
doctor invocation parses, every setting the Vault page lists is read by configure-vault.sh.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_openshift_templates import TEMPLATES, ocprocess

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        assert (page.parent / target).resolve().exists(), f"{page.name}: broken link {target}"


def test_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    for page in PAGES:
        if page.name != "README.md":
            assert f"({page.name})" in index, f"docs/README.md does not link {page.name}"


def deploy_param_file() -> dict[str, str]:
    text = (DOCS / "deploy.md").read_text()
    block = next(b for b in fenced_blocks(text) if "HUB_HOST=" in b and "oc " not in b)
    return dict(line.split("=", 1) for line in block.strip().splitlines())


def test_deploy_param_file_renders_the_hub_template() -> None:
    params = deploy_param_file()
    objects = ocprocess.process(ocprocess.load(TEMPLATES / "valeria-hub.yaml"), params)
    cm = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-env"))
    assert cm["data"]["VALERIA_NFS_HOME_PATH"] == "/lustre/home/{username}"
    for key, value in params.items():
        assert not re.search(r"SECRET|PASSWORD", key), f"deploy.md's parameter file holds {key}"
        assert value.strip(), key


def test_every_p_flag_names_a_parameter_of_its_template() -> None:
    checked = 0
    for page in PAGES:
        text = page.read_text().replace("\\\n", " ")
        for command in re.findall(r"oc process -f (openshift/templates/[\w.-]+)([^|\n]*)", text):
            path, rest = command
            names = {p["name"] for p in ocprocess.load(REPO / path)["parameters"]}
            for name in re.findall(r"-p ([A-Z_]+)=", rest):
                assert name in names, f"{page.name}: {path} has no parameter {name}"
                checked += 1
    assert checked >= 5


def test_every_variable_in_the_docs_is_in_the_environment_table() -> None:
    table = (DOCS / "environment.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    for page in PAGES:
        for name in set(re.findall(r"\b(VALERIA_[A-Z0-9_]+)\b", page.read_text())):
            assert name in documented, f"{page.name} mentions {name}, which docs/environment.md does not list"


def test_doctor_invocations_in_the_docs_parse() -> None:
    from valeria_hub import doctor

    seen = 0
    for page in PAGES:
        for args in re.findall(r"valeria-hub-doctor((?: --?[\w-]+(?: [\w,.-]+)?)*)", page.read_text()):
            argv = args.split()
            for i, arg in enumerate(argv):
                if arg == "--only":
                    assert set(argv[i + 1].split(",")) <= set(doctor.CHECKS), f"{page.name}: {args}"
            parser_ok = {"--only", "--timeout", "--user", "--uid", "--nfs-port"}
            assert {a for a in argv if a.startswith("--")} <= parser_ok, f"{page.name}: {args}"
            seen += 1
    assert seen >= 4


def test_vault_page_settings_are_read_by_the_script() -> None:
    script = (REPO / "openshift" / "vault" / "configure-vault.sh").read_text()
    page = (DOCS / "vault.md").read_text()
    table = page.split("## What it sets up")[0]
    names = re.findall(r"^\| `([A-Z_]+)` \|", table, re.M)
    assert len(names) >= 8
    for name in names:
        assert re.search(rf"\b{name}\b", script), (
            f"vault.md lists {name}, configure-vault.sh does not read it"
        )
    # the commands the page gives are the scripts' real names and the hub's default paths
    assert "openshift/vault/configure-vault.sh" in page and "openshift/vault/put-user-secrets.sh" in page
    env = (DOCS / "environment.md").read_text()
    assert "valeria/users/{sub}/s3" in env and "valeria/users/{sub}/s3" in page
    assert "valeria/users/{sub}/posix" in env and "valeria/users/{sub}/posix" in page


def test_secret_names_in_deploy_match_the_template_defaults() -> None:
    text = (DOCS / "deploy.md").read_text()
    params = {p["name"]: p.get("value") for p in ocprocess.load(TEMPLATES / "valeria-hub.yaml")["parameters"]}
    created = set(re.findall(r"oc create secret generic ([\w-]+)", text))
    for param in ("HUB_SECRET", "DB_SECRET", "OIDC_SECRET"):
        assert params[param] in created, f"deploy.md does not create the Secret {params[param]}"
    # and the keys it creates are the keys the Deployment reads
    deployment = next(
        o
        for o in ocprocess.process(ocprocess.load(TEMPLATES / "valeria-hub.yaml"), deploy_param_file())
        if o["kind"] == "Deployment"
    )
    for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        ref = env["valueFrom"].get("secretKeyRef")
        if ref is None:
            continue
        if not ref.get("optional"):
            assert re.search(rf"--from-(literal|file)={ref['key']}=", text), (
                f"deploy.md never creates key {ref['key']}"
            )


# ------------------------------------------------------------------------------------------------
# every `oc` command in the docs names its project: an admin with two projects open types them
# as written, and `oc project` of yesterday would silently send them elsewhere

#: commands and kinds that are not namespaced (or take no project)
CLUSTER_SCOPED = re.compile(
    r"^oc (new-project|project|login|whoami|version|explain|api-resources|extract --help"
    r"|adm policy add-cluster-role-to-\w+|adm policy remove-cluster-role-from-\w+"
    r"|(get|describe|delete|label|patch|edit) (scc|securitycontextconstraints|clusterrole|clusterrolebinding"
    r"|network\.config|nodes?|projects?|namespace|ns|proxy|image\.config)\b"
    r"|(get|describe|delete|label|patch|edit) (scc|clusterrole|clusterrolebinding|proxy)/"
    r"|debug node/|process --parameters)"
)


def oc_commands(text: str) -> list[str]:
    """Every `oc ...` command of a page: in code blocks (continuation lines joined, one per pipe
    segment, comments dropped) and in inline code."""
    commands = []
    sources = [b.replace("\\\n", " ") for b in fenced_blocks(text)]
    sources += re.findall(r"`(oc [^`]+)`", text)
    for source in sources:
        for line in source.splitlines():
            line = re.sub(r"\s#\s.*$", "", line).strip()
            if line.startswith("#"):
                continue
            for segment in re.split(r"\|(?!\|)|&&|;|\$\(", line):
                segment = segment.strip().lstrip("(").strip()
                if re.match(r"oc \S", segment):
                    commands.append(re.sub(r"\s+", " ", segment).rstrip(")"))
    return commands


def test_every_namespaced_oc_command_names_its_project() -> None:
    missing = []
    seen = 0
    for page in [*PAGES, REPO / "openshift" / "README.md"]:
        for command in oc_commands(page.read_text()):
            if len(command.split()) < 3 and command.split()[-1] not in ("project", "whoami"):
                continue  # prose naming a verb (`oc apply`), not a command to type
            seen += 1
            if command.startswith("oc process -f") and " -n " not in command:
                continue  # rendered client-side; the `oc apply` it pipes into names the project
            if CLUSTER_SCOPED.match(command):
                continue
            if not re.search(r"(^| )(-n|--namespace)[ =]\S+", command):
                missing.append(f"{page.name}: {command}")
    assert seen >= 40
    assert missing == [], "oc commands without -n:\n" + "\n".join(missing)


def test_every_p_flag_of_ocprocess_names_a_parameter() -> None:
    """Also the offline renderer the docs use to preview (openshift/tools/ocprocess.py)."""
    checked = 0
    for page in [*PAGES, REPO / "openshift" / "README.md"]:
        text = page.read_text().replace("\\\n", " ")
        for path, rest in re.findall(
            r"(?:oc process|ocprocess\.py) -f (openshift/templates/[\w.-]+)([^|\n]*)", text
        ):
            names = {p["name"] for p in ocprocess.load(REPO / path)["parameters"]}
            for name in re.findall(r"-p ([A-Z_]+)=", rest):
                assert name in names, f"{page.name}: {path} has no parameter {name}"
                checked += 1
    assert checked >= 8
