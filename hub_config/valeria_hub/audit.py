"""The hub's audit log: one JSON line per event on stdout, for the cluster's log collector.

Events: `login`, `login_refused`, `spawn`, `spawn_refused`, `spawn_failed`, `stop`, `admin_action`
(docs/operations.md documents every field). The logger `valeria.audit` has exactly one handler
(stdout, JSON) and does not propagate, so the lines are neither doubled in JupyterHub's own log
nor reformatted by it. Only the fields listed in FIELDS are written, each a short plain value:
callers pass identities and outcomes, never tokens, keys or passwords, and a value of any other
type (a dict, an object whose str() might carry a credential) is dropped rather than written.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

from tornado.web import HTTPError

from .metrics import AUDIT_EVENTS

LOGGER_NAME = "valeria.audit"
EVENTS = frozenset(
    {"login", "login_refused", "spawn", "spawn_refused", "spawn_failed", "stop", "admin_action"}
)
#: every field an audit line may carry (besides `time` and `event`)
FIELDS = frozenset(
    {
        "user",
        "admin",
        "groups",
        "ip",
        "reason",
        "status",
        "server",
        "uid",
        "gid",
        "supplemental_gids",
        "image",
        "profile",
        "actor",
        "actor_kind",
        "method",
        "path",
        "target",
    }
)
_MAX_TEXT = 256
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: hub API paths whose changes are admin actions when they are not about the caller itself
_HUB_API = re.compile(r"/hub/api/(users|groups|services|roles|shutdown|proxy)(?:/([^/]*))?")


class JsonLineFormatter(logging.Formatter):
    """`{"time": ..., "event": ..., <fields>}` on one line; the record's message is not used."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "event": getattr(record, "audit_event", "unknown"),
        }
        doc.update(getattr(record, "audit_fields", {}))
        return json.dumps(doc, separators=(",", ":"))


def audit_logger() -> logging.Logger:
    """The `valeria.audit` logger, with its stdout JSON handler (installed once)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "valeria_audit", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonLineFormatter())
        handler.valeria_audit = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _plain(value: Any) -> Any:
    """The value if it is a short plain value (or a list of them), else None (dropped)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return value[:_MAX_TEXT]
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in (sorted(value) if isinstance(value, set | frozenset) else value)]
        return [v for v in items if v is not None][:64]
    return None


def audit(event: str, **fields: Any) -> None:
    """Write one audit line (and count it in `valeria_audit_events_total`)."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    unknown = set(fields) - FIELDS
    if unknown:
        raise ValueError(f"unknown audit fields {sorted(unknown)}")
    clean = {k: v for k, v in ((k, _plain(v)) for k, v in fields.items()) if v is not None}
    AUDIT_EVENTS.labels(event).inc()
    audit_logger().info(event, extra={"audit_event": event, "audit_fields": clean})


# -- logins ----------------------------------------------------------------------------------------

#: the name the IdP gave for the login in progress (a dict, so a Task running `authenticate`
#: in a copy of the context can fill it for the caller)
_LOGIN: ContextVar[dict[str, str] | None] = ContextVar("valeria_login", default=None)


def remember_login_name(authenticate: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Decorates `Authenticator.authenticate`: keeps the name for a `login_refused` line."""

    @functools.wraps(authenticate)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await authenticate(self, *args, **kwargs)
        slot = _LOGIN.get()
        if slot is not None and isinstance(result, Mapping) and isinstance(result.get("name"), str):
            slot["name"] = result["name"]
        return result

    return wrapper


def _ip(handler: Any) -> str | None:
    return getattr(getattr(handler, "request", None), "remote_ip", None)


def audited_login(get_user: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Decorates `Authenticator.get_authenticated_user`: a `login` or `login_refused` line."""

    @functools.wraps(get_user)
    async def wrapper(self: Any, handler: Any, data: Any = None) -> Any:
        slot: dict[str, str] = {}
        token = _LOGIN.set(slot)
        try:
            user = await get_user(self, handler, data)
        except HTTPError as e:
            reason = "idp-unavailable" if e.status_code >= 500 else "idp-refused"
            status = e.status_code
            audit("login_refused", user=slot.get("name"), reason=reason, status=status, ip=_ip(handler))
            raise
        finally:
            _LOGIN.reset(token)
        if not user:
            audit("login_refused", user=slot.get("name"), reason="not-allowed", status=403, ip=_ip(handler))
            return user
        groups = user.get("groups")
        # hub admins hold the role valeria-admin through their group (the admin flag stays False)
        in_admin_group = isinstance(groups, list | tuple | set) and bool(
            set(groups) & set(getattr(self, "hub_admin_groups", ()) or ())
        )
        audit(
            "login",
            user=user.get("name"),
            admin=bool(user.get("admin")) or in_admin_group,
            groups=list(groups) if isinstance(groups, list | tuple | set) else None,
            ip=_ip(handler),
        )
        return user

    return wrapper


# -- spawns and stops ------------------------------------------------------------------------------


def spawn_fields(spawner: Any) -> dict[str, Any]:
    """Who and what a spawn is about: user, server name, and once planned, identity, image, profile.

    Before the plan a KubeSpawner's `image` is still its default (the profile is applied in its
    `_start`), so a refusal at that point names only the user and the server.
    """
    fields: dict[str, Any] = {"user": spawner.user.name, "server": getattr(spawner, "name", "") or ""}
    plan = getattr(spawner, "plan", None)
    if plan is None:
        return fields
    options = getattr(spawner, "user_options", None)
    fields.update(
        uid=plan.uid,
        gid=plan.gid,
        supplemental_gids=list(plan.supplemental_gids),
        image=getattr(spawner, "image", None),
        profile=options.get("profile") if isinstance(options, Mapping) else None,
    )
    return fields


# -- admin actions ---------------------------------------------------------------------------------


def _actor(handler: Any) -> tuple[str | None, str | None]:
    try:
        current = handler.current_user
    except Exception:
        return None, None
    if current is None:
        return None, None
    kind = getattr(current, "kind", None) or ("service" if type(current).__name__ == "Service" else "user")
    return getattr(current, "name", None), kind


def admin_action(handler: Any) -> dict[str, Any] | None:
    """The audit fields of a request that changes the hub for someone else, else None."""
    request = handler.request
    if request.method not in _MUTATING:
        return None
    match = _HUB_API.search(request.path)
    if match is None:
        return None
    collection, item = match.group(1), match.group(2)
    actor, kind = _actor(handler)
    target = item if collection == "users" and item else None
    if collection == "users" and kind == "user" and target is not None and target == actor:
        return None  # the user's own server or tokens: spawn/stop lines cover it
    return {
        "actor": actor,
        "actor_kind": kind,
        "method": request.method,
        "path": request.path,
        "status": handler.get_status(),
        "target": target,
        "ip": request.remote_ip,
    }


def log_request(handler: Any) -> None:
    """JupyterHub's request log (`tornado_settings["log_function"]`), plus `admin_action` lines."""
    from jupyterhub.log import log_request as jupyterhub_log_request

    jupyterhub_log_request(handler)
    try:
        fields = admin_action(handler)
    except Exception as e:  # the request is done; never let auditing break its logging
        logging.getLogger(__name__).warning("Audit of a hub API request failed: %s", type(e).__name__)
        return
    if fields is not None:
        audit("admin_action", **fields)
