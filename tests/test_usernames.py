"""One user-name rule for every place a name becomes a path: the hub's spawn plan (NFS and Vault
paths) and the admin's put-user-secrets.sh (Vault paths). docs/keycloak.md states the rule and how
a realm whose user names are e-mail addresses maps them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from valeria_hub.errors import PlanError
from valeria_hub.plan import USERNAME_PATTERN, check_username
from valeria_platform.openbao import OpenBao, run_vault_script
from valeria_platform.procs import ServiceError

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "openshift" / "vault" / "put-user-secrets.sh"

GOOD = ["alice", "a", "jean-luc.picard_2", "0x", "a" * 63]
BAD = [
    "alice\n",  # `$` matches before a trailing newline: the rule is a full match
    "Alice",
    "alice@uni.example",  # an e-mail user name: mapped in Keycloak (docs/keycloak.md), never here
    "a" * 64,
    ".hidden",
    "-rf",
    "x..y",
    "a b",
    "../bob",
    "",
]


@pytest.mark.parametrize("name", GOOD)
def test_hub_accepts(name: str) -> None:
    assert check_username(name) == name


@pytest.mark.parametrize("name", BAD)
def test_hub_refuses_with_the_rule_in_the_message(name: str) -> None:
    with pytest.raises(PlanError) as info:
        check_username(name)
    assert "lowercase letters, digits" in str(info.value) and "e-mail" in str(info.value)


def test_the_script_checks_the_same_pattern() -> None:
    script = SCRIPT.read_text()
    found = re.search(r"\[\[ \"\$user\" =~ \^(.+)\$ \]\]", script)
    assert found, "put-user-secrets.sh does not check the user name with the hub's pattern"
    assert found.group(1) == USERNAME_PATTERN
    assert USERNAME_PATTERN in (REPO / "docs" / "keycloak.md").read_text()


@pytest.mark.parametrize("name", [n for n in BAD if n])
def test_the_script_refuses_what_the_hub_refuses(openbao: OpenBao, name: str) -> None:
    with pytest.raises(ServiceError, match="refusing user name"):
        run_vault_script(
            openbao,
            "put-user-secrets.sh",
            args=[name, "1001", "1001"],
            env={"S3_ACCESS_KEY": "AK"},
            stdin="sk\n",
        )


def test_the_script_accepts_what_the_hub_accepts(openbao: OpenBao) -> None:
    run_vault_script(
        openbao,
        "put-user-secrets.sh",
        args=["jean-luc.picard_2", "1001", "1001"],
        env={"S3_ACCESS_KEY": "AK"},
        stdin="sk\n",
    )
