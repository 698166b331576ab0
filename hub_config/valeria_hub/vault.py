"""VaultClient: log in, read a user's KV v2 secrets, revoke the token. hvac in a thread, never on the loop.

hvac is synchronous (requests). Every call runs in the Vault thread pool with a per-request timeout
(hvac's own) and an outer `asyncio.wait_for`; connection errors, timeouts and 5xx are retried a
bounded number of times, 4xx never. Every failure becomes VaultError with a message for the user
and a `reason` tag; the log line names the step and the error class, never a token or a value.

The thread pool is Vault's own (VAULT_THREADS threads, shared by every spawn), not asyncio's
default executor: that one has min(32, cores + 4) threads (6 on a 2-core hub) and is shared with
the rest of the hub, so with a class spawning at once Vault calls queued behind each other (first
bench run: vault_read p95 18 s for two small reads). The outer timeout counts the queue time, so
a spawn still never waits longer than the configured timeout.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from .errors import VaultError
from .metrics import timed_vault_call
from .settings import HubSettings
from .stages import SpawnStages

T = TypeVar("T")

_SUB_RE = re.compile(r"[A-Za-z0-9._@:-]{1,255}")
_RETRYABLE = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    hvac.exceptions.VaultDown,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    TimeoutError,
)
_CONTACT = "contact the platform administrators if this persists."

#: threads for blocking hvac calls, shared by all spawns (each call holds one for at most its timeout)
VAULT_THREADS = 32
_executor: ThreadPoolExecutor | None = None


def vault_executor() -> ThreadPoolExecutor:
    """The hub's one thread pool for Vault calls (created on first use)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(VAULT_THREADS, thread_name_prefix="vault")
    return _executor


@dataclass(frozen=True)
class _Failure:
    """One rung of the error ladder: which hvac/requests errors, what the user reads, and why."""

    errors: tuple[type[BaseException], ...]
    message: str  # `{step}` is the step's name; never exception text
    reason: str
    status_code: int = 403


_UNAVAILABLE = _Failure(
    _RETRYABLE,
    "The secrets service (Vault) is not answering, so your server was not started. "
    f"Try again in a few minutes; {_CONTACT}",
    "unavailable",
    503,
)
#: Errors that are never retried, most specific first (the first match wins).
_FAILURES = (
    _Failure(
        (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized),
        "The secrets service (Vault) refused access to your credentials ({step}), so your server was "
        f"not started; {_CONTACT}",
        "forbidden",
    ),
    _Failure(
        (hvac.exceptions.InvalidPath,),
        "Your credentials are missing in the secrets service (Vault), so your server was not started; "
        + _CONTACT,
        "missing",
    ),
    _Failure(
        (hvac.exceptions.VaultError,),
        "The secrets service (Vault) rejected the request ({step}), so your server was not started; "
        + _CONTACT,
        "rejected",
    ),
    _Failure(
        (requests.exceptions.RequestException,),
        "The secrets service (Vault) could not be reached securely ({step}); " + _CONTACT,
        "unavailable",
        503,
    ),
)
_NOT_RETRIED = tuple(error for failure in _FAILURES for error in failure.errors)


def _vault_error(failure: _Failure, step: str) -> VaultError:
    return VaultError(
        failure.message.format(step=step), reason=failure.reason, status_code=failure.status_code
    )


@dataclass(frozen=True)
class UserSecrets:
    """The two KV v2 documents a spawn needs (values are validated later, in plan.py)."""

    identity: Mapping[str, Any]
    s3: Mapping[str, Any]


def kv_path(template: str, username: str, sub: str | None) -> str:
    """Fill a path template; `{sub}` needs a subject that is safe in a path."""
    if "{sub}" in template and (not sub or not _SUB_RE.fullmatch(sub) or ".." in sub):
        raise VaultError(f"Your account has no usable subject id for Vault; {_CONTACT}", reason="bad-subject")
    return template.format(username=username, sub=sub or "")


