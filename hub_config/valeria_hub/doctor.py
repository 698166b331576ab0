"""`valeria-hub-doctor`: preflight checks of a hub deployment, from the hub's own environment.

Run it where the hub runs, with the hub's environment (on OpenShift:
`oc exec deploy/valeria-hub -- valeria-hub-doctor`). It reads the settings exactly as the hub does
(`HubSettings.from_env`), then checks each dependency the way the hub will use it, and prints one
line per check: status, what was checked, and for anything wrong, what to fix.

    OK    settings  hub settings parsed (spawner kubernetes, Vault auth jwt)
    FAIL  vault     ... -> fix: ...

Checks: settings; Keycloak (OIDC discovery, issuer, signing keys); Vault (reachable, unsealed,
the auth mount and role exist, and Vault can fetch Keycloak's keys: probed with a well-formed
token that no key signed, which Vault must refuse, so no credential is needed); the database
(connect, `SELECT 1`, hub schema present or not yet); the S3 endpoint (answers like S3 over
verified TLS); the NFS server (reachable on the NFS port) and the per-user path templates, or the
local root for the local spawner; Kubernetes (the hub's service account may do what KubeSpawner
needs in the namespace, and may not read the project's Secrets: SelfSubjectAccessReviews).

Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 when the settings
themselves are invalid. No secret is printed: every line is scrubbed of the values of the hub's
secrets before it is written.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .kube import create_rights, make_user_secret
from .oidc import DiscoveryError, parse_discovery
from .settings import HubSettings, SettingsError

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
CHECKS = ("keycloak", "vault", "database", "s3", "nfs", "kubernetes")
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: what KubeSpawner needs (the Role in openshift/templates/valeria-hub.yaml) ...
KUBE_POD_NEEDS = (
    ("create", "pods"),
    ("get", "pods"),
    ("list", "pods"),
    ("watch", "pods"),
    ("delete", "pods"),
    ("list", "events"),
    ("watch", "events"),
)
#: ... and what the API server checks when the hub creates the per-user Secret it really sends
#: (RBAC, and OpenShift's OwnerReferencesPermissionEnforcement for its owner reference)
KUBE_NEEDS = KUBE_POD_NEEDS + tuple(
    sorted(create_rights(make_user_secret("probe", "probe", {}, owner_pod=("probe", "probe-uid"))))
)
#: rights the hub must NOT have: reading or deleting the project's Secrets (admin Secrets, other
#: users' keys), blocking pod deletion, claiming storage
KUBE_TOO_MUCH = (
    ("get", "secrets"),
    ("list", "secrets"),
    ("delete", "secrets"),
    ("update", "pods/finalizers"),
    ("create", "persistentvolumeclaims"),
)
#: environment variables whose values are secrets, beyond those HubSettings holds as Secret
SECRET_ENV = (
    "JUPYTERHUB_CRYPT_KEY",
    "JPY_COOKIE_SECRET",
    "VALERIA_DB_PASSWORD",
    "VALERIA_OIDC_CLIENT_SECRET",
    "VALERIA_VAULT_APPROLE_SECRET_ID",
    "CONFIGPROXY_AUTH_TOKEN",
)


#: The first releases that refuse `+` and `*` in the rendered output of a templated policy path
#: (docs/vault.md, with sources). Older servers let a user whose alias name (or metadata) holds a
#: `*` read everyone's secrets through the one templated policy.
MIN_OPENBAO_VERSION = "2.6.0"
MIN_VAULT_VERSION = "2.0.4"


@dataclass(frozen=True)
class Result:
    status: str
    check: str
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.message} -> fix: {self.fix}" if self.fix else self.message
        # one line, whatever the messages contained
        return f"{self.status:<5} {self.check:<9} " + " ".join(text.split())


@dataclass(frozen=True)
class Options:
    timeout: float = 5.0
    nfs_port: int = 2049
    sample_user: str = "jdoe"
    sample_uid: int | None = None
    service_account_dir: str = SERVICE_ACCOUNT_DIR
    min_openbao_version: str = MIN_OPENBAO_VERSION
    min_vault_version: str = MIN_VAULT_VERSION


def _version_tuple(text: str) -> tuple[int, ...]:
    """(2, 7, 2) from "2.7.2", "v2.7.2" or "1.21.3+ent"; () if there is no leading number."""
    parts = []
    for piece in text.lstrip("v").split("+")[0].split("-")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def vault_version_problem(health: Mapping[str, object], opts: Options) -> str | None:
    """Why this server's version cannot be trusted with templated policies, or None.

    Vault's sys/health has an `enterprise` field; OpenBao's does not.
    """
    flavour, minimum = (
        ("Vault", opts.min_vault_version) if "enterprise" in health else ("OpenBao", opts.min_openbao_version)
    )
    version = str(health.get("version") or "")
    found = _version_tuple(version)
    if not found:
        return f"{flavour} did not say its version"
    if found < _version_tuple(minimum):
        return (
            f"{flavour} {version} is older than {minimum}, the first release that refuses '+' and '*' "
            "in templated policy paths"
        )
    return None


def _short(error: BaseException) -> str:
    """A one-line reason from an exception (requests wraps urllib3 wraps socket errors)."""
    text = str(error) or type(error).__name__
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "CERTIFICATE_VERIFY_FAILED",
    ):
        if marker in text:
            return {
                "Connection refused": "connection refused",
                "Name or service not known": "host name does not resolve",
                "timed out": "timed out",
                "CERTIFICATE_VERIFY_FAILED": "TLS certificate not trusted",
            }[marker]
    return text.splitlines()[0][:200]


def _verify(ca_bundle: str | None) -> str | bool:
    return ca_bundle if ca_bundle else True


def _ca_missing(check: str, variable: str, path: str | None) -> Result | None:
    if path and not Path(path).is_file():
        return Result(
            FAIL, check, f"{variable}={path} does not exist", f"mount the CA bundle there or unset {variable}"
        )
    return None


# ------------------------------------------------------------------------------------------------ Keycloak


def check_keycloak(settings: HubSettings, opts: Options) -> Result:
    import requests

    if bad := _ca_missing("keycloak", "VALERIA_OIDC_CA_BUNDLE", settings.oidc_ca_bundle):
        return bad
    url = settings.discovery_url
    verify = _verify(settings.oidc_ca_bundle)
    try:
        response = requests.get(url, timeout=opts.timeout, verify=verify)
    except requests.RequestException as e:
        return Result(
            FAIL,
            "keycloak",
            f"discovery {url} unreachable ({_short(e)})",
            "check VALERIA_OIDC_REALM_URL, DNS and egress from the hub; a private CA: VALERIA_OIDC_CA_BUNDLE",
        )
    if response.status_code != 200:
        return Result(
            FAIL,
            "keycloak",
            f"discovery {url} answered HTTP {response.status_code}",
            "VALERIA_OIDC_REALM_URL must be the realm URL, e.g. https://sso.example.org/realms/valeria",
        )
    try:
        discovery = parse_discovery(response.json(), settings.oidc_realm_url)
    except ValueError as e:  # not JSON, or DiscoveryError: the same rule as the hub's login
        if not isinstance(e, DiscoveryError):
            fix = "VALERIA_OIDC_REALM_URL is not a realm"
            return Result(FAIL, "keycloak", f"discovery {url} did not answer JSON", fix)
        fix = (
            "use the realm URL exactly as Keycloak names its issuer (its frontend URL)"
            if "issuer is" in str(e)
            else "is this an OpenID Connect realm?"
        )
        return Result(FAIL, "keycloak", f"discovery {url}: {e}", fix)
    try:
        keys = requests.get(discovery.jwks_uri, timeout=opts.timeout, verify=verify).json().get("keys", [])
    except (requests.RequestException, ValueError) as e:
        return Result(FAIL, "keycloak", f"signing keys {discovery.jwks_uri} unreachable ({_short(e)})", "")
    if not keys:
        return Result(
            FAIL, "keycloak", "the realm publishes no signing keys", "add an RS256 key provider to the realm"
        )
    return Result(
        OK, "keycloak", f"realm {settings.oidc_realm_url}: discovery, issuer and {len(keys)} signing key(s)"
    )


# ------------------------------------------------------------------------------------------------ Vault


def _probe_jwt(issuer: str, audience: str) -> str:
    """A well-formed RS256 token for a key no one has: Vault must fetch the realm's keys and refuse it."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": "valeria-hub-doctor-probe"}
    claims = {"iss": issuer, "aud": audience, "sub": "valeria-hub-doctor", "iat": now, "exp": now + 60}
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(os.urandom(256))]
    )


