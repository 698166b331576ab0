"""One user-name rule for every place a name becomes a path (the hub's spawn plan: NFS paths), and
the subject rule of the admin's put-user-secrets.sh (Vault paths follow the OIDC `sub`).
docs/keycloak.md states the rule and how a realm whose user names are e-mail addresses maps them."""

from __future__ import annotations

from pathlib import Path

import pytest
from valeria_hub.errors import PlanError
from valeria_hub.plan import check_username
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


# put-user-secrets.sh files secrets under the user's OIDC subject (`sub`, issue 10), not the user
# name: it checks subjects the way the hub's Vault client does (valeria_hub.vault._SUB_RE).
BAD_SUBJECTS = ["../bob", "a/b", "a b", "alice\n", "x..y", ""]


@pytest.mark.parametrize("subject", BAD_SUBJECTS)
def test_the_script_refuses_subjects_that_could_leave_their_folder(openbao: OpenBao, subject: str) -> None:
    with pytest.raises(ServiceError, match="refusing subject"):
        run_vault_script(
            openbao,
            "put-user-secrets.sh",
            args=[subject, "1001", "1001"],
            env={"S3_ACCESS_KEY": "AK"},
            stdin="sk\n",
        )


def test_the_script_accepts_a_keycloak_subject(openbao: OpenBao) -> None:
    run_vault_script(
        openbao,
        "put-user-secrets.sh",
        args=["0b5a4c3e-1f2d-4e6a-9b8c-7d6e5f4a3b2c", "1001", "1001"],
        env={"S3_ACCESS_KEY": "AK"},
        stdin="sk\n",
    )
