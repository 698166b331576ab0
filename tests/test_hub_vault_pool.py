"""Vault calls have a thread pool of their own: a hub whose default executor is busy (a class
spawning at once, anything else the hub runs in threads) still reads Vault within its timeout."""

from __future__ import annotations

import asyncio
import threading

import pytest
from valeria_hub.vault import VaultClient

from tests.fixtures.services import HUB_CALLBACK, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET
from tests.test_hub_vault import settings_for

pytestmark = pytest.mark.hub


async def test_vault_reads_do_not_queue_behind_the_default_executor(openbao, oidc_provider):
    tokens = oidc_provider.login("alice", OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, HUB_CALLBACK)
    settings = settings_for(openbao, VALERIA_VAULT_TIMEOUT="1", VALERIA_VAULT_RETRIES="0")
    loop = asyncio.get_running_loop()
    release = threading.Event()
    # every thread of asyncio's default executor busy for longer than Vault's timeout
    workers = loop._default_executor._max_workers if loop._default_executor else 64
    busy = [loop.run_in_executor(None, release.wait, 30) for _ in range(max(workers, 64))]
    try:
        secrets = await VaultClient(settings).read_user_secrets(
            "alice", oidc_provider.subjects()["alice"], tokens["access_token"]
        )
        assert secrets.identity["uid"] == "1001"
    finally:
        release.set()
        await asyncio.gather(*busy)