def check_vault(settings: HubSettings, opts: Options) -> Result:
    import requests

    if bad := _ca_missing("vault", "VALERIA_VAULT_CACERT", settings.vault_cacert):
        return bad
    verify = _verify(settings.vault_cacert)
    timeout = min(opts.timeout, settings.vault_timeout) if settings.vault_timeout else opts.timeout
    addr = settings.vault_addr
    try:
        health = requests.get(f"{addr}/v1/sys/health", timeout=timeout, verify=verify)
    except requests.RequestException as e:
        return Result(
            FAIL,
            "vault",
            f"{addr} unreachable ({_short(e)})",
            "check VALERIA_VAULT_ADDR, egress from the hub, and VALERIA_VAULT_CACERT for a private CA",
        )
    if health.status_code in (501, 503):
        state = "not initialised" if health.status_code == 501 else "sealed"
        return Result(FAIL, "vault", f"{addr} is {state}", "unseal Vault (every spawn needs it)")
    if health.status_code not in (200, 429, 472, 473):
        return Result(
            FAIL, "vault", f"{addr}/v1/sys/health answered HTTP {health.status_code}", "is this Vault?"
        )
    try:
        health_doc = health.json()
    except ValueError:
        health_doc = {}
    if problem := vault_version_problem(health_doc if isinstance(health_doc, dict) else {}, opts):
        return Result(
            FAIL, "vault", f"{addr}: {problem}", "upgrade Vault/OpenBao (docs/vault.md, minimum versions)"
        )
    mount, role = settings.vault_auth_mount, settings.vault_role
    make_body, judge = VAULT_LOGIN_CHECKS[settings.vault_auth]
    body = make_body(settings)
    if isinstance(body, Result):
        return body
    try:
        login = requests.post(f"{addr}/v1/auth/{mount}/login", json=body, timeout=timeout, verify=verify)
    except requests.RequestException as e:
        return Result(FAIL, "vault", f"login endpoint unreachable ({_short(e)})", "")
    try:
        errors = " ".join(login.json().get("errors") or [])
    except ValueError:
        errors = login.text[:200]
    where = f"{addr} auth/{mount}"
    if login.status_code in (403, 404, 405) and "role" not in errors:
        return Result(
            FAIL,
            "vault",
            f"{where}: no {settings.vault_auth} auth method mounted there (HTTP {login.status_code})",
            "run openshift/vault/configure-vault.sh, or set VALERIA_VAULT_AUTH_MOUNT to the mount path",
        )
    # AppRole answers "invalid role or secret ID" to a wrong secret: that is a refused login, not a
    # missing role
    lowered = errors.lower()
    if "could not be found" in errors or ("invalid role" in lowered and "secret id" not in lowered):
        return Result(
            FAIL,
            "vault",
            f"{where}: role {role!r} does not exist",
            "run openshift/vault/configure-vault.sh with VAULT_ROLE, or set VALERIA_VAULT_ROLE",
        )
    return judge(login, errors, where, role, lambda token: _revoke(addr, token, timeout, verify))


