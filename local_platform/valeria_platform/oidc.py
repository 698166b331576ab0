"""The OIDC provider standing in for Keycloak: the certified npm ``oidc-provider`` in a Node process.

It serves one realm under ``http://127.0.0.1:PORT/realms/<realm>`` with Keycloak's endpoint paths
(``/protocol/openid-connect/{auth,token,userinfo,certs,logout,revoke}``), a username/password login
form, auto-granted consent, refresh tokens, and JWT access tokens carrying ``preferred_username``,
``email`` and ``groups`` (audience: the client id), so Vault's JWT auth verifies them against the
JWKS as it would Keycloak's. ``sub`` is a UUID, not the username, as in Keycloak.

Users, passwords and client secrets go to Node in a 0600 JSON file, never on a command line.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import urllib.request
from pathlib import Path
from typing import Any

from typing_extensions import Self

from .procs import LocalService, ServiceError, child_env

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "keycloak_realm.mjs"


def _write_private_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


class OIDCProvider(LocalService):
    """A Keycloak-like realm on loopback.

    ``users``: ``[{"username", "password", "email", "groups": [...]}]``;
    ``clients``: ``[{"client_id", "client_secret", "redirect_uris": [...]}]`` (optional
    ``post_logout_redirect_uris``, ``audience`` of the access token, default the client id).
    """

    log_name = "oidc.log"
    temp_prefix = "valeria-oidc-"

    def __init__(
        self,
        realm: str = "valeria",
        users: list[dict[str, Any]] | None = None,
        clients: list[dict[str, Any]] | None = None,
        access_token_ttl: int = 300,
        refresh_token_ttl: int = 1800,
        port: int = 0,
        workdir: str | Path | None = None,
        host: str = "127.0.0.1",
        public_base: str | None = None,
    ) -> None:
        super().__init__(workdir, port, host)
        #: ``http://host:port`` clients reach the realm at (a proxy in front); default: its own address
        self.public_base = public_base
        self.realm = realm
        self.users = list(users or [])
        self.clients = list(clients or [])
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.issuer: str = ""
        self._admin_token = secrets.token_urlsafe(24)

    # -- where it is ------------------------------------------------------------------------------
    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def base_url(self) -> str:
        return self._url()

    def endpoint(self, name: str) -> str:
        """Keycloak's URL of ``auth``, ``token``, ``userinfo``, ``certs``, ``logout`` or ``revoke``."""
        return f"{self.issuer}/protocol/openid-connect/{name}"

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Self:
        node = shutil.which("node")
        if node is None:
            raise ServiceError("node is not installed (make setup installs it)")
        if not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
            raise ServiceError(f"npm modules missing in {NODE_DIR} (make node-deps installs them)")
        self._private_workdir()
        ready_file = self.workdir / "oidc-ready.json"
        ready_file.unlink(missing_ok=True)
        cookie_keys_file = self.workdir / "oidc-cookie-keys.json"
        if not cookie_keys_file.exists():
            _write_private_json(cookie_keys_file, [secrets.token_urlsafe(32)])
        config = {
            "host": self.host,
            "port": self.requested_port,
            "realm": self.realm,
            "users": self.users,
            "clients": self.clients,
            "access_token_ttl": self.access_token_ttl,
            "refresh_token_ttl": self.refresh_token_ttl,
            "keys_file": str(self.workdir / "oidc-signing-keys.json"),
            "cookie_keys": json.loads(cookie_keys_file.read_text()),
            "admin_token": self._admin_token,
            "ready_file": str(ready_file),
            "public_base": self.public_base,
        }
        config_path = self.workdir / "oidc-config.json"
        _write_private_json(config_path, config)
        env = child_env(NODE_ENV="production")
        proc = self._spawn("oidc-provider", [node, str(SCRIPT), str(config_path)], env=env, cwd=NODE_DIR)
        proc.wait_for(ready_file.exists, timeout, "listening")
        info = json.loads(ready_file.read_text())
        self.port = int(info["port"])
        self.issuer = info["issuer"]
        proc.wait_for(self._discovery_ok, timeout, "serving discovery")
        return self

    def _discovery_ok(self) -> bool:
        # asked at its own address: a proxy at public_base may not be pointed at it yet
        from urllib.parse import urlsplit

        direct = f"{self.base_url}{urlsplit(self.issuer).path}/.well-known/openid-configuration"
        with urllib.request.urlopen(direct, timeout=2) as r:
            return json.load(r)["issuer"] == self.issuer

    # -- test and admin hooks ---------------------------------------------------------------------
    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(
            f"{self.base_url}/__admin/{path}",
            method=method,
            headers={"Authorization": f"Bearer {self._admin_token}", "Content-Type": "application/json"},
            data=data,
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def revoke_user(self, username: str) -> int:
        """End every session, grant and token of ``username`` (as a Keycloak admin's "log out
        all sessions"): refresh tokens stop working and the next login needs the password again.
        Returns how many stored artifacts were removed."""
        return int(self._admin("POST", f"revoke/{username}")["removed"])

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str], **extra: Any) -> None:
        """Register a confidential client while running (e.g. a hub on a test's own port)."""
        self._admin(
            "POST",
            "clients",
            {"client_id": client_id, "client_secret": client_secret, "redirect_uris": redirect_uris, **extra},
        )

    def password_of(self, username: str) -> str:
        for u in self.users:
            if u["username"] == username:
                return u["password"]
        raise KeyError(username)

    def login(
        self,
        username: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        password: str | None = None,
        scope: str = "openid profile email groups",
    ) -> dict[str, Any]:
        """The authorization-code flow as a browser does it (login form included); returns the
        token response. For tests that need a real user token without a browser."""
        return code_flow(
            self.issuer,
            username,
            password if password is not None else self.password_of(username),
            client_id,
            client_secret,
            redirect_uri,
            scope,
        )

    def recreate_user(self, username: str) -> str:
        """Delete ``username`` and create an account of the same name (a Keycloak admin's delete +
        create, or a freed name taken again): same name, new ``sub``, old sessions gone. Returns the
        new ``sub``."""
        return str(self._admin("POST", f"recreate/{username}")["sub"])

    def subjects(self) -> dict[str, str]:
        """username → ``sub`` (a UUID, as Keycloak's)."""
        return self._admin("GET", "subjects")


