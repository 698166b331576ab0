"""Shared pytest set-up. Fixtures live in tests/fixtures/, one module per kind of real server."""

import os
import pathlib

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.ceph",
    "tests.fixtures.services",
    "tests.fixtures.hub",
    "tests.fixtures.browser",
    "tests.fixtures.leaks",
]

REPO = pathlib.Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"

# Tests never read the developer's or CI's own cloud credentials or Vault token.
_FOREIGN = ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "VAULT_TOKEN")
for _name in _FOREIGN:
    os.environ.pop(_name, None)