# Per auth method: the login body the doctor sends (or a FAIL before sending), and how it reads the
# answer. JWT has no credential of the hub's to try, so it probes with a token no key signed.


def _jwt_body(settings: HubSettings) -> dict | Result:
    return {"role": settings.vault_role, "jwt": _probe_jwt(settings.oidc_realm_url, settings.oidc_client_id)}


def _approle_body(settings: HubSettings) -> dict | Result:
    return {"role_id": settings.vault_approle_role_id, "secret_id": settings.vault_approle_secret_id.get()}


def _kubernetes_body(settings: HubSettings) -> dict | Result:
    token_path = Path(settings.vault_kube_token_path)
    if not token_path.is_file():
        return Result(FAIL, "vault", f"no service account token at {token_path}", "automount the hub's token")
    return {"role": settings.vault_role, "jwt": token_path.read_text().strip()}


def _revoke(addr: str, token: str, timeout: float, verify: str | bool) -> None:
    """The doctor's own login: give the token back at once."""
    import requests

    requests.post(
        f"{addr}/v1/auth/token/revoke-self", headers={"X-Vault-Token": token}, timeout=timeout, verify=verify
    )


def _judge_credential_login(
    login, errors: str, where: str, role: str, revoke: Callable[[str], None]
) -> Result:
    """AppRole and Kubernetes: the hub's own credential must log in."""
    if login.status_code == 200:
        token = (login.json().get("auth") or {}).get("client_token")
        if token:
            revoke(token)
        return Result(OK, "vault", f"{where}: logged in with role {role!r} (and revoked the token)")
    return Result(FAIL, "vault", f"{where}: login refused ({errors or login.status_code})", "check the role")