def code_flow(
    issuer: str,
    username: str,
    password: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    scope: str = "openid profile email groups",
    session: Any = None,
) -> dict[str, Any]:
    """Log in through the realm's login form with ``requests`` and redeem the code."""
    import re
    from urllib.parse import parse_qs, urljoin, urlsplit

    import requests

    s = session or requests.Session()
    disc = s.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    state = secrets.token_urlsafe(8)
    r = s.get(
        disc["authorization_endpoint"],
        timeout=10,
        params={
            "client_id": client_id,
            "response_type": "code",
            "scope": scope,
            "redirect_uri": redirect_uri,
            "state": state,
        },
        allow_redirects=False,
    )
    for _ in range(10):
        if r.status_code in (302, 303) and r.headers["location"].startswith(redirect_uri):
            break
        if r.status_code in (302, 303):
            r = s.get(urljoin(r.url, r.headers["location"]), timeout=10, allow_redirects=False)
            continue
        m = re.search(r'<form id="kc-form-login" method="post" action="([^"]+)"', r.text)
        if r.status_code != 200 or not m or "kc-form-login" not in r.text:
            raise RuntimeError(f"unexpected answer from the IdP: {r.status_code} {r.url}")
        if 'id="input-error"' in r.text:
            raise PermissionError(f"the IdP refused the login of {username!r}")
        r = s.post(
            urljoin(r.url, m.group(1).replace("&amp;", "&")),
            timeout=10,
            data={"username": username, "password": password},
            allow_redirects=False,
        )
    query = parse_qs(urlsplit(r.headers["location"]).query)
    if query.get("state") != [state] or "code" not in query:
        raise RuntimeError(f"no code in the redirect: {sorted(query)}")
    t = s.post(
        disc["token_endpoint"],
        timeout=10,
        auth=(client_id, client_secret),
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": redirect_uri,
        },
    )
    t.raise_for_status()
    return t.json()


_FORM = re.compile(r'<form id="kc-form-login" method="post" action="([^"]+)"')


def follow_login(session: Any, response: Any, username: str, password: str, timeout: float = 30) -> Any:
    """Follow redirects from `response` (requests), filling the realm's login form, as a browser
    does; return the last answer (the page the login ends on)."""
    from urllib.parse import urljoin

    r = response
    for _ in range(20):
        if r.status_code in (301, 302, 303, 307):
            r = session.get(urljoin(r.url, r.headers["location"]), allow_redirects=False, timeout=timeout)
            continue
        m = _FORM.search(r.text) if r.status_code == 200 else None
        if m:
            r = session.post(
                urljoin(r.url, m.group(1).replace("&amp;", "&")),
                data={"username": username, "password": password},
                allow_redirects=False,
                timeout=timeout,
            )
            continue
        return r
    raise AssertionError("too many redirects")
