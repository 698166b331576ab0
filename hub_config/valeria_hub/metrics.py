"""The hub's own Prometheus metrics, exported by JupyterHub's `/hub/metrics` (scope `read:metrics`).

JupyterHub serves prometheus_client's default registry; defining the metrics here (once per
process, at import) is all it takes to export them beside `jupyterhub_*`. Label values come from
small fixed sets written in this code (stage names, refusal reasons, outcomes), never from user
input, so a crafted username or URL cannot blow up the number of series. docs/operations.md lists
every metric; the Grafana dashboard (openshift/monitoring/) queries them.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram
from tornado.httpclient import HTTPClientError
from tornado.web import HTTPError

from . import stages

T = TypeVar("T")

#: spawn pipeline stages, in order (the bench's table reads the same names)
STAGES = ("token_refresh", "vault_login", "vault_read", "vault_revoke", "plan", "start")
#: SpawnRefused.reason tags raised by this package; anything else is counted as "other"
REFUSAL_REASONS = frozenset(
    {
        "login-expired",
        "config",
        "bad-subject",
        "unavailable",
        "forbidden",
        "missing",
        "rejected",
        "no-token",
        "malformed",
        "bad-username",
        "uid-range",
        "uid-zero",
        "bad-path",
        "identity-override",
        "no-plan",
        "secret",
        "refused",
    }
)
VAULT_OPERATIONS = ("login", "read", "revoke")
KEYCLOAK_OPERATIONS = ("discovery", "token", "userinfo", "other")

# Spawn stages take from milliseconds (plan) to minutes (start with an image pull).
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SPAWN_STAGE_SECONDS = Histogram(
    "valeria_spawn_stage_duration_seconds",
    "Time spent in each stage of the spawn pipeline (successful or not)",
    ["stage"],
    buckets=_STAGE_BUCKETS,
)
SPAWNS = Counter("valeria_spawns_total", "Spawns that passed the pipeline and started", [])
SPAWN_REFUSALS = Counter(
    "valeria_spawn_refusals_total", "Spawns refused before or while starting, by reason", ["reason"]
)
VAULT_SECONDS = Histogram(
    "valeria_vault_request_duration_seconds",
    "Vault calls made by the hub (retries included), by operation",
    ["operation"],
    buckets=_CALL_BUCKETS,
)
VAULT_REQUESTS = Counter(
    "valeria_vault_requests_total",
    "Vault calls made by the hub, by operation and outcome (ok or the refusal reason)",
    ["operation", "outcome"],
)
KEYCLOAK_SECONDS = Histogram(
    "valeria_keycloak_request_duration_seconds",
    "HTTP requests from the hub to Keycloak, by operation",
    ["operation"],
    buckets=_CALL_BUCKETS,
)
KEYCLOAK_REQUESTS = Counter(
    "valeria_keycloak_requests_total",
    "HTTP requests from the hub to Keycloak, by operation and outcome (ok, http_4xx, http_5xx, unreachable)",
    ["operation", "outcome"],
)
TOKEN_REFRESHES = Counter(
    "valeria_token_refreshes_total",
    "Refresh-token grants attempted by the hub, by outcome (ok, refused, error, kept)",
    ["outcome"],
)
FORCED_RELOGINS = Counter(
    "valeria_forced_relogins_total",
    "Times a user's tokens could not be refreshed, so the user had to log in again",
)
AUDIT_EVENTS = Counter(
    "valeria_audit_events_total", "Events written to the audit log, by event name", ["event"]
)

# Every labelled series exists from the start (at 0), so dashboards and rate() see them at once.
for _stage in STAGES:
    SPAWN_STAGE_SECONDS.labels(_stage)
for _op in VAULT_OPERATIONS:
    VAULT_SECONDS.labels(_op)
for _op in KEYCLOAK_OPERATIONS:
    KEYCLOAK_SECONDS.labels(_op)


def refusal_reason(reason: object) -> str:
    """A refusal reason safe as a label value: one of REFUSAL_REASONS, else "other"."""
    return reason if isinstance(reason, str) and reason in REFUSAL_REASONS else "other"


def count_refusal(error: BaseException) -> str:
    """Count a refused spawn; returns the label used (for the audit line)."""
    reason = refusal_reason(getattr(error, "reason", None))
    SPAWN_REFUSALS.labels(reason).inc()
    return reason


def observe_stage(name: str, seconds: float) -> None:
    """`stages.OBSERVERS` entry: every finished spawn's stage durations (failures included)."""
    if name in STAGES:
        SPAWN_STAGE_SECONDS.labels(name).observe(seconds)


stages.OBSERVERS.append(observe_stage)


def timed_vault_call(
    call: Callable[[Any, str, Callable[[], T]], Awaitable[T]],
) -> Callable[[Any, str, Callable[[], T]], Awaitable[T]]:
    """Decorates `VaultClient._call(step, fn)`: latency and outcome."""

    @functools.wraps(call)
    async def wrapper(self: Any, step: str, fn: Callable[[], T]) -> T:
        operation = step if step in VAULT_OPERATIONS else "other"
        outcome = "error"
        start = time.perf_counter()
        try:
            result = await call(self, step, fn)
            outcome = "ok"
            return result
        except HTTPError as e:  # VaultError: its reason is one of ours
            outcome = refusal_reason(getattr(e, "reason", None))
            raise
        finally:
            elapsed = time.perf_counter() - start
            VAULT_SECONDS.labels(operation).observe(elapsed)
            VAULT_REQUESTS.labels(operation, outcome).inc()

    return wrapper


def keycloak_operation(url: str, authenticator: Any) -> str:
    """Which Keycloak endpoint `url` is, from the authenticator's discovered URLs."""
    base = url.split("?", 1)[0]
    if base.endswith("/.well-known/openid-configuration"):
        return "discovery"
    if base == getattr(authenticator, "token_url", None):
        return "token"
    if base == getattr(authenticator, "userdata_url", None):
        return "userinfo"
    return "other"


def keycloak_outcome(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    code = getattr(error, "code", None)
    if isinstance(error, HTTPClientError) and code is not None and code != 599:
        return "http_4xx" if code < 500 else "http_5xx"
    return "unreachable"


def timed_keycloak_fetch(fetch: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorates `OAuthenticator.httpfetch(url, ...)`, through which every Keycloak request goes."""

    @functools.wraps(fetch)
    async def wrapper(self: Any, url: str, *args: Any, **kwargs: Any) -> T:
        operation = keycloak_operation(url, self)
        error: BaseException | None = None
        start = time.perf_counter()
        try:
            return await fetch(self, url, *args, **kwargs)
        except BaseException as e:
            error = e
            raise
        finally:
            KEYCLOAK_SECONDS.labels(operation).observe(time.perf_counter() - start)
            KEYCLOAK_REQUESTS.labels(operation, keycloak_outcome(error)).inc()

    return wrapper


def counted_refresh(refresh: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Decorates `refresh_user`: True is "still fresh" (no grant), a dict a refreshed token,
    False "log in again" (a refused grant, or nothing left to refresh with), an exception an error."""

    @functools.wraps(refresh)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await refresh(self, *args, **kwargs)
        except Exception:
            TOKEN_REFRESHES.labels("error").inc()
            raise
        if result is False:
            TOKEN_REFRESHES.labels("refused").inc()
            FORCED_RELOGINS.inc()
        elif isinstance(result, dict):
            TOKEN_REFRESHES.labels("ok").inc()
        return result

    return wrapper
