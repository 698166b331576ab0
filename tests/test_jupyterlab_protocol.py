"""The upload helpers send what JupyterLab sends: chunks numbered 1..n, the last one -1."""

import base64
import io

from valeria_platform.jupyterlab import upload_chunks, upload_models


def test_chunks_are_numbered_like_jupyterlab():
    assert [(n, len(d)) for n, d in upload_chunks(b"x" * 25, 10)] == [(1, 10), (2, 10), (-1, 5)]
    assert [(n, len(d)) for n, d in upload_chunks(b"x" * 20, 10)] == [(1, 10), (-1, 10)]
    assert list(upload_chunks(b"abc", 10)) == [(-1, b"abc")]
    assert list(upload_chunks(b"", 10)) == [(-1, b"")]


def test_a_file_is_read_in_chunks_and_models_carry_the_bytes():
    data = bytes(range(256)) * 100
    models = list(upload_models("datalake_b/dir/my file.bin", io.BytesIO(data), 4096))
    assert [m["chunk"] for m in models] == [1, 2, 3, 4, 5, 6, -1]
    assert {m["name"] for m in models} == {"my file.bin"}
    assert b"".join(base64.b64decode(m["content"]) for m in models) == data
