"""The hub → notebook contract: the environment that lets every S3 client find the datalake.

One function builds it, used by the spawn plan (production and the local platform) and by the
test fixtures, so that what the tests give a notebook server is what the hub gives it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

#: Names whose values are secrets: they travel in a Kubernetes Secret, never as plain pod env.
SECRET_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def s3_secret_environment(
    access_key: str, secret_key: str, session_token: str | None = None
) -> dict[str, str]:
    """The secret half of the contract (goes into the per-user Secret)."""
    if not access_key or not secret_key:
        raise ValueError("S3 access key and secret key are both required")
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    if session_token:
        env["AWS_SESSION_TOKEN"] = session_token
    return env


def s3_public_environment(
    endpoint: str,
    region: str = "us-east-1",
    ca_bundle: str | None = None,
    shared_buckets: list[str] | tuple[str, ...] = (),
) -> dict[str, str]:
    """The non-secret half: endpoint under every name tools still read, region, TLS, checksums."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"S3 endpoint must be an http(s) URL, got {endpoint!r}")
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "S3_ENDPOINT_URL": endpoint,
        # R's aws.s3 wants host[:port] without a scheme, and is told about TLS separately.
        "AWS_S3_ENDPOINT": parts.netloc,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        # Ceph RGW 16 answers 411 to botocore's default aws-chunked checksum trailers over HTTPS.
        "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "WHEN_REQUIRED",
    }
    if ca_bundle:
        env["AWS_CA_BUNDLE"] = ca_bundle
    if shared_buckets:
        env["VALERIA_SHARED_BUCKETS"] = ",".join(shared_buckets)
    return env
