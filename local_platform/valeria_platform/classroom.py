"""A class of N students for load tests and the demo: realm users, Vault secrets, S3 users and buckets.

``students(n)`` names them ``student001``... with distinct uids (``UID_BASE + i``) and one bucket
each (``<name>-data``); ``realm_users`` gives the OIDC stand-in's user list; ``provision`` creates
each student's S3 user and bucket on a site (Ceph RGW or moto: anything with ``user(name)`` and
``client(name)``) and stores the keys and uid/gid in Vault with the admin's own
``put-user-secrets.sh``, several at a time.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .openbao import OpenBao, write_user_secrets

UID_BASE = 20000
STUDENT_GROUP_GID = 3000
#: a full group path, as the hub compares them
RESEARCHERS = "/researchers"


@dataclass(frozen=True)
class Student:
    name: str
    password: str = field(repr=False)
    uid: int

    @property
    def bucket(self) -> str:
        return f"{self.name}-data"


def students(n: int, prefix: str = "student", password: str | None = None) -> list[Student]:
    """``n`` students with distinct names and uids; one random password for all unless given."""
    password = password or secrets.token_urlsafe(12)
    width = max(3, len(str(n)))
    return [Student(f"{prefix}{i:0{width}d}", password, UID_BASE + i) for i in range(1, n + 1)]


def realm_users(class_: list[Student]) -> list[dict[str, Any]]:
    """The users entry of :class:`~valeria_platform.oidc.OIDCProvider` (all in ``researchers``)."""
    return [
        {
            "username": s.name,
            "password": s.password,
            "email": f"{s.name}@example.org",
            "groups": [RESEARCHERS],
        }
        for s in class_
    ]


def provision(
    class_: list[Student],
    site: Any,
    vault: OpenBao | None,
    subjects: dict[str, str] | None = None,
    workers: int = 8,
) -> None:
    """Create each student's S3 user, their bucket, and their Vault secrets (skipped if no vault),
    filed under each student's OIDC ``sub`` (``subjects``: username -> sub, from the realm)."""
    if vault is not None and subjects is None:
        raise ValueError("Vault secrets are filed by OIDC subject: pass the realm's subjects")

    def one(student: Student) -> None:
        keys = site.user(student.name)
        site.client(student.name).create_bucket(Bucket=student.bucket)
        if vault is not None:
            groups = [student.uid, STUDENT_GROUP_GID]
            write_user_secrets(
                vault,
                subjects[student.name],
                keys.access_key,
                keys.secret_key,
                student.uid,
                student.uid,
                groups,
            )

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, class_))
