"""SpawnPlan: what a notebook server gets, built from Vault's answer and the settings. No I/O.

Every value that decides who the notebook runs as is validated here, once, whatever the spawner:
uid and gid are integers within [uid_min, uid_max] (never 0), supplementary groups likewise, S3 keys
present and well-formed, the username safe to put in a path. Anything else raises PlanError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import PlanError
from .s3env import s3_public_environment, s3_secret_environment
from .settings import HubSettings

#: The one rule for user names substituted into NFS and Vault paths (JupyterHub lowercases names),
#: matched in full; openshift/vault/put-user-secrets.sh checks the same pattern, docs/keycloak.md
#: states it and how e-mail user names are mapped in Keycloak.
USERNAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,62}"
_USERNAME_RE = re.compile(USERNAME_PATTERN)
_DIGITS_RE = re.compile(r"[0-9]{1,10}")
_KEY_RE = re.compile(r"[\x21-\x7e]{1,1024}")  # printable ASCII, no spaces or newlines
MAX_GROUPS = 64

#: what points TLS clients at a CA bundle: botocore, requests, OpenSSL (Python ssl, R, git), curl
CA_BUNDLE_VARIABLES = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")

HOME_MOUNT = "/home/{username}"
SCRATCH_MOUNT = "/scratch/{username}"


@dataclass(frozen=True)
class PosixIdentity:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class S3Keys:
    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NfsVolume:
    """One NFS export path mounted at one place in the notebook."""

    name: str
    server: str
    export_path: str
    mount_path: str


@dataclass(frozen=True)
class SpawnPlan:
    """Everything a spawner applies. `secret_env` must only travel through a secret channel."""

    username: str
    uid: int
    gid: int
    supplemental_gids: tuple[int, ...]
    public_env: Mapping[str, str]
    secret_env: Mapping[str, str] = field(repr=False)
    home_dir: str
    scratch_dir: str
    volumes: tuple[NfsVolume, ...] = ()
    #: the platform's CA bundle: (ConfigMap name, path in the pod), mounted by the hub, not a profile
    ca_bundle: tuple[str, str] | None = None

    def secret_values(self) -> list[str]:
        """The values that must never appear in a pod spec, a log line or an HTTP response."""
        return [v for v in self.secret_env.values() if v]


def check_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME_RE.fullmatch(username) or ".." in username:
        raise PlanError(
            "Your user name cannot be used for storage paths: it must be 1 to 63 lowercase letters, "
            "digits, '.', '_' or '-', starting with a letter or digit (an e-mail address is not); "
            "contact the platform administrators.",
            reason="bad-username",
        )
    return username


def _posix_id(value: object, what: str, settings: HubSettings) -> int:
    """An id from Vault: an int, or a string of digits (KV written from the CLI holds strings)."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS_RE.fullmatch(value):
        number = int(value)
    else:
        number = None
    if number is None:
        raise PlanError(
            f"Your account's {what} in Vault is not a valid number, so the server was not started; "
            "contact the platform administrators.",
            reason="malformed",
        )
    if number == 0 or number < settings.uid_min or number > settings.uid_max:
        raise PlanError(
            f"Your account's {what} ({number}) is outside the allowed range "
            f"{settings.uid_min}-{settings.uid_max}, so the server was not started; "
            "contact the platform administrators.",
            reason="uid-range" if number != 0 else "uid-zero",
        )
    return number


