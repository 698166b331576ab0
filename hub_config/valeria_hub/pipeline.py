"""The spawn pipeline, spawner-agnostic: fresh token → Vault (login, read, revoke) → validate → plan.

Each step is a small async function; any failure raises SpawnRefused (or a subclass) and the spawn
does not start. There is no fallback: no default uid, no "carry on without keys".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .errors import SpawnRefused
from .plan import SpawnPlan, build_plan, check_username, parse_identity, parse_s3_keys
from .settings import HubSettings
from .stages import SpawnStages
from .vault import VaultClient

AuthStateSource = Callable[[], Awaitable[Mapping[str, Any] | None]]


def token_and_subject(auth_state: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """The access token and OIDC subject from an auth state, or SpawnRefused if there is no token."""
    if not auth_state or not auth_state.get("access_token"):
        raise SpawnRefused("Your login has expired; please log in again.", reason="login-expired")
    user_info = auth_state.get("oauth_user") or {}
    sub = user_info.get("sub") if isinstance(user_info, Mapping) else None
    return auth_state["access_token"], sub


async def plan_spawn(
    settings: HubSettings,
    vault: VaultClient,
    username: str,
    auth_state_source: AuthStateSource,
    log: logging.Logger | None = None,
    stages: SpawnStages | None = None,
) -> SpawnPlan:
    """Run the whole pipeline for one spawn and return the validated plan (timed into `stages`)."""
    log = log or logging.getLogger("valeria_hub.pipeline")
    stages = stages or SpawnStages()
    check_username(username)
    with stages.stage("token_refresh"):
        auth_state = await auth_state_source()
    access_token, sub = token_and_subject(auth_state)
    log.info("Spawn of %s: reading identity and S3 keys from Vault (%s auth)", username, settings.vault_auth)
    secrets = await vault.read_user_secrets(username, sub, access_token, stages=stages)
    with stages.stage("plan"):
        identity = parse_identity(secrets.identity, settings)
        keys = parse_s3_keys(secrets.s3)
        plan = build_plan(settings, username, identity, keys)
    log.info(
        "Spawn of %s planned: uid=%d gid=%d groups=%s",
        username,
        plan.uid,
        plan.gid,
        ",".join(map(str, plan.supplemental_gids)) or "-",
    )
    return plan
