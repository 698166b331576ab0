"""Moves and copies on the transfer engine, between any two mounts (or within a bucket).

The engine (``transfer.py``) copies, verifies, then deletes; this module gives it the two mounts'
sides, refuses a move out of a read-only mount, and turns its outcomes into HTTP answers.
"""

from __future__ import annotations

from typing import Any

from tornado.web import HTTPError

from ..s3.errors import http_errors, to_http_error
from ..transfer import S3Side, SourceChanged, SourceNotRemoved, Tree, transfer
from .base import Mount


async def move_or_copy(
    src: Mount, src_inner: str, dst: Mount, dst_inner: str, *, move: bool, config: Any
) -> Tree:
    """Copy (``move``: then delete) ``src_inner`` of ``src`` to ``dst_inner`` of ``dst``.

    ``config`` (the contents manager) gives ``transfer_concurrency``, ``server_copy_concurrency``
    (for two S3 sides), ``transfer_inline_limit`` and ``log``.
    """
    src_path, dst_path = src.api_path(src_inner), dst.api_path(dst_inner)
    if move and not src.writable:
        raise HTTPError(403, f"Read-only bucket, cannot move out of it (copy instead): {src_path}")
    src_side, dst_side = src.side(src_inner), dst.side(dst_inner)
    server_side = isinstance(src_side, S3Side) and isinstance(dst_side, S3Side)
    with http_errors(src_path, "move" if move else "copy", config.log):
        try:
            return await transfer(
                src_side,
                dst_side,
                move=move,
                concurrency=config.server_copy_concurrency if server_side else config.transfer_concurrency,
                inline_limit=config.transfer_inline_limit,
                # within one bucket they follow afterwards (DatalakeCheckpoints.rename_all_checkpoints)
                checkpoints=move and src.api_root != dst.api_root,
                log=config.log,
            )
        except FileNotFoundError:
            raise HTTPError(404, f"No such file or directory: {src_path}") from None
        except SourceNotRemoved as e:
            status = to_http_error(e.cause, src_path, "delete", config.log).status_code
            raise HTTPError(
                status, f"Copied to {dst_path}, but the source could not be removed: {src_path}"
            ) from None
        except SourceChanged as e:
            shown = ", ".join(repr(k) for k in e.kept[:5]) + (", ..." if len(e.kept) > 5 else "")
            raise HTTPError(
                409,
                f"Copied to {dst_path}, but {len(e.kept)} source file(s) changed during the move and "
                f"were kept in {src_path}: {shown}",
            ) from None
        except HTTPError as e:
            if e.status_code == 409 and e.log_message == "Destination already exists":
                raise HTTPError(409, f"Destination already exists: {dst_path}") from None
            raise
