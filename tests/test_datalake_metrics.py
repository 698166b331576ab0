"""Seeing a notebook server: the datalake metrics at jupyter-server's /metrics, through real HTTP.

A real jupyter-server with the extension on moto, whose server counts every request by S3
operation: what /metrics says about S3 must be exactly what moto saw. Counters are process-wide
(several servers run in this test process), so every check compares before and after.
"""

from __future__ import annotations

import pytest
import requests
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp, jp_fetch: this module only)
from valeria_platform.jupyterlab import upload_models

from tests.fixtures.s3 import OWN, World, datalake_server_config, free_port, on_server_loop
from tests.test_dashboard import missing_from
from tests.test_hub_observability import Samples, parse_metrics, total

PART = 5 * 1024 * 1024


@pytest.fixture
def jp_server_config(moto_world: World, tmp_path, monkeypatch):
    config = datalake_server_config(moto_world.site, tmp_path, monkeypatch, upload_part_size=PART)
    config.DatalakeExtension.metrics_port = METRICS_PORT
    config.DatalakeExtension.metrics_ip = "127.0.0.1"
    return config


METRICS_PORT = free_port()


@pytest.fixture
def metrics(jp_fetch):
    async def read() -> Samples:
        r = await jp_fetch("metrics", method="GET")
        assert r.code == 200
        return parse_metrics(r.body.decode())

    return read


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def s3_ops(before: Samples, after: Samples) -> dict[str, int]:
    """Requests by operation between two readings (every status)."""
    ops = {
        dict(labels)["operation"]
        for (name, labels) in after
        if name == "valeria_s3_requests_total" and "operation" in dict(labels)
    }
    out = {op: int(delta(before, after, "valeria_s3_requests_total", operation=op)) for op in ops}
    return {op: n for op, n in out.items() if n}


def moto_ops(world: World) -> dict[str, int]:
    return world.site.counter.stats()["ops"]


@on_server_loop
async def test_s3_request_counts_match_what_the_server_saw(api, metrics, moto_world):
    moto_world.site.counter.reset()
    before = await metrics()
    # discovery: ListBuckets, a read probe per bucket, write probes of the shared buckets
    code, _ = await api("GET", "")
    assert code == 200
    d = moto_world.unique("metrics")
    text = "x" * 1000
    assert (await api("PUT", f"{OWN}/{d}/a.txt", {"type": "file", "format": "text", "content": text}))[
        0
    ] == 201
    code, m = await api("GET", f"{OWN}/{d}/a.txt", content=1)
    assert code == 200 and m["content"] == text
    for _ in range(2):  # the second listing comes from the cache
        assert (await api("GET", f"{OWN}/{d}"))[0] == 200
    after = await metrics()

    assert s3_ops(before, after) == moto_ops(moto_world)
    assert delta(before, after, "valeria_s3_request_duration_seconds_count") == sum(
        moto_ops(moto_world).values()
    )
    # the probes' answers are counted by status: the read-only share refuses the abort probe
    assert (
        delta(before, after, "valeria_s3_requests_total", operation="AbortMultipartUpload", status="403") == 1
    )
    assert delta(before, after, "valeria_s3_sent_bytes_total", operation="PutObject") == len(text)
    assert delta(before, after, "valeria_s3_received_bytes_total", operation="GetObject") == len(text)
    assert delta(before, after, "valeria_bucket_discoveries_total", result="ok") == 1
    visible = total(after, "valeria_buckets_visible", access="writable") + total(
        after, "valeria_buckets_visible", access="read-only"
    )
    assert total(after, "valeria_buckets_visible", access="read-only") >= 1 and visible >= 3
    assert delta(before, after, "valeria_listing_cache_lookups_total", result="hit") >= 1
    assert delta(before, after, "valeria_s3_multipart_uploads_total") == 0


@on_server_loop
async def test_multipart_uploads_and_transfers_are_counted(api, metrics, moto_world):
    await api("GET", "")
    d = moto_world.unique("mpmetrics")
    before = await metrics()
    moto_world.site.counter.reset()
    # a chunked upload that fills two parts: started and completed
    data = b"m" * (PART + 1024 * 1024)
    for model in upload_models(f"{OWN}/{d}/big.bin", data):
        assert (await api("PUT", model["path"], model))[0] in (200, 201)
    # one that goes wrong after its first part: aborted
    models = list(upload_models(f"{OWN}/{d}/broken.bin", data + b"m" * 1024 * 1024))
    for model in models[:5]:  # five chunks of 1 MiB: the first part is uploaded
        assert (await api("PUT", model["path"], model))[0] in (200, 201)
    bad = dict(models[5], chunk=99)
    assert (await api("PUT", bad["path"], bad))[0] == 400
    # a folder move inside the bucket (server-side copies), then a copy onto an existing name
    code, _ = await api("PATCH", f"{OWN}/{d}", {"path": f"{OWN}/{d}-moved"})
    assert code == 200
    after = await metrics()

    seen = moto_ops(moto_world)
    assert s3_ops(before, after) == seen
    assert delta(before, after, "valeria_s3_multipart_uploads_total", event="started") == 2
    assert delta(before, after, "valeria_s3_multipart_uploads_total", event="completed") == 1
    assert delta(before, after, "valeria_s3_multipart_uploads_total", event="aborted") == 1
    assert seen["CreateMultipartUpload"] == 2 and seen["CompleteMultipartUpload"] == 1
    sent = delta(before, after, "valeria_s3_sent_bytes_total", operation="UploadPart")
    assert sent == len(data) + PART  # both parts of big.bin, the first part of broken.bin
    assert delta(before, after, "valeria_transfers_total", kind="move", route="s3-s3", outcome="ok") == 1


@on_server_loop
async def test_failed_transfers_are_counted_by_outcome(api, metrics, moto_world):
    await api("GET", "")
    d = moto_world.unique("xfer")
    for name in ("a.txt", "b.txt"):
        model = {"type": "file", "format": "text", "content": name}
        assert (await api("PUT", f"{OWN}/{d}/{name}", model))[0] == 201
    before = await metrics()
    code, _ = await api("PATCH", f"{OWN}/{d}/a.txt", {"path": f"{OWN}/{d}/b.txt"})
    assert code == 409
    after = await metrics()
    assert delta(before, after, "valeria_transfers_total", kind="move", outcome="conflict") == 1


@on_server_loop
async def test_metrics_need_a_token_on_the_server_port_and_have_their_own_port(jp_fetch, api, moto_world):
    # a little of everything the dashboard shows: discovery, a save, a copy, a read, two listings
    await api("GET", "")
    d = moto_world.unique("dash")
    model = {"type": "file", "format": "text", "content": "dashboard"}
    assert (await api("PUT", f"{OWN}/{d}/a.txt", model))[0] == 201
    assert (await api("POST", f"{OWN}/{d}", {"copy_from": f"{OWN}/{d}/a.txt"}))[0] == 201
    assert (await api("GET", f"{OWN}/{d}/a.txt", content=1))[0] == 200
    for _ in range(2):
        assert (await api("GET", f"{OWN}/{d}"))[0] == 200
    r = await jp_fetch("metrics", method="GET", headers={"Authorization": ""}, raise_error=False)
    assert r.code == 403
    # the metrics port (not routed by the hub's proxy) answers without a token
    r = requests.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10)
    assert r.status_code == 200
    names = {name for name, _ in parse_metrics(r.text)}
    assert "valeria_s3_requests_total" in names and "http_request_duration_seconds_count" in names
    assert missing_from("valeria-notebooks", names) == set()