def _judge_jwt_probe(login, errors: str, where: str, role: str, revoke: Callable[[str], None]) -> Result:
    """JWT: Vault must fetch the realm's keys and refuse the unsigned probe."""
    if login.status_code == 200:
        return Result(
            FAIL,
            "vault",
            f"{where}: Vault ACCEPTED a token no key signed",
            "Vault's JWT config does not verify signatures: fix oidc_discovery_url / jwt_validation_pubkeys",
        )
    unreachable_realm = ("fetching keys", "get keys failed", "keyset configuration", "openid-configuration")
    if any(marker in errors for marker in unreachable_realm):
        return Result(
            FAIL,
            "vault",
            f"{where}: role {role!r} exists but Vault cannot fetch Keycloak's keys",
            "Vault must reach the realm (oidc_discovery_url, oidc_discovery_ca_pem in configure-vault.sh)",
        )
    if "verify" in errors or "signature" in errors or "validating token" in errors:
        return Result(
            OK,
            "vault",
            f"{where}: unsealed, role {role!r} exists, refuses a forged token checked with the realm's keys",
        )
    return Result(
        WARN, "vault", f"{where}: unexpected answer to the probe (HTTP {login.status_code}: {errors})", ""
    )


VAULT_LOGIN_CHECKS: dict[str, tuple[Callable[[HubSettings], dict | Result], Callable[..., Result]]] = {
    "jwt": (_jwt_body, _judge_jwt_probe),
    "approle": (_approle_body, _judge_credential_login),
    "kubernetes": (_kubernetes_body, _judge_credential_login),
}


# ------------------------------------------------------------------------------------------------ database


def check_database(settings: HubSettings, opts: Options) -> Result:
    import sqlalchemy

    url = sqlalchemy.engine.make_url(settings.db_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "jupyterhub.sqlite")
        folder = path.resolve().parent
        if not os.access(folder, os.W_OK):
            return Result(FAIL, "database", f"{shown}: folder {folder} is not writable", "")
        return Result(
            WARN, "database", f"{shown}: SQLite, fine for the local platform only", "use PostgreSQL"
        )
    connect_args: dict = {}
    if url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = max(1, int(opts.timeout))
        if settings.db_password:
            connect_args["password"] = settings.db_password.get()
    engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
            tables = sqlalchemy.inspect(conn).get_table_names()
    except sqlalchemy.exc.SQLAlchemyError as e:
        reason = _short(getattr(e, "orig", None) or e)
        fix = "check VALERIA_DB_URL (host, port, database, user) and that the hub may reach it"
        if "password" in reason or "authentication" in reason:
            fix = "check the password in the database Secret (VALERIA_DB_PASSWORD) and pg_hba.conf"
        return Result(FAIL, "database", f"{shown}: cannot connect ({reason})", fix)
    finally:
        engine.dispose()
    state = (
        "hub schema present" if "alembic_version" in tables else "empty, the hub creates its schema at start"
    )
    return Result(OK, "database", f"{shown}: connected, {state}")


