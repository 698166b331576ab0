"""An S3 service as the tests and the demo see it: where it is, how to trust it, who may use it.

Both local S3 servers (moto, which counts requests, and the single-node Ceph RGW, which behaves
like production) are described by the same :class:`S3Site`, so one test can run against either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from valeria_hub.s3env import s3_public_environment, s3_secret_environment

from .moto_s3 import MotoS3


@dataclass(frozen=True)
class S3User:
    name: str
    access_key: str
    secret_key: str


@dataclass
class S3Site:
    kind: str  # "moto" or "ceph"
    endpoint: str
    region: str = "us-east-1"
    ca_bundle: str | None = None
    users: dict[str, S3User] = field(default_factory=dict)
    #: creates (or returns) an S3 user with its own keys on this site
    make_user: Callable[[str], S3User] | None = None
    #: the request counter, on moto only
    counter: MotoS3 | None = None

    def user(self, name: str) -> S3User:
        if name not in self.users:
            if self.make_user is None:
                raise KeyError(name)
            self.users[name] = self.make_user(name)
        return self.users[name]

    def env(self, name: str, shared_buckets: tuple[str, ...] = ()) -> dict[str, str]:
        """The environment the hub would give ``name``'s notebook server."""
        u = self.user(name)
        env = s3_public_environment(self.endpoint, self.region, self.ca_bundle, shared_buckets)
        env.update(s3_secret_environment(u.access_key, u.secret_key))
        return env

    def client(self, name: str) -> Any:
        """A plain boto3 client as ``name``: for test set-up and checks, never in product code."""
        import boto3
        from botocore.config import Config

        u = self.user(name)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=u.access_key,
            aws_secret_access_key=u.secret_key,
            verify=self.ca_bundle or True,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 2},
            ),
        )
