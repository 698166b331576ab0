"""Every environment variable the hub reads, parsed and validated once into one frozen object.

`HubSettings.from_env(os.environ)` is the only place that reads the hub's environment. A missing or
bad value raises `SettingsError` naming the variable; secrets are held in `Secret`, whose repr and
str never show the value. docs/environment.md (section "Hub") is the table of these variables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

VAULT_AUTH_METHODS = ("jwt", "kubernetes", "approle")
SPAWNERS = ("kubernetes", "local")

#: KubeSpawner traits a profile may never set: the identity and the volumes come from Vault.
IDENTITY_TRAITS = frozenset(
    {
        "uid",
        "gid",
        "fs_gid",
        "supplemental_gids",
        "privileged",
        "allow_privilege_escalation",
        "container_security_context",
        "pod_security_context",
        "volumes",
        "volume_mounts",
        "environment",
        "service_account",
        "automount_service_account_token",
        "extra_pod_config",
        "extra_container_config",
        "init_containers",
        "extra_containers",
        "modify_pod_hook",
        "namespace",
        # a label can make a notebook look like the hub to the NetworkPolicies
        "extra_labels",
        # code run as the user outside the notebook's own start, and where it starts
        "lifecycle_hooks",
        "working_dir",
        "notebook_dir",
    }
)

PROFILE_KEYS = frozenset({"slug", "display_name", "image", "description", "default", "kubespawner_override"})

DEFAULT_PROFILES = (
    {
        "slug": "scipy",
        "display_name": "Python (SciPy)",
        "image": "quay.io/jupyter/scipy-notebook:2025-10-20",
        "default": True,
    },
    {"slug": "r", "display_name": "R", "image": "quay.io/jupyter/r-notebook:2025-10-20"},
)


#: where the platform's CA bundle (VALERIA_CA_BUNDLE_CONFIGMAP, key ca-bundle.crt) is mounted
DEFAULT_CA_BUNDLE = "/etc/pki/valeria/ca-bundle.crt"


class SettingsError(ValueError):
    """A hub setting is missing or invalid; the message names the variable, never a secret value."""


class Secret:
    """A secret string: `.get()` gives the value, repr/str/format never do."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Profile:
    """One notebook flavour offered on the spawn page."""

    slug: str
    display_name: str
    image: str
    description: str = ""
    default: bool = False
    kubespawner_override: Mapping[str, object] = field(default_factory=dict)

    def as_kubespawner(self) -> dict:
        """The entry for KubeSpawner.profile_list."""
        override = dict(self.kubespawner_override)
        override["image"] = self.image
        entry = {
            "slug": self.slug,
            "display_name": self.display_name,
            "description": self.description,
            "kubespawner_override": override,
        }
        if self.default:
            entry["default"] = True
        return entry


