"""A moto S3 site with real per-user access control, for the tests, the demo and the benchmarks.

moto enforces IAM once its first few unauthenticated requests are spent: those create an admin
user and its key; everything after is signed. Users get an identity policy that gives them
their own buckets (named ``<user>-...``) and lets them list all buckets; :func:`grant` shares
another bucket read-only or read-write. (moto evaluates identity policies, not bucket policies;
on Ceph the same sharing is a bucket policy, see ``tests/fixtures/s3.py``.)
"""

from __future__ import annotations

import json
import secrets

from .moto_s3 import MotoS3
from .s3site import S3Site, S3User

ADMIN = "valeria-admin"
#: unauthenticated requests moto answers before enforcing IAM: create_user, create_access_key, policy
BOOTSTRAP_ACTIONS = 3
READ_ACTIONS = ["s3:ListBucket", "s3:GetObject", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]


def _iam(endpoint: str, access_key: str, secret_key: str):
    import boto3

    return boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
    )


def _policy(statements: list[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _bucket_arns(pattern: str) -> list[str]:
    return [f"arn:aws:s3:::{pattern}", f"arn:aws:s3:::{pattern}/*"]


def start_moto_site() -> S3Site:
    """Start moto on 127.0.0.1 with IAM enforced; ``site.user(name)`` creates users on demand."""
    server = MotoS3(subprocess=True, no_auth_actions=BOOTSTRAP_ACTIONS).start()
    try:
        boot = _iam(server.endpoint, "bootstrap", "bootstrap")
        admin = _new_user(boot, ADMIN, "everything", [{"Effect": "Allow", "Action": "*", "Resource": "*"}])
    except BaseException:
        server.stop()
        raise
    site = S3Site(kind="moto", endpoint=server.endpoint, users={ADMIN: admin}, counter=server)
    site.make_user = lambda name: make_user(site, name)
    return site


def _admin_iam(site: S3Site):
    admin = site.users[ADMIN]
    return _iam(site.endpoint, admin.access_key, admin.secret_key)


def make_user(site: S3Site, name: str) -> S3User:
    """An IAM user owning the buckets ``<name>-*``, allowed to list every bucket name."""
    return _new_user(
        _admin_iam(site),
        name,
        "own-buckets",
        [
            {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:*", "Resource": _bucket_arns(f"{name}-*")},
        ],
    )


def _new_user(iam, name: str, policy_name: str, statements: list[dict]) -> S3User:
    """An IAM user with an access key and one inline policy of ``statements``."""
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    iam.put_user_policy(UserName=name, PolicyName=policy_name, PolicyDocument=_policy(statements))
    return S3User(name, key["AccessKeyId"], key["SecretAccessKey"])


def grant(site: S3Site, user: str, bucket: str, write: bool = False) -> None:
    """Let ``user`` read (or read and write) ``bucket``."""
    site.user(user)
    actions = "s3:*" if write else READ_ACTIONS
    _admin_iam(site).put_user_policy(
        UserName=user,
        PolicyName=f"share-{bucket}-{secrets.token_hex(2)}",
        PolicyDocument=_policy([{"Effect": "Allow", "Action": actions, "Resource": _bucket_arns(bucket)}]),
    )
