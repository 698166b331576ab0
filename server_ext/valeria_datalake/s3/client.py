"""The one place that builds the S3 client: an async ``s3fs.S3FileSystem`` from plain settings.

Settings come from the environment the hub injects (see docs/environment.md) or from the contents
manager's traitlets. Defaults are chosen so that an unreachable endpoint is reported in seconds
(short connect timeout, few retries) and so that Ceph RGW works (path-style addressing, custom CA
bundle, checksums only when required: RGW 16 rejects aws-chunked checksum trailers with 411).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiobotocore.session import AioSession
from s3fs import S3FileSystem

from ..metrics import instrument_session

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL")


@dataclass(frozen=True)
class S3Settings:
    """Everything needed to talk to the datalake's S3 endpoint as one user.

    The credential fields are excluded from ``repr`` so that logging a settings object can never
    print a secret.
    """

    endpoint_url: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str = "us-east-1"
    ca_bundle: str | None = None
    path_style: bool = True
    #: botocore's ``request_checksum_calculation``/``response_checksum_validation``
    checksum_calculation: str = "when_required"
    checksum_validation: str = "when_required"
    connect_timeout: float = 3.0
    read_timeout: float = 30.0
    #: total attempts per request (botocore standard retry mode, and s3fs's own transport retries)
    max_attempts: int = 2
    max_pool_connections: int = 32
    #: canned ACL sent with every object write (PutObject, CopyObject, CreateMultipartUpload).
    #: Ceph RGW has no bucket-owner-enforced ownership: an object belongs to whoever wrote it, so
    #: without this the owner of a bucket shared read-write cannot read what collaborators saved.
    #: Empty: send no ACL.
    object_acl: str = "bucket-owner-full-control"

    @property
    def has_credentials(self) -> bool:
        return bool(self.access_key_id and self.secret_access_key)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> S3Settings:
        """Read the hub → notebook contract; ``overrides`` (non-empty values) win."""
        env = os.environ if environ is None else environ
        endpoint = next((env[v] for v in ENDPOINT_VARIABLES if env.get(v)), None)
        settings = cls(
            endpoint_url=endpoint,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
            ca_bundle=env.get("AWS_CA_BUNDLE") or None,
            checksum_calculation=(env.get("AWS_REQUEST_CHECKSUM_CALCULATION") or "when_required").lower(),
            checksum_validation=(env.get("AWS_RESPONSE_CHECKSUM_VALIDATION") or "when_required").lower(),
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v not in (None, "")})


def client_options(settings: S3Settings) -> tuple[dict[str, object], dict[str, object]]:
    """(client keyword arguments, ``botocore.config.Config`` keyword arguments) for ``settings``.

    The one definition of how the S3 client is configured, shared by the async filesystem and the
    sync client that makes big listings in a worker thread (``s3/threaded.py``).
    """
    client_kwargs: dict[str, object] = {"region_name": settings.region}
    if settings.ca_bundle:
        client_kwargs["verify"] = settings.ca_bundle
    config_kwargs: dict[str, object] = {
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "retries": {"max_attempts": settings.max_attempts, "mode": "standard"},
        "request_checksum_calculation": settings.checksum_calculation,
        "response_checksum_validation": settings.checksum_validation,
        "max_pool_connections": settings.max_pool_connections,
    }
    if settings.path_style:
        config_kwargs["s3"] = {"addressing_style": "path"}
    return client_kwargs, config_kwargs


class ContextFreeS3FileSystem(S3FileSystem):
    """s3fs's filesystem, each S3 call run in an empty ``contextvars`` context.

    jupyter-server keeps the request's handler in a context variable (its ``CallContext``). Every
    timer aiohttp schedules during a call (read timeouts, connection clean-up) copies the current
    context, and asyncio keeps a cancelled timer until its time comes: a request that called S3
    stayed in memory, body included, for up to ``s3_read_timeout`` after it ended (1.3 MiB per
    upload chunk), and the connection pool made by the first call kept that first request forever.
    """

    async def _call_s3(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        call = super()._call_s3(method, *args, **kwargs)
        return await asyncio.get_running_loop().create_task(call, context=contextvars.Context())


def make_s3_filesystem(settings: S3Settings) -> S3FileSystem:
    """An async S3 filesystem bound to the running event loop (call it from a coroutine).

    Never cached by fsspec (each server, and each test server, gets its own client). Raises
    ``ValueError`` without credentials: anonymous access to the datalake is never intended.
    """
    if not settings.has_credentials:
        raise ValueError("no S3 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    client_kwargs, config_kwargs = client_options(settings)
    fs = ContextFreeS3FileSystem(
        key=settings.access_key_id,
        secret=settings.secret_access_key,
        token=settings.session_token,
        endpoint_url=settings.endpoint_url,
        client_kwargs=client_kwargs,
        config_kwargs=config_kwargs,
        asynchronous=True,
        loop=asyncio.get_running_loop(),
        session=instrument_session(AioSession()),  # every request counted (metrics.py)
        skip_instance_cache=True,
        # nothing here lists through s3fs (listings are ours: ``backend.ListingCache``), so its
        # directory cache (kept forever by default) would only ever hold stale entries
        use_listings_cache=False,
        # s3fs adds these to every call whose operation accepts them (here: the object writes)
        s3_additional_kwargs={"ACL": settings.object_acl} if settings.object_acl else None,
    )
    # s3fs retries transport errors 5 times with backoff by default: "S3 down" would take ~10 s.
    fs.retries = max(1, settings.max_attempts)
    return fs


def make_sync_client(settings: S3Settings) -> Any:
    """A plain (blocking) botocore S3 client with the same configuration as the filesystem.

    For worker threads only (``s3/threaded.py``); creating one loads botocore's service model,
    which takes some 100 ms of CPU: never call it on the event loop.
    """
    if not settings.has_credentials:
        raise ValueError("no S3 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    import botocore.session
    from botocore.config import Config

    client_kwargs, config_kwargs = client_options(settings)
    return instrument_session(botocore.session.get_session()).create_client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        aws_session_token=settings.session_token,
        config=Config(**config_kwargs),
        **client_kwargs,
    )


async def close_s3_filesystem(fs: S3FileSystem) -> None:
    """Close the aiobotocore client (and its connection pool) of ``fs``."""
    creator = getattr(fs, "_s3creator", None)
    if creator is not None and getattr(fs, "_s3", None) is not None:
        fs._s3 = None
        await creator.__aexit__(None, None, None)
