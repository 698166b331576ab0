"""One discovery rule for the hub's login and the doctor (valeria_hub.oidc): the same keys
required, the same issuer check. Before, the authenticator did not require `jwks_uri` and the
doctor did not require `userinfo_endpoint`."""

from __future__ import annotations

import pytest
from valeria_hub.oidc import REQUIRED, DiscoveryError, parse_discovery

REALM = "https://sso.example.org/realms/valeria"
DOC = {
    "issuer": REALM,
    "authorization_endpoint": f"{REALM}/protocol/openid-connect/auth",
    "token_endpoint": f"{REALM}/protocol/openid-connect/token",
    "userinfo_endpoint": f"{REALM}/protocol/openid-connect/userinfo",
    "jwks_uri": f"{REALM}/protocol/openid-connect/certs",
}


def test_a_complete_document_gives_the_endpoints():
    found = parse_discovery({**DOC, "end_session_endpoint": f"{REALM}/logout"}, REALM + "/")
    assert found.userinfo_endpoint == DOC["userinfo_endpoint"]
    assert found.end_session_endpoint.endswith("/logout")
    assert parse_discovery(DOC, REALM).end_session_endpoint == ""


@pytest.mark.parametrize("key", REQUIRED)
def test_each_required_key(key):
    with pytest.raises(DiscoveryError, match=key):
        parse_discovery({k: v for k, v in DOC.items() if k != key}, REALM)


def test_issuer_must_be_the_realm():
    with pytest.raises(DiscoveryError, match="not the configured realm"):
        parse_discovery({**DOC, "issuer": "https://evil.example.org/realms/valeria"}, REALM)
    with pytest.raises(DiscoveryError):
        parse_discovery(["not", "an", "object"], REALM)
