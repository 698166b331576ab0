"""The checksum pitfall of Ceph RGW 16 over HTTPS, and that our settings avoid it.

botocore >= 1.36 computes checksums "when supported": PutObject and UploadPart are then sent with
aws-chunked trailers, which this RGW answers with 411 MissingContentLength (s3fs turns it into
``OSError: [Errno 22] None``). The extension's client uses ``when_required``, and the hub's
environment contract sets the same for every tool in the notebook (boto3, s3fs, pandas). The
control cases use botocore's defaults against the same RGW and must fail, so these tests show that
the setting is what makes the difference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import replace

import boto3
import botocore.exceptions
import pytest
from valeria_datalake.s3.client import S3Settings, close_s3_filesystem, make_s3_filesystem
from valeria_platform.s3site import S3Site

pytestmark = pytest.mark.ceph

SMALL = b"a,b\n1,2\n" * 100
BIG = os.urandom(11 * 2**20)  # three parts of 5 MiB (the S3 minimum) with chunksize=5 MiB


@pytest.fixture(scope="module")
def bucket(ceph_site: S3Site) -> str:
    name = f"checksums-{uuid.uuid4().hex[:8]}"
    ceph_site.client("checksum-user").create_bucket(Bucket=name)
    return name


def _keys(site: S3Site, bucket: str) -> list[str]:
    return [o["Key"] for o in site.client("checksum-user").list_objects_v2(Bucket=bucket).get("Contents", [])]


async def test_extension_client_uploads_over_https(ceph_site: S3Site, bucket: str) -> None:
    settings = S3Settings.from_environ(ceph_site.env("checksum-user"))
    assert settings.endpoint_url.startswith("https://") and settings.ca_bundle
    fs = make_s3_filesystem(settings)
    try:
        await fs._pipe_file(f"{bucket}/ours/small.csv", SMALL)  # PutObject
        await fs._pipe_file(f"{bucket}/ours/big.bin", BIG, chunksize=5 * 2**20)  # multipart
        assert await fs._cat_file(f"{bucket}/ours/small.csv") == SMALL
        assert await fs._cat_file(f"{bucket}/ours/big.bin") == BIG
    finally:
        await close_s3_filesystem(fs)
    head = ceph_site.client("checksum-user").head_object(Bucket=bucket, Key="ours/big.bin")
    assert head["ContentLength"] == len(BIG) and head["ETag"].endswith('-3"')  # really multipart


async def test_control_botocore_default_checksums_fail_on_this_rgw(ceph_site: S3Site, bucket: str) -> None:
    settings = replace(
        S3Settings.from_environ(ceph_site.env("checksum-user")),
        checksum_calculation="when_supported",
        checksum_validation="when_supported",
    )
    fs = make_s3_filesystem(settings)
    try:
        with pytest.raises(OSError) as err:
            await fs._pipe_file(f"{bucket}/default/small.csv", SMALL)
        assert err.value.errno == 22  # what s3fs makes of RGW's 411
    finally:
        await close_s3_filesystem(fs)
    u = ceph_site.user("checksum-user")
    plain = boto3.client(
        "s3",
        endpoint_url=ceph_site.endpoint,
        region_name=ceph_site.region,
        aws_access_key_id=u.access_key,
        aws_secret_access_key=u.secret_key,
        verify=ceph_site.ca_bundle,
    )
    with pytest.raises(botocore.exceptions.ClientError) as cerr:
        plain.put_object(Bucket=bucket, Key="default/plain.csv", Body=SMALL)
    assert cerr.value.response["Error"]["Code"] == "MissingContentLength"
    assert cerr.value.response["ResponseMetadata"]["HTTPStatusCode"] == 411
    assert not [k for k in _keys(ceph_site, bucket) if k.startswith("default/")]


_USER_CODE = """
import json, sys
import boto3, pandas as pd
bucket = sys.argv[1]
s3 = boto3.client("s3")  # endpoint, CA bundle, region and checksum mode all from the environment
s3.put_object(Bucket=bucket, Key="env/boto3.txt", Body=b"hello")
pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(f"s3://{bucket}/env/pandas.csv", index=False)
back = pd.read_csv(f"s3://{bucket}/env/pandas.csv")
print(json.dumps({"boto3": s3.get_object(Bucket=bucket, Key="env/boto3.txt")["Body"].read().decode(),
                  "pandas": back.to_dict("list")}))
"""


def test_notebook_user_code_works_with_the_hub_environment(ceph_site: S3Site, bucket: str, tmp_path) -> None:
    """boto3 and pandas in a notebook, configured by nothing but the environment the hub injects."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(ceph_site.env("checksum-user"))
    env["HOME"] = str(tmp_path)  # no ~/.aws of the machine's
    r = subprocess.run(
        [sys.executable, "-c", _USER_CODE, bucket], env=env, capture_output=True, timeout=120, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout) == {"boto3": "hello", "pandas": {"a": [1, 2], "b": [3, 4]}}
