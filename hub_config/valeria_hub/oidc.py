"""The realm's OIDC discovery document, checked once for the authenticator and the doctor alike.

oauthenticator has no discovery: the hub fetches `<realm>/.well-known/openid-configuration`
itself (async, in KeycloakAuthenticator.discover) and the doctor does too (sync, in
check_keycloak). Both hand the document to `parse_discovery`, so they require the same keys and
the same issuer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: what the hub needs from the realm: the login flow, userinfo, and the keys Vault checks tokens with
REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")


class DiscoveryError(ValueError):
    """The document is not a usable discovery document for this realm (the message says why)."""


@dataclass(frozen=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str = ""


def discovery_url(realm_url: str) -> str:
    return realm_url.rstrip("/") + "/.well-known/openid-configuration"


def parse_discovery(doc: object, realm_url: str) -> Discovery:
    """The endpoints from a parsed discovery document; DiscoveryError if keys lack or the issuer differs."""
    if not isinstance(doc, Mapping):
        raise DiscoveryError("the discovery document is not a JSON object")
    missing = [key for key in REQUIRED if not isinstance(doc.get(key), str) or not doc[key]]
    if missing:
        raise DiscoveryError(f"the discovery document lacks {', '.join(missing)}")
    if doc["issuer"].rstrip("/") != realm_url.rstrip("/"):
        raise DiscoveryError(f"the issuer is {doc['issuer']}, not the configured realm {realm_url}")
    end_session = doc.get("end_session_endpoint")
    return Discovery(
        **{key: doc[key] for key in REQUIRED},
        end_session_endpoint=end_session if isinstance(end_session, str) else "",
    )
