"""A class of N students on the local platform: realm users, distinct uids in Vault, an S3 user and
a bucket each, and no access to each other's buckets."""

from __future__ import annotations

import botocore.exceptions
import pytest
from valeria_platform.classroom import UID_BASE, provision, realm_users, students
from valeria_platform.moto_site import start_moto_site
from valeria_platform.openbao import KV_MOUNT

pytestmark = pytest.mark.hub


def test_a_class_is_provisioned(openbao):
    class_ = students(3, prefix="pupil")
    assert "password" not in repr(class_[0])
    assert [u["username"] for u in realm_users(class_)] == ["pupil001", "pupil002", "pupil003"]
    site = start_moto_site()
    try:
        subjects = {s.name: f"sub-{s.name}" for s in class_}  # any immutable ids, as a realm's
        provision(class_, site, openbao, subjects)
        kv = openbao.client().secrets.kv.v2
        uids = []
        for s in class_:
            posix = kv.read_secret_version(
                path=f"valeria/users/{subjects[s.name]}/posix",
                mount_point=KV_MOUNT,
                raise_on_deleted_version=True,
            )
            uids.append(int(posix["data"]["data"]["uid"]))
            s3 = kv.read_secret_version(
                path=f"valeria/users/{subjects[s.name]}/s3",
                mount_point=KV_MOUNT,
                raise_on_deleted_version=True,
            )
            assert s3["data"]["data"]["access_key"] == site.users[s.name].access_key
            site.client(s.name).put_object(Bucket=s.bucket, Key="hello.txt", Body=b"hi")
        assert uids == [UID_BASE + 1, UID_BASE + 2, UID_BASE + 3]
        with pytest.raises(botocore.exceptions.ClientError):
            site.client("pupil001").list_objects_v2(Bucket=class_[1].bucket)
    finally:
        site.counter.stop()
