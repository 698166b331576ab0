"""How JupyterLab's file browser uploads a file through the contents API (for tests and benchmarks).

A file larger than one chunk goes as base64 chunks of 1 MiB, one PUT each, numbered 1..n with -1
for the last; there is no upload id and no total size. Tests and the benchmark speak this protocol
through these helpers, so that they all send exactly what the browser sends.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any, BinaryIO

CHUNK_SIZE = 1024 * 1024


def upload_chunks(source: bytes | BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[int, bytes]]:
    """``(chunk number, bytes)`` in JupyterLab's order; a file is read one chunk ahead, never whole."""
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    number, piece = 1, stream.read(chunk_size)
    while True:
        following = stream.read(chunk_size)
        yield (number if following else -1), piece
        if not following:
            return
        number, piece = number + 1, following


def chunk_model(path: str, number: int, data: bytes) -> dict[str, Any]:
    """The contents model of one chunk: base64 content numbered 1..n, -1 for the last."""
    return {
        "type": "file",
        "format": "base64",
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "chunk": number,
        "content": base64.b64encode(data).decode("ascii"),
    }


def upload_models(
    path: str, source: bytes | BinaryIO, chunk_size: int = CHUNK_SIZE
) -> Iterator[dict[str, Any]]:
    """The contents models JupyterLab PUTs, in order, to upload ``source`` to ``path``."""
    for number, data in upload_chunks(source, chunk_size):
        yield chunk_model(path, number, data)
