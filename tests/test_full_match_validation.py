"""Every validation regex of the hub and the OpenShift tools matches the whole value.

`re.match(r"^x$", "x\n")` succeeds: `$` also matches before a trailing newline. Each validator
here is fed a valid value with a newline appended and must refuse it; and a source scan keeps
new validators on `fullmatch`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from valeria_hub.errors import PlanError, VaultError
from valeria_hub.plan import check_username, parse_identity, parse_s3_keys
from valeria_hub.settings import HubSettings, SettingsError
from valeria_hub.vault import kv_path

from tests.fixtures.hub import hub_env
from tests.test_openshift_templates import ocprocess

REPO = Path(__file__).resolve().parent.parent
SETTINGS = HubSettings.from_env(hub_env())


def test_username_with_trailing_newline_refused():
    assert check_username("alice") == "alice"
    with pytest.raises(PlanError):
        check_username("alice\n")


@pytest.mark.parametrize("key", ["uid", "gid"])
def test_posix_id_with_trailing_newline_refused(key):
    good = {"uid": "1234", "gid": "2345"}
    parse_identity(good, SETTINGS)
    with pytest.raises(PlanError):
        parse_identity({**good, key: good[key] + "\n"}, SETTINGS)


def test_s3_key_with_trailing_newline_refused():
    parse_s3_keys({"access_key": "AKIA", "secret_key": "s3cr3t"})
    with pytest.raises(PlanError):
        parse_s3_keys({"access_key": "AKIA", "secret_key": "s3cr3t\n"})


def test_subject_with_trailing_newline_refused():
    assert kv_path("u/{sub}/s3", "alice", "f81d4fae") == "u/f81d4fae/s3"
    with pytest.raises(VaultError):
        kv_path("u/{sub}/s3", "alice", "f81d4fae\n")


@pytest.mark.parametrize(
    "name, value",
    [
        # values are stripped, so the newline ends an inner segment
        ("VALERIA_VAULT_KV_MOUNT", "secret\n/kv"),
        ("VALERIA_PROFILES", '[{"slug": "scipy\\n", "display_name": "S", "image": "i"}]'),
    ],
)
def test_settings_with_trailing_newline_refused(name, value):
    with pytest.raises(SettingsError):
        HubSettings.from_env(hub_env(**{name: value}))


def test_ocprocess_whole_value_reference_with_trailing_newline_is_a_string():
    values = {"N": "3"}
    assert ocprocess.substitute("${{N}}", values) == 3
    # not a whole-value reference: a newline after it makes it a string reference, which is refused
    with pytest.raises(ocprocess.TemplateError):
        ocprocess.substitute("${{N}}\n", values)


def test_no_validator_anchors_with_dollar():
    """Source scan: validation regexes use fullmatch, never `^...$` with match/search."""
    offenders = []
    for path in [*(REPO / "hub_config").rglob("*.py"), *(REPO / "openshift" / "tools").glob("*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"""re\.compile\(r?["'].*\$["']\)""", line) or re.search(r"\bre\.match\(", line):
                offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert offenders == []
