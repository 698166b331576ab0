"""One bucket as a folder of the file browser (``datalake_<bucket>``), on ``s3/backend.S3Bucket``.

S3 has no folders: a folder exists while some key is below it, and an empty one is our marker
object (``s3/models.FOLDER_MARKER``). Checkpoints live in the bucket itself (``s3/checkpoints.py``).
Every S3 error leaves a method as an ``HTTPError`` naming the API path (``s3/errors.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from tornado.web import HTTPError

from ..discovery import BucketInfo
from ..notebooks import estimate_size, read_notebook, write_notebook
from ..s3.backend import ContentTooLarge, S3Bucket
from ..s3.checkpoints import S3Checkpoints
from ..s3.connection import S3Connection
from ..s3.download import ObjectStream
from ..s3.errors import http_errors
from ..s3.models import (
    TRUNCATION_NOTE,
    Listing,
    ObjectEntry,
    directory_model,
    file_model,
    guess_type,
    listing_models,
    truncation_message,
    truncation_note_model,
)
from ..transfer import S3Side
from .base import Mount, dotted
from .moves import move_or_copy

#: folder listings with more entries than this get their models built in a worker thread
MODELS_ON_LOOP_LIMIT = 1000


class BucketMount(Mount):
    """One bucket. ``config`` is the contents manager: its traitlets (read at each call, so a
    changed setting applies at once), its notary and its pre-save hooks."""

    kind = "bucket"

    def __init__(
        self,
        bucket: S3Bucket,
        info: BucketInfo,
        api_root: str,
        created: datetime,
        s3: S3Connection,
        config: Any,
    ) -> None:
        self.bucket = bucket
        self.info = info
        self.api_root = api_root
        self.writable = info.writable
        #: the date shown for the bucket's folders (S3 has no folder dates)
        self.created = created
        self.s3 = s3
        self.config = config
        self.log = config.log
        self.checkpoints = S3Checkpoints(bucket)

    @contextlib.contextmanager
    def errors(self, inner: str, action: str) -> Iterator[None]:
        with http_errors(self.api_path(inner), action, self.log):
            yield

    def _require_writable(self, inner: str) -> None:
        # refused before any S3 request: a chunked upload fails on its first chunk, not after a
        # part's worth of chunks (discovery decided writability without writing)
        if not self.writable:
            raise HTTPError(403, f"Read-only bucket, cannot write: {self.api_path(inner)}")

    # -- reads -----------------------------------------------------------------------------------

    async def file_exists(self, inner: str) -> bool:
        if not inner:
            return False
        if self.s3.upload_in_progress(self.bucket.bucket, inner):
            # jupyter-server's PUT handler asks before every upload chunk; the object being
            # written counts as existing (as a partly written file does in home), without a HEAD
            return True
        with self.errors(inner, "read"):
            return await self._object_exists(inner)

    async def _object_exists(self, key: str) -> bool:
        try:
            await self.bucket.head(key)
            return True
        except FileNotFoundError:
            return False

    async def dir_exists(self, inner: str) -> bool:
        if not inner:
            return True
        with self.errors(inner, "read"):
            return await self.bucket.folder_exists(inner + "/")

    async def is_hidden(self, inner: str) -> bool:
        return dotted(inner)

    async def taken_names(self, inner: str) -> set[str] | None:
        """One listing (never from the cache) instead of two requests per name tried: the n-th
        copy of a file cost 2n requests. A folder listed only in part: None (name by name)."""
        with self.errors(inner, "read"):
            listing = await self.bucket.list_dir(f"{inner}/" if inner else "", use_cache=False)
        if listing.truncated:
            return None
        return {e.name for e in listing.files} | set(listing.folders)

    async def open(self, inner: str) -> ObjectStream:
        if not inner:
            return await super().open(inner)
        with self.errors(inner, "read"):
            return await ObjectStream.open(self.bucket, inner, self.api_path(inner))

    async def get(self, inner, content=True, type=None, format=None, require_hash=False):
        with self.errors(inner, "read"):
            return await self._get(inner, content, type, format, require_hash)

    async def _get(self, inner, content, type, format, require_hash):
        if not inner or type == "directory":
            return await self._get_dir(inner, content)
        if type is None:
            listing = await self.bucket.list_dir(inner + "/")
            if listing.exists:
                return await self._dir_model(inner, listing if content else None)
            type = guess_type(inner)
        api_path, limit = self.api_path(inner), self.config.max_content_size
        # a notebook is read as json whatever format is asked (jupyter-server ignores it too)
        try:
            if content:  # one GetObject: body, size, time and ETag together
                data, entry = await self.bucket.read(inner, limit=limit)
            else:
                data, entry = None, await self.bucket.head(inner)
        except ContentTooLarge as e:
            raise HTTPError(
                413,
                f"{api_path} is too large to open here ({e.size} bytes, the limit is {limit}): download "
                f"it from /files/{api_path} or read s3://{self.bucket.bucket}/{inner} from a notebook",
            ) from None
        except FileNotFoundError:
            if inner.rsplit("/", 1)[-1] != TRUNCATION_NOTE or not self.config.listing_limit_note:
                raise
            return self._truncation_note(inner.rpartition("/")[0], content)
        model = file_model(api_path, entry, self.writable, type)
        if require_hash:
            model["hash"], model["hash_algorithm"] = entry.etag, "etag"
        if data is None:
            return model
        threshold = self.config.notebook_thread_threshold
        if type == "notebook":
            try:
                parsed = await read_notebook(self.config, data, api_path, threshold)
            except Exception as e:
                raise HTTPError(400, f"Unreadable Notebook: {api_path} {type_name(e)}") from None
            model["content"], model["format"] = parsed.nb, "json"
            if parsed.message:
                model["message"] = parsed.message
            return model
        if format in (None, "text", "json"):
            try:
                model["content"], model["format"] = data.decode("utf-8"), "text"
                model["mimetype"] = model["mimetype"] or "text/plain"
                return model
            except UnicodeDecodeError:
                if format in ("text", "json"):
                    raise HTTPError(400, f"{api_path} is not UTF-8 encoded") from None
        if len(data) > threshold:
            encoded = await asyncio.to_thread(_b64encode, data)
        else:
            encoded = _b64encode(data)
        model["content"], model["format"] = encoded, "base64"
        model["mimetype"] = model["mimetype"] or "application/octet-stream"
        return model

    def _truncation_note(self, folder: str, content: bool) -> dict[str, Any]:
        """The pseudo-file of a truncated listing of ``folder``, as JupyterLab opens it (no S3 object)."""
        text = truncation_message(
            self.bucket.bucket, f"{folder}/" if folder else "", self.config.listing_limit
        )
        return truncation_note_model(self.api_path(folder), text, self.created, content)

    async def _dir_model(self, inner: str, listing: Listing | None) -> dict[str, Any]:
        api_path = self.api_path(inner)
        model = directory_model(api_path, self.writable, self.created)
        if not inner:
            model["name"] = self.api_root
        if listing is not None:
            args = (api_path, listing, self.writable, self.created, self.config.allow_hidden)
            if len(listing.files) + len(listing.folders) > MODELS_ON_LOOP_LIMIT:
                # some 2 µs per entry: 10,000 entries would hold the loop ~20 ms
                model["content"] = await asyncio.to_thread(listing_models, *args)
            else:
                model["content"] = listing_models(*args)
            model["format"] = "json"
            if listing.truncated:
                prefix = f"{inner}/" if inner else ""
                model["message"] = truncation_message(self.bucket.bucket, prefix, self.config.listing_limit)
                if self.config.listing_limit_note:
                    model["content"].append(self._truncation_note(inner, False))
        return model

    async def _get_dir(self, inner: str, content: bool) -> dict[str, Any]:
        prefix = f"{inner}/" if inner else ""
        if not content and inner:
            if not await self.bucket.folder_exists(prefix):
                raise HTTPError(404, f"No such directory: {self.api_path(inner)}")
            return await self._dir_model(inner, None)
        listing = await self.bucket.list_dir(prefix)
        if inner and not listing.exists:
            raise HTTPError(404, f"No such directory: {self.api_path(inner)}")
        return await self._dir_model(inner, listing if content else None)

    # -- save ------------------------------------------------------------------------------------

    async def save(self, model, inner):
        self._require_writable(inner)
        with self.errors(inner, "write"):
            if model.get("chunk") is not None:
                return await self._save_chunk(inner, model)
            return await self._save(inner, model)

    def _decode(self, model: dict[str, Any], inner: str) -> bytes:
        path = self.api_path(inner)
        if "content" not in model or model["content"] is None:
            raise HTTPError(400, f"No file content provided: {path}")
        fmt = model.get("format")
        if fmt not in ("text", "base64"):
            raise HTTPError(400, "Must specify format of file contents as 'text' or 'base64'")
        content = model["content"]
        if not isinstance(content, str):
            raise HTTPError(400, f"File content must be a string: {path}")
        try:
            if fmt == "text":
                return content.encode("utf-8")
            return base64.b64decode(content.encode("ascii"), validate=True)
        except Exception:
            raise HTTPError(400, f"Encoding error saving {path}") from None

    async def _decode_off_loop(self, model: dict[str, Any], inner: str) -> bytes:
        """:meth:`_decode`, in a worker thread for content above ``notebook_thread_threshold``."""
        content = model.get("content")
        if isinstance(content, str) and len(content) > self.config.notebook_thread_threshold:
            return await asyncio.to_thread(self._decode, model, inner)
        return self._decode(model, inner)

    async def _refuse_file_over_folder(self, inner: str) -> None:
        """A file saved under a folder's name would be hidden by the folder in every listing
        (home cannot even write it): 400. One ListObjectsV2 of one key, or none when cached."""
        if await self.bucket.folder_exists(f"{inner}/"):
            raise HTTPError(400, f"A folder of that name exists: {self.api_path(inner)}")

    async def check_parent(self, inner: str) -> None:
        """A key below a file's name (``f.txt/new.txt``) would turn the file into a folder that hides
        it in every listing (home cannot write there; jupyter-server says 500): 400. A missing
        folder is created, as in S3 (differential test RULES: implicit-folders). One ListObjectsV2
        of one key (none when the parent's listing is cached); a HeadObject per missing ancestor."""
        parts = inner.split("/")[:-1]
        with self.errors(inner, "write"):
            if not parts or await self.bucket.folder_exists("/".join(parts) + "/"):
                return
            for i in range(len(parts), 0, -1):
                if await self._object_exists("/".join(parts[:i])):
                    raise HTTPError(400, f"A file of that name exists: {self.api_path('/'.join(parts[:i]))}")

    async def _save(self, inner: str, model: dict[str, Any]) -> dict[str, Any]:
        api_path = self.api_path(inner)
        await self.check_parent(inner)
        self.config.run_pre_save_hooks(model=model, path=api_path)
        kind = model["type"]
        if kind == "directory":
            if await self._object_exists(inner):  # home refuses a folder over a file too
                raise HTTPError(400, f"A file of that name exists: {api_path}")
            await self.bucket.make_folder(f"{inner}/")
            return await self._dir_model(inner, None)
        await self._refuse_file_over_folder(inner)
        if kind == "notebook":
            if "content" not in model or not isinstance(model["content"], dict):
                raise HTTPError(400, f"No notebook content provided: {api_path}")
            try:
                size = estimate_size(model["content"])
                data, parsed = await write_notebook(
                    self.config, model["content"], api_path, size, self.config.notebook_thread_threshold
                )
            except Exception as e:
                raise HTTPError(400, f"Unreadable notebook content: {api_path} {type_name(e)}") from None
            entry = await self.bucket.write(inner, data, "application/x-ipynb+json")
            # jupyter-server's rule: one checkpoint always exists for a notebook once saved
            if not await self.checkpoints.list(inner):
                await self.checkpoints.create(inner)
            saved = file_model(api_path, entry, self.writable, "notebook")
            if parsed.message:
                saved["message"] = parsed.message
            return saved
        data = await self._decode_off_loop(model, inner)
        entry = await self.bucket.write(inner, data, None)
        # the type as the next get sees it (a file saved as "x.ipynb" is a notebook), as in home
        return file_model(api_path, entry, self.writable, guess_type(inner))

    async def _save_chunk(self, inner: str, model: dict[str, Any]) -> dict[str, Any]:
        api_path, chunk = self.api_path(inner), model["chunk"]
        if not isinstance(chunk, int) or chunk == 0 or chunk < -1:
            raise HTTPError(400, f"Invalid chunk number {chunk!r}: {api_path}")
        if model["type"] != "file":
            raise HTTPError(400, f'File type "{model["type"]}" is not supported for large file transfer')
        data = await self._decode_off_loop(model, inner)
        if chunk == 1:
            await self.check_parent(inner)
            await self._refuse_file_over_folder(inner)
            self.config.run_pre_save_hooks(model=model, path=api_path)
        uploads = await self.s3.uploads()
        sizes, ident = self.s3.chunked_sizes, (self.bucket.bucket, inner)
        if chunk == 1:  # forget the sizes of uploads that were aborted or timed out
            for stale in [k for k in sizes if not uploads.in_progress(*k)]:
                del sizes[stale]
            sizes[ident] = 0
        try:
            done = await uploads.add_chunk(self.bucket.bucket, inner, chunk, data)
        except BaseException:
            sizes.pop(ident, None)
            raise
        finally:
            self.bucket.invalidate(inner)
        if ident in sizes:
            sizes[ident] += len(data)
        # No request for the model: the object is not in S3 before the last chunk, and after it
        # its size is the sum of the chunks (a HEAD per chunk cost 257 requests for 256 MiB).
        now = datetime.now(timezone.utc)
        if done:
            size = sizes.pop(ident, None)
            saved = file_model(api_path, ObjectEntry(inner, size or 0, now), self.writable, guess_type(inner))
            saved["size"] = size
            return saved
        saved = file_model(api_path, ObjectEntry(inner, 0, now), self.writable, guess_type(inner))
        saved["size"] = sizes.get(ident)  # the bytes received so far, as in home
        return saved

    # -- delete / rename -------------------------------------------------------------------------

    async def delete(self, inner: str) -> None:
        with self.errors(inner, "delete"):
            if await self._object_exists(inner):
                await self.bucket.delete_keys([inner])
                return
            entries = await self.bucket.list_tree(f"{inner}/")
            if not entries:
                raise HTTPError(404, f"No such file or directory: {self.api_path(inner)}")
            if not self.config.recursive_bucket_delete:
                tree = await self.side(inner).scan()
                if tree is not None and tree.files:
                    raise HTTPError(400, f"Directory not empty: {self.api_path(inner)}")
            await self.bucket.delete_keys([e.key for e in entries])

    async def rename(self, old: str, new: str) -> None:
        # S3 has no rename: server-side copies, verified, then the source deleted
        await move_or_copy(self, old, self, new, move=True, config=self.config)

    def side(self, inner: str) -> S3Side:
        return S3Side(self.bucket, inner)

    # -- checkpoints -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _checkpoint_errors(self, inner: str) -> Iterator[None]:
        with self.errors(inner, "checkpoint"):
            try:
                yield
            except FileNotFoundError:
                raise HTTPError(404, f"No such file or checkpoint: {self.api_path(inner)}") from None

    async def create_checkpoint(self, inner):
        with self._checkpoint_errors(inner):
            return await self.checkpoints.create(inner)

    async def list_checkpoints(self, inner):
        with self._checkpoint_errors(inner):
            return await self.checkpoints.list(inner)

    async def restore_checkpoint(self, checkpoint_id, inner):
        with self._checkpoint_errors(inner):
            return await self.checkpoints.restore(inner, checkpoint_id)

    async def delete_checkpoint(self, checkpoint_id, inner):
        with self._checkpoint_errors(inner):
            return await self.checkpoints.delete(inner, checkpoint_id)

    async def _best_effort(self, coro: Any, inner: str) -> None:
        """Checkpoint housekeeping after a delete or a move: the user's data is already right."""
        try:
            await coro
        except Exception as e:
            self.log.warning(
                "Checkpoint housekeeping failed for %s: %s", self.api_path(inner), type(e).__name__
            )

    async def delete_all_checkpoints(self, inner: str) -> None:
        await self._best_effort(self.checkpoints.delete_all(inner), inner)

    async def rename_all_checkpoints(self, old: str, new: str) -> None:
        await self._best_effort(self.checkpoints.move_all(old, new), old)

    # -- kernels ---------------------------------------------------------------------------------

    async def kernel_path(self, inner: str) -> str:
        return self.config.bucket_kernel_dir


def _b64encode(data: bytes) -> str:
    """Base64 exactly as jupyter-server's file manager writes it (lines of 76 characters)."""
    return base64.encodebytes(data).decode("ascii")


def type_name(e: BaseException) -> str:
    return type(e).__name__
