"""Notebook bytes ⇄ notebook objects for bucket files, the heavy part in a worker thread.

Reading a notebook is JSON parsing, schema validation and an HMAC over every output (the trust
signature); writing is the same in reverse. For a 5 MiB notebook that is ~100 ms of CPU, which
jupyter-server's own managers spend on the event loop. Above ``threshold`` bytes this module does
all of it in a thread and leaves the loop only the signature store's lookup or insert (SQLite, whose
connection belongs to the loop's thread) and the marking of cells. Below it, the same steps run
inline (a thread hop would cost more than the work).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import nbformat

#: notebooks larger than this (bytes) are parsed and serialized in a worker thread
THREAD_THRESHOLD = 256 * 1024


@dataclass
class Parsed:
    nb: Any
    #: HMAC of the notebook (``notary.compute_signature``); None when it cannot be signed
    signature: str | None
    #: validation failure message for the model, or None
    message: str | None


def _validation_message(cm: Any, nb: Any) -> str | None:
    return cm.validate_notebook_model({"content": nb}).get("message")


def _parse(cm: Any, data: bytes) -> Parsed:
    nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    signature = cm.notary.compute_signature(nb) if nb.nbformat >= 3 else None
    return Parsed(nb, signature, _validation_message(cm, nb))


def _serialize(cm: Any, content: dict[str, Any]) -> tuple[bytes, Parsed]:
    nb = nbformat.from_dict(content)
    # jupyter-server's check_and_sign: sign only when every output cell is trusted
    trusted = nb.nbformat >= 3 and cm.notary.check_cells(nb)
    signature = cm.notary.compute_signature(nb) if trusted else None
    # nbformat.write (what jupyter-server's file manager calls) ends the file with a newline
    data = (nbformat.writes(nb, version=nbformat.NO_CONVERT) + "\n").encode("utf-8")
    return data, Parsed(nb, signature, _validation_message(cm, nb))


def estimate_size(content: dict[str, Any]) -> int:
    """Roughly the serialized size of a notebook's content: its sources and outputs' strings.

    A walk over cells and outputs (not their text), cheap enough to decide where to serialize.
    """
    total = 0
    for cell in content.get("cells") or ():
        if not isinstance(cell, dict):
            continue
        source = cell.get("source")
        total += len(source) if isinstance(source, str) else sum(map(len, source or ()))
        for out in cell.get("outputs") or ():
            if not isinstance(out, dict):
                continue
            for value in [*(out.get("data") or {}).values(), out.get("text")]:
                if isinstance(value, str):
                    total += len(value)
                elif isinstance(value, list):
                    total += sum(len(v) for v in value if isinstance(v, str))
                elif value is not None:
                    total += 1024  # JSON outputs (widgets, plotly): count them as big enough
    return total


async def _run(size: int, threshold: int, fn, *args):
    if size > threshold:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


async def read_notebook(cm: Any, data: bytes, path: str, threshold: int = THREAD_THRESHOLD) -> Parsed:
    """Parse ``data`` and mark its cells trusted or not (``cm.mark_trusted_cells``, split in two).

    Raises what ``nbformat.reads`` raises for unreadable content.
    """
    notary = cm.notary
    notary.secret  # noqa: B018  (load the key file on the loop, not concurrently in threads)
    parsed = await _run(len(data), threshold, _parse, cm, data)
    signature = parsed.signature
    trusted = signature is not None and notary.store.check_signature(signature, notary.algorithm)
    if not trusted:
        cm.log.warning("Notebook %s is not trusted", path)
    notary.mark_cells(parsed.nb, trusted)
    return parsed


async def write_notebook(
    cm: Any, content: dict[str, Any], path: str, size_hint: int, threshold: int = THREAD_THRESHOLD
) -> tuple[bytes, Parsed]:
    """Serialize a notebook model's content and sign it (``cm.check_and_sign``, split in two).

    ``size_hint`` (the request's size, or any estimate) decides whether the work goes to a thread.
    """
    notary = cm.notary
    notary.secret  # noqa: B018
    data, parsed = await _run(size_hint, threshold, _serialize, cm, content)
    if parsed.signature is not None:
        notary.store.store_signature(parsed.signature, notary.algorithm)
    else:
        cm.log.warning("Notebook %s is not trusted", path)
    return data, parsed