class VaultClient:
    """One Vault endpoint, configured from HubSettings. Stateless between spawns."""

    def __init__(
        self,
        settings: HubSettings,
        log: logging.Logger | None = None,
        client_factory: Callable[[], hvac.Client] | None = None,
    ) -> None:
        self.settings = settings
        self.log = log or logging.getLogger("valeria_hub.vault")
        self._client_factory = client_factory or self._new_client

    def _new_client(self) -> hvac.Client:
        verify: bool | str = self.settings.vault_cacert or True
        return hvac.Client(url=self.settings.vault_addr, verify=verify, timeout=self.settings.vault_timeout)

    @timed_vault_call
    async def _call(self, step: str, fn: Callable[[], T]) -> T:
        """Run one blocking hvac call in a thread, with a timeout and bounded retries."""
        attempts = 1 + self.settings.vault_retries
        outer_timeout = self.settings.vault_timeout * 2 + 1
        for attempt in range(1, attempts + 1):
            try:
                call = asyncio.get_running_loop().run_in_executor(vault_executor(), fn)
                return await asyncio.wait_for(call, outer_timeout)
            except _RETRYABLE as e:
                self.log.warning(
                    "Vault %s failed (%s), attempt %d/%d", step, type(e).__name__, attempt, attempts
                )
                if attempt == attempts:
                    raise _vault_error(_UNAVAILABLE, step) from None
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
            except _NOT_RETRIED as e:
                failure = next(f for f in _FAILURES if isinstance(e, f.errors))
                self.log.warning("Vault %s failed (%s): %s", step, type(e).__name__, failure.reason)
                raise _vault_error(failure, step) from None
        raise AssertionError("unreachable")

    async def login(self, access_token: str | None) -> hvac.Client:
        """A client holding a fresh Vault token, from the configured auth method."""
        s = self.settings
        client = self._client_factory()
        if s.vault_auth == "jwt" and not access_token:
            raise VaultError("You have no valid login token; please log in again.", reason="no-token")

        def fn():
            if s.vault_auth == "jwt":
                return client.auth.jwt.jwt_login(role=s.vault_role, jwt=access_token, path=s.vault_auth_mount)
            if s.vault_auth == "kubernetes":
                with open(s.vault_kube_token_path) as f:
                    jwt = f.read().strip()
                mount = s.vault_auth_mount
                return client.auth.kubernetes.login(role=s.vault_role, jwt=jwt, mount_point=mount)
            return client.auth.approle.login(
                role_id=s.vault_approle_role_id,
                secret_id=s.vault_approle_secret_id.get(),
                mount_point=s.vault_auth_mount,
            )

        try:
            response = await self._call("login", fn)
        except OSError:
            self.log.error("Vault login: cannot read the service-account token file")
            raise VaultError(f"The hub cannot authenticate to Vault; {_CONTACT}", reason="no-token") from None
        token = (response or {}).get("auth", {}).get("client_token") if isinstance(response, dict) else None
        if not token:
            raise VaultError(f"Vault login returned no token; {_CONTACT}", reason="rejected")
        client.token = token
        return client

    async def read(self, client: hvac.Client, path: str) -> Mapping[str, Any]:
        """The data of the latest version of one KV v2 secret."""
        s = self.settings
        response = await self._call(
            "read",
            lambda: client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=s.vault_kv_mount, raise_on_deleted_version=True
            ),
        )
        data = (response or {}).get("data", {}).get("data") if isinstance(response, dict) else None
        if not isinstance(data, dict):
            raise VaultError(f"Your credentials in Vault are malformed; {_CONTACT}", reason="malformed")
        return data

    async def revoke(self, client: hvac.Client) -> None:
        """Revoke the token we logged in with; failure is logged, not fatal (it expires anyway)."""
        try:
            await self._call("revoke", client.auth.token.revoke_self)
        except VaultError as e:
            self.log.warning("Vault token revocation failed (%s); it will expire by its TTL", e.reason)

    async def read_user_secrets(
        self, username: str, sub: str | None, access_token: str | None, stages: SpawnStages | None = None
    ) -> UserSecrets:
        """Login → read identity and S3 keys (concurrently) → revoke (always, once logged in); timed into
        `stages`."""
        s = self.settings
        stages = stages or SpawnStages()
        identity_path = kv_path(s.vault_identity_path, username, sub)
        s3_path = kv_path(s.vault_s3_path, username, sub)
        with stages.stage("vault_login"):
            client = await self.login(access_token)
        try:
            with stages.stage("vault_read"):
                # both at once: under a class's load each read waits for Vault (bench: p95 3 s)
                # (both finish before the revoke below; the first error is raised)
                identity, s3 = await asyncio.gather(
                    self.read(client, identity_path), self.read(client, s3_path), return_exceptions=True
                )
                for result in (identity, s3):
                    if isinstance(result, BaseException):
                        raise result
        finally:
            with stages.stage("vault_revoke"):
                await self.revoke(client)
        return UserSecrets(identity=identity, s3=s3)
