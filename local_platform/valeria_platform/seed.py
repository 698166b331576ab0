"""Real-looking datalake content for the demo and the browser test.

Three RGW users own the buckets: ``alice`` and ``bob`` their own, and ``curator`` (neither of them)
a reference bucket shared read-only with both by bucket policy. ListBuckets on RGW lists only owned
buckets, so the shared one is announced to notebooks in ``VALERIA_S3_SHARED_BUCKETS``.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

#: bucket -> owner
ALICE_BUCKET = "alice-experiments"
ALICE_SPARK_BUCKET = "alice-spark-output"
BOB_BUCKET = "bob-private"
SHARED_BUCKET = "shared-reference"
CURATOR = "curator"

CSV_KEY = "results/run-2024-01.csv"
NOTEBOOK_KEY = "analysis.ipynb"


@dataclass
class SeedReport:
    buckets: dict[str, str] = field(default_factory=dict)  # bucket -> owner
    objects: dict[str, list[str]] = field(default_factory=dict)  # bucket -> keys
    shared: list[str] = field(default_factory=list)


def temperature_csv(rows: int = 48) -> bytes:
    """Hourly readings of two sensors: deterministic, so a test can check computed values."""
    lines = ["timestamp,sensor,temperature_c,humidity_pct"]
    for h in range(rows):
        for s, base in (("north", 12.0), ("south", 15.0)):
            t = base + 4 * math.sin(2 * math.pi * h / 24)
            lines.append(f"2024-01-{1 + h // 24:02d}T{h % 24:02d}:00:00Z,{s},{t:.2f},{60 + (h * 7) % 25}")
    return ("\n".join(lines) + "\n").encode()


def csv_mean_temperature(rows: int = 48) -> float:
    """What ``pandas.read_csv(...).temperature_c.mean()`` gives on :func:`temperature_csv`."""
    values = []
    for line in temperature_csv(rows).decode().splitlines()[1:]:
        values.append(float(line.split(",")[2]))
    return sum(values) / len(values)


def parquet_bytes(table: dict[str, list[Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(table), buf)
    return buf.getvalue()


def analysis_notebook(bucket: str = ALICE_BUCKET, key: str = CSV_KEY) -> bytes:
    """A notebook that reads the CSV from S3 with pandas and nothing but the injected environment."""

    def cell(src: str) -> dict[str, Any]:
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                "source": src.splitlines(keepends=True)}  # fmt: skip

    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {},
             "source": ["# Sensor readings\n", "\n",
                        "Read straight from the datalake: the hub injected the S3 endpoint, CA and keys ",
                        "into the environment, so `s3://` URLs just work.\n"]},
            cell(
                "import pandas as pd\n"
                f'df = pd.read_csv("s3://{bucket}/{key}")\n'
                'print(f"rows={len(df)} mean_temperature={df.temperature_c.mean():.3f}")'
            ),
            cell('df.groupby("sensor").temperature_c.describe()'),
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    return (json.dumps(nb, indent=1) + "\n").encode()


def seed_datalake(site: Any, share_read_only: Any) -> SeedReport:
    """Create the demo buckets and objects on ``site`` (an :class:`S3Site` whose ``user(name)`` makes
    RGW users); ``share_read_only(owner, bucket, *readers)`` applies the bucket policy.
    Idempotent: existing buckets are reused and objects overwritten."""
    report = SeedReport()

    def put(owner: str, bucket: str, objects: dict[str, bytes]) -> None:
        s3 = site.client(owner)
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        for key, body in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        report.buckets[bucket] = owner
        report.objects.setdefault(bucket, []).extend(objects)

    summary = parquet_bytes(
        {"sensor": ["north", "south"], "mean_temperature_c": [12.0, 15.0], "readings": [48, 48]}
    )
    put("alice", ALICE_BUCKET, {
        CSV_KEY: temperature_csv(),
        "results/summary.parquet": summary,
        NOTEBOOK_KEY: analysis_notebook(),
        "README.md": b"# alice's experiments\n\nRaw sensor data and the notebook that analyses it.\n",
    })  # fmt: skip
    # Spark-style output: partition folders and no folder marker objects at all
    spark: dict[str, bytes] = {"events/_SUCCESS": b""}
    for year, month in ((2024, 1), (2024, 2), (2025, 1)):
        part = parquet_bytes(
            {"event_id": list(range(month * 10, month * 10 + 5)), "value": [0.5 * i for i in range(5)]}
        )
        spark[f"events/year={year}/month={month:02d}/part-00000-c000.snappy.parquet"] = part
    put("alice", ALICE_SPARK_BUCKET, spark)
    put("bob", BOB_BUCKET, {
        "climate/stations.csv": b"station,lat,lon\nBERN,46.95,7.44\nZURICH,47.37,8.54\n",
        "climate/secret-plan.md": b"# bob's private notes\n",
    })  # fmt: skip
    calibration = parquet_bytes({"sensor": ["north", "south"], "offset_c": [0.1, -0.07]})
    put(CURATOR, SHARED_BUCKET, {
        "reference/sensors.csv": b"sensor,model,installed\nnorth,TMP117,2023-05\nsouth,TMP117,2023-06\n",
        "reference/calibration.parquet": calibration,
        "README.md": b"# Shared reference data\n\nRead-only for every researcher.\n",
    })  # fmt: skip
    share_read_only(CURATOR, SHARED_BUCKET, "alice", "bob")
    report.shared.append(SHARED_BUCKET)
    return report