def parse_identity(data: Mapping[str, object] | None, settings: HubSettings) -> PosixIdentity:
    """uid, gid and supplementary groups from the identity secret."""
    if not isinstance(data, Mapping):
        raise PlanError("Your POSIX identity in Vault is malformed; contact the administrators.", "malformed")
    for key in ("uid", "gid"):
        if key not in data:
            raise PlanError(
                f"Your POSIX identity in Vault has no {key}, so the server was not started; "
                "contact the platform administrators.",
                reason="missing",
            )
    uid = _posix_id(data["uid"], "uid", settings)
    gid = _posix_id(data["gid"], "gid", settings)
    raw_groups = data.get("groups", [])
    if raw_groups is None or raw_groups == "":
        raw_groups = []
    if isinstance(raw_groups, str):
        raw_groups = [g.strip() for g in raw_groups.split(",") if g.strip()]
    if not isinstance(raw_groups, list | tuple) or len(raw_groups) > MAX_GROUPS:
        raise PlanError(
            "Your supplementary groups in Vault are malformed; contact the platform administrators.",
            reason="malformed",
        )
    groups: list[int] = []
    for g in raw_groups:
        gid_value = _posix_id(g, "supplementary group", settings)
        if gid_value not in groups:
            groups.append(gid_value)
    return PosixIdentity(uid=uid, gid=gid, groups=tuple(groups))


def parse_s3_keys(data: Mapping[str, object] | None) -> S3Keys:
    """The S3 key pair (and optional session token) from the S3 secret. Never echoes values."""
    if not isinstance(data, Mapping):
        raise PlanError(
            "Your S3 keys in Vault are malformed; contact the platform administrators.", "malformed"
        )
    access, secret = data.get("access_key"), data.get("secret_key")
    if not access or not secret:
        raise PlanError(
            "Your S3 keys are missing in Vault, so the server was not started; "
            "contact the platform administrators.",
            reason="missing",
        )
    token = data.get("session_token") or None
    for value in (access, secret, token):
        if value is not None and (not isinstance(value, str) or not _KEY_RE.fullmatch(value)):
            raise PlanError(
                "Your S3 keys in Vault are malformed; contact the platform administrators.",
                reason="malformed",
            )
    return S3Keys(access_key=access, secret_key=secret, session_token=token)


def build_plan(
    settings: HubSettings,
    username: str,
    identity: PosixIdentity,
    keys: S3Keys,
) -> SpawnPlan:
    """The plan for one spawn; paths depend on the spawner kind (NFS in pods, folders locally)."""
    check_username(username)
    fields = {"username": username, "uid": identity.uid}
    if settings.spawner == "kubernetes":
        home_dir = HOME_MOUNT.format(**fields)
        scratch_dir = SCRATCH_MOUNT.format(**fields)
        volumes = (
            NfsVolume("home", settings.nfs_server or "", settings.nfs_home_path.format(**fields), home_dir),
            NfsVolume(
                "scratch", settings.nfs_server or "", settings.nfs_scratch_path.format(**fields), scratch_dir
            ),
        )
        for v in volumes:
            if not v.server or ".." in v.export_path.split("/") or not v.export_path.startswith("/"):
                raise PlanError("The storage paths for your account are invalid.", reason="bad-path")
    else:
        root = os.path.abspath(settings.local_root)
        home_dir = os.path.join(root, username, "home")
        scratch_dir = os.path.join(root, username, "scratch")
        volumes = ()
    public_env = s3_public_environment(
        settings.s3_endpoint,
        region=settings.s3_region,
        ca_bundle=settings.s3_ca_bundle,
        shared_buckets=settings.s3_shared_buckets,
    )
    public_env["VALERIA_SCRATCH_DIR"] = scratch_dir
    if settings.ca_bundle:
        # every TLS client in the notebook (requests, pip, curl, git, R) trusts the platform's CAs
        for name in CA_BUNDLE_VARIABLES:
            public_env.setdefault(name, settings.ca_bundle)
    ca_bundle = None
    if settings.spawner == "kubernetes" and settings.ca_bundle_configmap and settings.ca_bundle:
        ca_bundle = (settings.ca_bundle_configmap, settings.ca_bundle)
    secret_env = s3_secret_environment(keys.access_key, keys.secret_key, keys.session_token)
    return SpawnPlan(
        username=username,
        uid=identity.uid,
        gid=identity.gid,
        supplemental_gids=identity.groups,
        public_env=public_env,
        secret_env=secret_env,
        home_dir=home_dir,
        scratch_dir=scratch_dir,
        volumes=volumes,
        ca_bundle=ca_bundle,
    )