@dataclass(frozen=True)
class HubSettings:
    """The hub's configuration, from the environment (see docs/environment.md)."""

    # login
    oidc_realm_url: str
    oidc_client_id: str
    oidc_client_secret: Secret
    oidc_ca_bundle: str | None
    oidc_allowed_groups: tuple[str, ...]
    oidc_admin_groups: tuple[str, ...]
    oidc_scopes: tuple[str, ...]
    token_refresh_margin: int
    auth_refresh_age: int
    token_refresh_jitter: int
    concurrent_spawn_limit: int
    # hub and proxy
    hub_public_url: str
    proxy_bind_url: str
    hub_bind_url: str
    hub_connect_url: str | None
    proxy_api_url: str
    proxy_should_start: bool
    db_url: str
    db_password: Secret
    #: token of the `metrics` hub service (scope read:metrics only) that Prometheus scrapes with
    metrics_token: Secret
    start_timeout: int
    http_timeout: int
    cull_idle_timeout: int
    cull_every: int
    cull_max_age: int
    # vault
    vault_addr: str
    vault_cacert: str | None
    vault_auth: str
    vault_auth_mount: str
    vault_role: str
    vault_approle_role_id: str | None
    vault_approle_secret_id: Secret
    vault_kube_token_path: str
    vault_kv_mount: str
    vault_s3_path: str
    vault_identity_path: str
    vault_timeout: float
    vault_retries: int
    uid_min: int
    uid_max: int
    # what the notebooks get
    s3_endpoint: str
    s3_region: str
    s3_ca_bundle: str | None
    ca_bundle: str | None
    ca_bundle_configmap: str | None
    s3_shared_buckets: tuple[str, ...]
    spawner: str
    nfs_server: str | None
    nfs_home_path: str
    nfs_scratch_path: str
    profiles: tuple[Profile, ...]
    namespace: str | None
    notebook_service_account: str | None
    local_root: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> HubSettings:
        """Parse and validate; raise SettingsError naming the first bad variable."""
        env = _Reader(environ)
        if not environ.get("JUPYTERHUB_CRYPT_KEY", "").strip():
            raise SettingsError(
                "JUPYTERHUB_CRYPT_KEY is not set: the hub keeps users' tokens in encrypted auth state "
                "and refuses to start without a key (generate one with `openssl rand -hex 32`)"
            )
        spawner = env.choice("VALERIA_SPAWNER", SPAWNERS, "kubernetes")
        vault_auth = env.choice("VALERIA_VAULT_AUTH", VAULT_AUTH_METHODS, "jwt")
        uid_min = env.integer("VALERIA_UID_MIN", 1000, minimum=1)
        uid_max = env.integer("VALERIA_UID_MAX", 2147483647, minimum=1)
        if uid_max < uid_min:
            raise SettingsError(f"VALERIA_UID_MAX ({uid_max}) is below VALERIA_UID_MIN ({uid_min})")
        access_ttl_margin = env.integer("VALERIA_TOKEN_REFRESH_MARGIN", 60, minimum=0)
        ca_configmap = env.optional("VALERIA_CA_BUNDLE_CONFIGMAP")
        if ca_configmap and not _SLUG_RE.fullmatch(ca_configmap):
            raise SettingsError(f"VALERIA_CA_BUNDLE_CONFIGMAP must be a ConfigMap name, got {ca_configmap!r}")
        ca_bundle = env.get("VALERIA_CA_BUNDLE", DEFAULT_CA_BUNDLE if ca_configmap else "") or None
        if ca_configmap and (not ca_bundle.startswith("/") or ca_bundle.count("/") < 3):
            # mounted as a whole directory in the notebooks: never /, /etc or another system folder
            raise SettingsError(
                f"VALERIA_CA_BUNDLE must be a file in a dedicated folder such as {DEFAULT_CA_BUNDLE}, "
                f"got {ca_bundle!r}"
            )
        settings = cls(
            oidc_realm_url=env.url("VALERIA_OIDC_REALM_URL").rstrip("/"),
            oidc_client_id=env.required("VALERIA_OIDC_CLIENT_ID"),
            oidc_client_secret=Secret(env.required("VALERIA_OIDC_CLIENT_SECRET")),
            oidc_ca_bundle=env.optional("VALERIA_OIDC_CA_BUNDLE"),
            oidc_allowed_groups=env.group_paths("VALERIA_OIDC_ALLOWED_GROUPS", required=True),
            oidc_admin_groups=env.group_paths("VALERIA_OIDC_ADMIN_GROUPS"),
            oidc_scopes=env.csv("VALERIA_OIDC_SCOPES") or ("openid", "profile", "email"),
            token_refresh_margin=access_ttl_margin,
            auth_refresh_age=env.integer("VALERIA_AUTH_REFRESH_AGE", 60, minimum=1),
            token_refresh_jitter=env.integer("VALERIA_TOKEN_REFRESH_JITTER", 30, minimum=0),
            # JupyterHub's own default; a spawn over the limit is answered 429 "try again"
            concurrent_spawn_limit=env.integer("VALERIA_CONCURRENT_SPAWN_LIMIT", 100, minimum=0),
            hub_public_url=env.url("VALERIA_HUB_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
            proxy_bind_url=env.url(
                "VALERIA_PROXY_BIND_URL", env.get("VALERIA_HUB_PUBLIC_URL", "http://127.0.0.1:8000")
            ),
            hub_bind_url=env.url("VALERIA_HUB_BIND_URL", "http://127.0.0.1:8081"),
            hub_connect_url=env.optional_url("VALERIA_HUB_CONNECT_URL"),
            proxy_api_url=env.url("VALERIA_PROXY_API_URL", "http://127.0.0.1:8001"),
            proxy_should_start=env.boolean("VALERIA_PROXY_SHOULD_START", True),
            db_url=env.db_url("VALERIA_DB_URL", "sqlite:///jupyterhub.sqlite"),
            # stripped: a password file made with `echo` ends in a newline that libpq would send
            db_password=Secret(environ.get("VALERIA_DB_PASSWORD", "").strip()),
            # the first spawn on a node pulls a multi-GB notebook image: JupyterHub's 60 s is too short
            start_timeout=env.integer("VALERIA_START_TIMEOUT", 600, minimum=1),
            http_timeout=env.integer("VALERIA_HTTP_TIMEOUT", 120, minimum=1),
            cull_idle_timeout=env.integer("VALERIA_CULL_IDLE_TIMEOUT", 0, minimum=0),
            cull_every=env.integer("VALERIA_CULL_EVERY", 300, minimum=1),
            cull_max_age=env.integer("VALERIA_CULL_MAX_AGE", 0, minimum=0),
            metrics_token=Secret(env.optional_secret("VALERIA_METRICS_TOKEN", min_length=32)),
            vault_addr=env.url("VALERIA_VAULT_ADDR").rstrip("/"),
            vault_cacert=env.optional("VALERIA_VAULT_CACERT"),
            vault_auth=vault_auth,
            # configure-vault.sh's own mount (never a shared `jwt/`); other methods: their usual path
            vault_auth_mount=env.path_segment(
                "VALERIA_VAULT_AUTH_MOUNT", "valeria-jwt" if vault_auth == "jwt" else vault_auth
            ),
            vault_role=env.get("VALERIA_VAULT_ROLE", "jupyterhub"),
            vault_approle_role_id=(
                env.required("VALERIA_VAULT_APPROLE_ROLE_ID") if vault_auth == "approle" else None
            ),
            vault_approle_secret_id=Secret(
                env.required("VALERIA_VAULT_APPROLE_SECRET_ID") if vault_auth == "approle" else ""
            ),
            vault_kube_token_path=env.get(
                "VALERIA_VAULT_KUBE_TOKEN_PATH", "/var/run/secrets/kubernetes.io/serviceaccount/token"
            ),
            vault_kv_mount=env.path_segment("VALERIA_VAULT_KV_MOUNT", "valeria-kv"),
            vault_s3_path=env.template(
                "VALERIA_VAULT_S3_PATH", "valeria/users/{sub}/s3", {"username", "sub"}
            ),
            vault_identity_path=env.template(
                "VALERIA_VAULT_IDENTITY_PATH", "valeria/users/{sub}/posix", {"username", "sub"}
            ),
            vault_timeout=env.number("VALERIA_VAULT_TIMEOUT", 5.0, minimum=0.1),
            vault_retries=env.integer("VALERIA_VAULT_RETRIES", 2, minimum=0, maximum=10),
            uid_min=uid_min,
            uid_max=uid_max,
            s3_endpoint=env.url("VALERIA_S3_ENDPOINT"),
            s3_region=env.get("VALERIA_S3_REGION", "us-east-1"),
            # the platform's CA bundle (the admin's ConfigMap, mounted at this path on the hub and
            # in every notebook): S3 clients use it unless told otherwise
            s3_ca_bundle=env.optional("VALERIA_S3_CA_BUNDLE") or ca_bundle,
            ca_bundle=ca_bundle,
            ca_bundle_configmap=ca_configmap,
            s3_shared_buckets=env.csv("VALERIA_S3_SHARED_BUCKETS"),
            spawner=spawner,
            nfs_server=env.required("VALERIA_NFS_SERVER")
            if spawner == "kubernetes"
            else env.optional("VALERIA_NFS_SERVER"),
            nfs_home_path=env.template("VALERIA_NFS_HOME_PATH", "/home/{username}", {"username", "uid"}),
            nfs_scratch_path=env.template(
                "VALERIA_NFS_SCRATCH_PATH", "/scratch/{username}", {"username", "uid"}
            ),
            profiles=env.profiles("VALERIA_PROFILES", "VALERIA_EXTRA_PROFILES"),
            namespace=env.optional("VALERIA_NAMESPACE"),
            notebook_service_account=env.optional("VALERIA_NOTEBOOK_SERVICE_ACCOUNT"),
            local_root=env.get("VALERIA_LOCAL_ROOT", ".state/users"),
        )
        if settings.auth_refresh_age <= 0:
            raise SettingsError("VALERIA_AUTH_REFRESH_AGE must be positive")
        return settings

    @property
    def discovery_url(self) -> str:
        from .oidc import discovery_url

        return discovery_url(self.oidc_realm_url)

    @property
    def oauth_callback_url(self) -> str:
        return f"{self.hub_public_url}/hub/oauth_callback"

    def db_environment(self) -> dict[str, str]:
        """Environment for libpq: the password as PGPASSWORD, never in the (logged) URL.

        JupyterHub's own alembic step builds its engine from the URL alone, so engine
        connect_args would not reach it; libpq reads PGPASSWORD in every connection instead.
        Spawned notebooks do not inherit it (not in Spawner.env_keep).
        """
        if not self.db_password or not self.db_url.startswith("postgresql"):
            return {}
        return {"PGPASSWORD": self.db_password.get()}


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SLUG_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class _Reader:
    """Typed reads of one environment mapping, each error naming its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def get(self, name: str, default: str) -> str:
        value = self.environ.get(name, "").strip()
        return value or default

    def optional(self, name: str) -> str | None:
        return self.environ.get(name, "").strip() or None

    def required(self, name: str) -> str:
        value = self.environ.get(name, "").strip()
        if not value:
            raise SettingsError(f"{name} is required and not set (see docs/environment.md)")
        return value

    def optional_secret(self, name: str, min_length: int) -> str:
        value = self.environ.get(name, "").strip()
        if value and len(value) < min_length:
            raise SettingsError(f"{name} must be at least {min_length} characters: `openssl rand -hex 32`")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, default).lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def integer(self, name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name} must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{name} must be <= {maximum}, got {value}")
        return value

    def number(self, name: str, default: float, minimum: float) -> float:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if not value >= minimum:
            raise SettingsError(f"{name} must be >= {minimum}, got {raw}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.environ.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")

    def csv(self, name: str, required: bool = False) -> tuple[str, ...]:
        items = tuple(item.strip() for item in self.environ.get(name, "").split(",") if item.strip())
        if required and not items:
            raise SettingsError(f"{name} is required: a comma-separated list, e.g. '/researchers'")
        return items

    def group_paths(self, name: str, required: bool = False) -> tuple[str, ...]:
        """Full Keycloak group paths (`/researchers`, `/org/team`), compared exactly at login.

        A bare name would match a group of that name anywhere in the tree (Keycloak's mapper sends
        only the last segment when "Full group path" is off), so `/x/researchers` could pass.
        """
        paths = self.csv(name, required=required)
        for path in paths:
            if not path.startswith("/") or "" in path[1:].split("/"):
                raise SettingsError(
                    f"{name} must list full Keycloak group paths such as /researchers, got {path!r}"
                )
        return paths

    def url(self, name: str, default: str | None = None) -> str:
        value = self.get(name, default or "") if default else self.required(name)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"{name} must be an http(s) URL, got {value!r}")
        if parts.username or parts.password:
            raise SettingsError(f"{name} must not carry credentials in the URL")
        return value

    def optional_url(self, name: str) -> str | None:
        return self.url(name) if self.optional(name) else None

    def db_url(self, name: str, default: str) -> str:
        value = self.get(name, default)
        parts = urlsplit(value)
        if not parts.scheme:
            raise SettingsError(f"{name} must be a SQLAlchemy URL such as postgresql+psycopg2://user@host/db")
        if parts.password:
            raise SettingsError(f"{name} must not contain the password: set VALERIA_DB_PASSWORD instead")
        if parts.scheme in ("postgresql", "postgres"):
            # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed.
            raise SettingsError(f"{name} must name the driver explicitly: postgresql+psycopg2://...")
        return value

    def path_segment(self, name: str, default: str) -> str:
        value = self.get(name, default).strip("/")
        if not all(_NAME_RE.fullmatch(part) for part in value.split("/")):
            raise SettingsError(f"{name} must be a mount path like 'secret', got {value!r}")
        return value

    def template(self, name: str, default: str, fields: set[str]) -> str:
        value = self.get(name, default)
        used = set(re.findall(r"{(\w*)}", value))
        unknown = used - fields
        if unknown or "{}" in value:
            raise SettingsError(
                f"{name} may only use the placeholders {', '.join(sorted('{' + f + '}' for f in fields))}, "
                f"got {value!r}"
            )
        if not used:
            # a template without a per-user placeholder would hand every user the same path
            raise SettingsError(f"{name} must contain a per-user placeholder, got {value!r}")
        if ".." in value.split("/"):
            raise SettingsError(f"{name} must not contain '..', got {value!r}")
        return value

    def profiles(self, name: str, extra_name: str) -> tuple[Profile, ...]:
        """The profile list `name` (default: DEFAULT_PROFILES), then the admin's extra flavours
        `extra_name` (optional; its own ConfigMap, so re-applying the template never resets it)."""
        raw = self.environ.get(name, "").strip()
        profiles = self._profile_list(name, raw) if raw else tuple(Profile(**e) for e in DEFAULT_PROFILES)
        extra_raw = self.environ.get(extra_name, "").strip()
        extra = self._profile_list(extra_name, extra_raw) if extra_raw else ()
        taken = {p.slug for p in profiles} & {p.slug for p in extra}
        if taken:
            raise SettingsError(f"{extra_name} repeats the slugs of {name}: {', '.join(sorted(taken))}")
        return profiles + extra

    def _profile_list(self, name: str, raw: str) -> tuple[Profile, ...]:
        try:
            entries = json.loads(raw)
        except ValueError as e:
            raise SettingsError(f"{name} is not valid JSON: {e}") from None
        if not isinstance(entries, list) or not entries:
            raise SettingsError(f"{name} must be a non-empty JSON list of profiles")
        profiles = []
        for i, entry in enumerate(entries):
            where = f"{name}[{i}]"
            if not isinstance(entry, dict):
                raise SettingsError(f"{where} must be an object")
            unknown = set(entry) - PROFILE_KEYS
            if unknown:
                raise SettingsError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
            for key in ("slug", "display_name", "image"):
                if not isinstance(entry.get(key), str) or not entry[key].strip():
                    raise SettingsError(f"{where} needs a non-empty string {key!r}")
            if not _SLUG_RE.fullmatch(entry["slug"]):
                raise SettingsError(f"{where}.slug must be lowercase letters, digits and '-'")
            override = entry.get("kubespawner_override", {})
            if not isinstance(override, dict):
                raise SettingsError(f"{where}.kubespawner_override must be an object")
            forbidden = set(override) & IDENTITY_TRAITS
            if forbidden:
                raise SettingsError(
                    f"{where}.kubespawner_override may not set {', '.join(sorted(forbidden))}: "
                    "identity, volumes and environment come from Vault"
                )
            profiles.append(
                Profile(
                    slug=entry["slug"],
                    display_name=entry["display_name"],
                    image=entry["image"],
                    description=str(entry.get("description", "")),
                    default=bool(entry.get("default", False)),
                    kubespawner_override=override,
                )
            )
        slugs = [p.slug for p in profiles]
        if len(set(slugs)) != len(slugs):
            raise SettingsError(f"{name} has duplicate slugs")
        return tuple(profiles)