# ------------------------------------------------------------------------------------------------ S3


def check_s3(settings: HubSettings, opts: Options) -> Result:
    import requests

    endpoint = settings.s3_endpoint
    ca = settings.s3_ca_bundle
    note = ""
    if ca and not Path(ca).is_file():
        # VALERIA_S3_CA_BUNDLE is a path inside the notebook image; the hub may not have it: check
        # with the platform's bundle (VALERIA_CA_BUNDLE, the same ConfigMap as the notebooks'), never
        # with certifi's, which knows no private CA
        fallback = settings.ca_bundle if settings.ca_bundle and Path(settings.ca_bundle).is_file() else None
        note = f" (VALERIA_S3_CA_BUNDLE {ca} is not on the hub: checked with {fallback or 'the hub’s CAs'})"
        ca = fallback
    # ListBuckets signed with a key that does not exist: any S3 (RGW, AWS, moto) answers with an
    # S3 error document (InvalidAccessKeyId), which proves it speaks S3 and checks signatures.
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scope = f"{stamp[:8]}/{settings.s3_region}/s3/aws4_request"
    headers = {
        "x-amz-date": stamp,
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "Authorization": f"AWS4-HMAC-SHA256 Credential=VALERIADOCTORPROBE/{scope}, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={'0' * 64}",
    }
    try:
        response = requests.get(endpoint, headers=headers, timeout=opts.timeout, verify=_verify(ca))
    except requests.exceptions.SSLError as e:
        return Result(
            FAIL,
            "s3",
            f"{endpoint}: TLS failed ({_short(e)}){note}",
            "put the CA that signs the RGW certificate into the platform's CA bundle (template parameter "
            "CA_BUNDLE_CONFIGMAP, docs/deploy.md; or VALERIA_S3_CA_BUNDLE, a file in the notebook image): "
            "the hub and the notebooks both verify with it",
        )
    except requests.RequestException as e:
        return Result(
            FAIL,
            "s3",
            f"{endpoint} unreachable ({_short(e)})",
            "check VALERIA_S3_ENDPOINT and the network path (NetworkPolicy egress for notebooks too)",
        )
    body = response.text[:2000]
    looks_s3 = "<ListAllMyBucketsResult" in body or ("<Error>" in body and "<Code>" in body)
    if not looks_s3:
        return Result(
            FAIL,
            "s3",
            f"{endpoint} answered HTTP {response.status_code}, but not like S3",
            "VALERIA_S3_ENDPOINT must be the RGW S3 endpoint itself (no path, no bucket)",
        )
    code = body.split("<Code>", 1)[1].split("<", 1)[0] if "<Code>" in body else "a bucket list"
    return Result(OK, "s3", f"{endpoint} answers like S3 ({code} for a probe key){note}")


# ------------------------------------------------------------------------------------------------ NFS


def _render(template: str, user: str, uid: int | None) -> str:
    return template.replace("{username}", user).replace("{uid}", str(uid if uid is not None else 10000))


def check_nfs(settings: HubSettings, opts: Options) -> Result:
    user, uid = opts.sample_user, opts.sample_uid
    home = _render(settings.nfs_home_path, user, uid)
    scratch = _render(settings.nfs_scratch_path, user, uid)
    if settings.spawner == "local":
        root = Path(settings.local_root)
        existing = root if root.exists() else next((p for p in root.resolve().parents if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            return Result(FAIL, "nfs", f"local spawner: VALERIA_LOCAL_ROOT {root} is not writable", "")
        return Result(OK, "nfs", f"local spawner: homes and scratch under {root.resolve()}")
    for name, path in (("VALERIA_NFS_HOME_PATH", home), ("VALERIA_NFS_SCRATCH_PATH", scratch)):
        if not path.startswith("/"):
            return Result(FAIL, "nfs", f"{name} gives {path!r}, not an absolute export path", "")
    if home == scratch:
        return Result(FAIL, "nfs", "home and scratch templates give the same path", "")
    server = settings.nfs_server or ""
    try:
        with socket.create_connection((server, opts.nfs_port), timeout=opts.timeout):
            pass
    except OSError as e:
        return Result(
            FAIL,
            "nfs",
            f"NFS server {server}:{opts.nfs_port} unreachable ({_short(e)})",
            "check VALERIA_NFS_SERVER; the nodes mount it, so it must export to the cluster's nodes",
        )
    return Result(
        OK,
        "nfs",
        f"NFS server {server}:{opts.nfs_port} answers; {user} mounts {server}:{home} and {server}:{scratch}",
    )


# ------------------------------------------------------------------------------------------------ Kubernetes


def check_kubernetes(settings: HubSettings, opts: Options, environ: Mapping[str, str]) -> Result:
    """The hub's service account may do what KubeSpawner needs in the notebooks' namespace, and no more.

    Asked with SelfSubjectAccessReviews, which any service account may create.
    """
    import requests

    if settings.spawner != "kubernetes":
        return Result(SKIP, "kubernetes", f"{settings.spawner} spawner: no Kubernetes API needed")
    sa = Path(opts.service_account_dir)
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (sa / "token").is_file():
        return Result(
            FAIL,
            "kubernetes",
            f"not inside a pod with a service account token ({sa}/token, KUBERNETES_SERVICE_HOST)",
            "run the doctor in the hub pod: oc exec deploy/valeria-hub -- valeria-hub-doctor",
        )
    namespace = settings.namespace or (sa / "namespace").read_text().strip()
    api = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + (sa / "token").read_text().strip()
    # passed per request: a Session's own `verify` loses to REQUESTS_CA_BUNDLE from the environment
    verify = str(sa / "ca.crt") if (sa / "ca.crt").is_file() else True

    def allowed(verb: str, resource: str) -> bool:
        kind, _, subresource = resource.partition("/")
        attributes = {"namespace": namespace, "verb": verb, "resource": kind}
        if subresource:
            attributes["subresource"] = subresource
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        response = session.post(
            f"{api}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            json=review,
            timeout=opts.timeout,
            verify=verify,
        )
        response.raise_for_status()
        return bool(response.json().get("status", {}).get("allowed"))

    try:
        missing = [f"{verb} {resource}" for verb, resource in KUBE_NEEDS if not allowed(verb, resource)]
        extra = [f"{verb} {resource}" for verb, resource in KUBE_TOO_MUCH if allowed(verb, resource)]
    except requests.RequestException as e:
        return Result(FAIL, "kubernetes", f"API server {api} unreachable or refused ({_short(e)})", "")
    finally:
        session.close()
    if missing:
        return Result(
            FAIL,
            "kubernetes",
            f"the hub's service account may not {', '.join(missing)} in namespace {namespace}",
            "apply openshift/templates/valeria-hub.yaml (Role and RoleBinding valeria-hub-spawner); "
            "VALERIA_NAMESPACE must be the project the Role is in",
        )
    if extra:
        return Result(
            WARN,
            "kubernetes",
            f"the hub's service account may {', '.join(extra)} in namespace {namespace}: more than it needs",
            "bind only the Role valeria-hub-spawner (not edit or admin)",
        )
    can = ", ".join(f"{verb} {resource}" for verb, resource in KUBE_NEEDS)
    cannot = ", ".join(f"{verb} {resource}" for verb, resource in KUBE_TOO_MUCH)
    return Result(OK, "kubernetes", f"in {namespace} the hub may {can}; and no more: it may not {cannot}")


# ------------------------------------------------------------------------------------------------ running


RUNNERS: dict[str, Callable[..., Result]] = {
    "keycloak": check_keycloak,
    "vault": check_vault,
    "database": check_database,
    "s3": check_s3,
    "nfs": check_nfs,
    "kubernetes": check_kubernetes,
}


def secret_values(environ: Mapping[str, str], settings: HubSettings | None) -> list[str]:
    values = [environ.get(name, "") for name in SECRET_ENV]
    if settings is not None:
        values += [
            settings.oidc_client_secret.get(),
            settings.db_password.get(),
            settings.vault_approle_secret_id.get(),
        ]
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return text


def run_checks(
    environ: Mapping[str, str], only: tuple[str, ...] = CHECKS, opts: Options | None = None
) -> list[Result]:
    """Every check, in order; never raises (an unexpected error is a FAIL line)."""
    opts = opts or Options()
    try:
        settings = HubSettings.from_env(environ)
    except SettingsError as e:
        return [Result(FAIL, "settings", str(e), "see docs/environment.md")]
    results = [
        Result(
            OK,
            "settings",
            f"hub settings parsed (spawner {settings.spawner}, Vault auth {settings.vault_auth})",
        )
    ]
    for name in only:
        try:
            args = (settings, opts, environ) if name == "kubernetes" else (settings, opts)
            results.append(RUNNERS[name](*args))
        except Exception as e:  # a doctor reports, it does not crash
            results.append(Result(FAIL, name, f"check crashed: {type(e).__name__}: {_short(e)}", ""))
    return results


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="valeria-hub-doctor",
        description="Check a Valeria hub's dependencies from its own environment, one line per check.",
    )
    parser.add_argument(
        "--only", default=",".join(CHECKS), help=f"comma-separated subset of {', '.join(CHECKS)}"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per network call (default 5)")
    parser.add_argument(
        "--nfs-port", type=int, default=2049, help="port probed on VALERIA_NFS_SERVER (default 2049)"
    )
    parser.add_argument(
        "--user", default="jdoe", help="sample username to render the NFS path templates with"
    )
    parser.add_argument(
        "--uid", type=int, default=None, help="sample uid for {uid} in the NFS path templates"
    )
    parser.add_argument(
        "--service-account-dir",
        default=SERVICE_ACCOUNT_DIR,
        help=f"the pod's service account token, CA and namespace (default {SERVICE_ACCOUNT_DIR})",
    )
    parser.add_argument(
        "--min-openbao-version",
        default=MIN_OPENBAO_VERSION,
        help=f"oldest acceptable OpenBao (default {MIN_OPENBAO_VERSION}; see docs/vault.md)",
    )
    parser.add_argument(
        "--min-vault-version",
        default=MIN_VAULT_VERSION,
        help=f"oldest acceptable HashiCorp Vault (default {MIN_VAULT_VERSION}; see docs/vault.md)",
    )
    args = parser.parse_args(argv)
    only = tuple(c.strip() for c in args.only.split(",") if c.strip())
    unknown = set(only) - set(CHECKS)
    if unknown:
        parser.error(f"unknown check(s): {', '.join(sorted(unknown))}")
    environ = os.environ if environ is None else environ
    opts = Options(
        timeout=args.timeout,
        nfs_port=args.nfs_port,
        sample_user=args.user,
        sample_uid=args.uid,
        service_account_dir=args.service_account_dir,
        min_openbao_version=args.min_openbao_version,
        min_vault_version=args.min_vault_version,
    )
    results = run_checks(environ, only, opts)
    try:
        settings = HubSettings.from_env(environ)
    except SettingsError:
        settings = None
    secrets = secret_values(environ, settings)
    for result in results:
        print(scrub(result.line(), secrets), flush=True)
    if results[0].check == "settings" and results[0].status == FAIL:
        return 2
    failed = [r for r in results if r.status == FAIL]
    print(
        f"{len(failed)} check(s) failed" if failed else "all checks passed",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
