"""``DatalakeContentsManager``: home, scratch and every datalake bucket in one file browser.

The manager routes: it splits an API path into a mount and a path inside it (``paths``), hands
POSIX paths to jupyter-server's own async large-file manager (``posix``) and bucket paths to the
S3 backend (``s3``), builds the root listing, and runs moves and copies that cross mounts
(``transfer``: copy, verify, then delete). Only this module knows that several mounts exist.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from jupyter_server.services.contents.manager import AsyncContentsManager, copy_pat
from tornado.web import HTTPError
from traitlets import Bool, Float, Int, List, Unicode, default

from .discovery import BucketDiscovery, BucketInfo
from .heap import freeze_startup_heap
from .notebooks import estimate_size, read_notebook, write_notebook
from .paths import SCRATCH_NAME, Location, PathRouter
from .posix import PosixRoot
from .s3.backend import ContentTooLarge, ListingCache, S3Bucket
from .s3.checkpoints import S3Checkpoints
from .s3.client import S3Settings, close_s3_filesystem, make_s3_filesystem
from .s3.errors import to_http_error
from .s3.models import (
    EPOCH,
    TRUNCATION_NOTE,
    ObjectEntry,
    directory_model,
    file_model,
    guess_type,
    listing_models,
    truncation_message,
    truncation_note_model,
)
from .s3.threaded import ThreadedS3
from .transfer import PosixSide, S3Side, SourceChanged, SourceNotRemoved, transfer
from .user_buckets import UserBucketList
from .user_buckets import default_path as default_user_buckets_path

#: folder listings with more entries than this get their models built in a worker thread
MODELS_ON_LOOP_LIMIT = 1000


def _env(name: str, fallback: str = "") -> str:
    return os.environ.get(name, fallback)


class DatalakeContentsManager(AsyncContentsManager):
    """Home (the server's root dir), ``scratch`` and one ``datalake_<bucket>`` folder per bucket."""

    # -- configuration ---------------------------------------------------------------------------

    bucket_prefix = Unicode(
        config=True,
        help="Folder-name prefix of buckets in the file browser (env VALERIA_DATALAKE_PREFIX).",
    )

    @default("bucket_prefix")
    def _default_bucket_prefix(self) -> str:
        return _env("VALERIA_DATALAKE_PREFIX", "datalake_")

    scratch_dir = Unicode(
        config=True,
        help="The user's scratch folder, shown as 'scratch'; hidden when empty or missing "
        "(env VALERIA_SCRATCH_DIR).",
    )

    @default("scratch_dir")
    def _default_scratch_dir(self) -> str:
        return _env("VALERIA_SCRATCH_DIR")

    shared_buckets = List(
        Unicode(),
        config=True,
        help="Buckets shared with the user by policy, which ListBuckets does not return "
        "(env VALERIA_SHARED_BUCKETS, comma-separated).",
    )

    @default("shared_buckets")
    def _default_shared_buckets(self) -> list[str]:
        return [b.strip() for b in _env("VALERIA_SHARED_BUCKETS").split(",") if b.strip()]

    user_buckets_file = Unicode(
        config=True,
        help="JSON file in the user's home listing the shared buckets the user added themselves "
        "(JupyterLab's 'Add a shared bucket…'); default $XDG_CONFIG_HOME or ~/.config, "
        "then valeria/shared-buckets.json.",
    )

    @default("user_buckets_file")
    def _default_user_buckets_file(self) -> str:
        return default_user_buckets_path()

    s3_endpoint_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="S3 endpoint URL (default: env AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, "
        "then S3_ENDPOINT_URL).",
    )
    s3_region = Unicode(
        None, allow_none=True, config=True, help="S3 region (default: env AWS_DEFAULT_REGION)."
    )
    s3_ca_bundle = Unicode(
        None, allow_none=True, config=True, help="CA bundle of the S3 endpoint (default: env AWS_CA_BUNDLE)."
    )
    s3_connect_timeout = Float(3.0, config=True, help="Seconds to wait for a connection to S3.")
    s3_read_timeout = Float(30.0, config=True, help="Seconds to wait for an S3 response.")
    s3_max_attempts = Int(2, config=True, help="Attempts per S3 request before it is reported as failed.")
    s3_list_threads = Int(
        4,
        config=True,
        help="Worker threads that make paginated bucket listings (and parse them) off the event loop; "
        "0 lists on the event loop through s3fs (a 10,000-object folder then stalls it ~200 ms).",
    )

    freeze_heap = Bool(
        True,
        config=True,
        help="Once the S3 clients are built, move every object then alive out of the garbage "
        "collector's reach (gc.freeze()): full collections, which stall the event loop from any "
        "thread, then walk only newer objects.",
    )
    notebook_thread_threshold = Int(
        256 * 1024,
        config=True,
        help="Bucket notebooks and files bigger than this (bytes) are parsed, validated, signed and "
        "encoded in a worker thread instead of on the event loop.",
    )

    bucket_cache_ttl = Float(
        config=True,
        help="Seconds a bucket discovery result is kept (env VALERIA_BUCKET_CACHE_TTL).",
    )

    @default("bucket_cache_ttl")
    def _default_bucket_cache_ttl(self) -> float:
        try:
            return float(_env("VALERIA_BUCKET_CACHE_TTL", "60"))
        except ValueError:
            return 60.0

    listing_cache_ttl = Float(
        10.0,
        config=True,
        help="Seconds a bucket folder listing is reused (absorbs JupyterLab's 10 s poll); "
        "any write through this server drops the bucket's cached listings at once.",
    )
    max_content_size = Int(
        256 * 1024 * 1024,
        config=True,
        help="Largest bucket file (bytes) whose content GET /api/contents returns (JupyterLab's editor, "
        "viewers); the server holds about three times the file in memory while sending it. Bigger "
        "files answer 413 and stay available by download (/files/, streamed) and from a notebook "
        "(s3://bucket/key).",
    )
    listing_limit = Int(
        10_000,
        config=True,
        help="Most entries a bucket folder listing shows, fetched in ceil(limit/1000) requests; a "
        "folder holding more is listed up to the limit and says so (the directory model's 'message' "
        f"and a read-only pseudo-file '{TRUNCATION_NOTE}'). Keeps a folder of millions of objects "
        "from stalling the server and the browser; 0 lists everything.",
    )
    listing_limit_note = Bool(
        True,
        config=True,
        help="Add the pseudo-file that says a bucket folder listing was cut at listing_limit "
        "(JupyterLab's file browser shows entries, not the directory model's message).",
    )
    transfer_concurrency = Int(8, config=True, help="Objects copied at once in folder moves and copies.")
    transfer_inline_limit = Int(
        64 * 1024 * 1024,
        config=True,
        help="Files up to this size move between disk and S3 in one request; bigger ones are streamed.",
    )
    recursive_bucket_delete = Bool(
        True,
        config=True,
        help="Deleting a non-empty folder in a bucket deletes everything below it (JupyterLab asks "
        "first). When False, only empty folders can be deleted. Buckets have no trash.",
    )
    bucket_kernel_dir = Unicode(
        "",
        config=True,
        help="API path (a home folder) where kernels of notebooks opened from a bucket start; '' is home.",
    )
    upload_part_size = Int(8 * 1024 * 1024, config=True, help="Part size of chunked uploads into buckets.")
    upload_idle_timeout = Float(
        3600.0, config=True, help="Seconds after which an unfinished chunked upload into a bucket is aborted."
    )

    @default("files_handler_class")
    def _default_files_handler_class(self) -> type:
        # /files/: bucket objects streamed from S3 with ranges; home and scratch as static files
        from .handlers import DatalakeFilesHandler

        return DatalakeFilesHandler

    @default("files_handler_params")
    def _default_files_handler_params(self) -> dict[str, str]:
        # jupyter-server's FilesHandler serves through the contents manager; its StaticFileHandler
        # base still wants a root path.
        return {"path": self.root_dir}

    @default("root_dir")
    def _default_root_dir(self) -> str:
        return self.parent.root_dir if self.parent is not None else os.getcwd()

    # -- set-up ----------------------------------------------------------------------------------

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        scratch = self.scratch_dir and os.path.isdir(self.scratch_dir)
        self.router = PathRouter(self.bucket_prefix, bool(scratch))
        # one notary for every mount: a notebook trusted in home stays trusted once copied to a bucket
        # (with an in-memory signature store, each manager would otherwise have its own)
        posix = {"parent": self, "log": self.log, "notary": self.notary}
        self.home = PosixRoot(root_dir=self.root_dir, **posix)
        self.scratch = PosixRoot(root_dir=self.scratch_dir, **posix) if scratch else None
        self.listings = ListingCache(self.listing_cache_ttl)
        self.user_buckets = UserBucketList(self.user_buckets_file)
        self.discovery = BucketDiscovery(
            self._filesystem,
            self.shared_buckets,
            self.bucket_cache_ttl,
            log=self.log,
            user_shared=self.user_buckets.names,
        )
        self._fs: Any = None
        self._fs_lock = asyncio.Lock()
        self._uploads: Any = None
        self._threaded: ThreadedS3 | None = None
        #: bytes received so far by each chunked upload into a bucket, by (bucket, key)
        self._chunked_sizes: dict[tuple[str, str], int] = {}
        #: when this server first found each bucket whose creation date S3 did not give
        self._first_seen: dict[str, datetime] = {}
        if self.scratch_dir and not scratch:
            self.log.info("Scratch folder %s does not exist: not shown", self.scratch_dir)

    def s3_settings(self) -> S3Settings:
        """S3 settings: credentials only ever from the environment (a config value would be
        printed by traitlets' debug log of the configuration); the rest from traitlets or env."""
        return S3Settings.from_environ(
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            ca_bundle=self.s3_ca_bundle,
            listings_cache_ttl=self.listing_cache_ttl,
            connect_timeout=self.s3_connect_timeout,
            read_timeout=self.s3_read_timeout,
            max_attempts=self.s3_max_attempts,
        )

    async def _filesystem(self) -> Any:
        """The S3 filesystem, created on first use on the server's event loop."""
        async with self._fs_lock:
            if self._fs is None:
                fs = make_s3_filesystem(self.s3_settings())
                if self.freeze_heap:
                    await self._build_clients_and_freeze(fs)
                self._fs = fs
            return self._fs

    async def _build_clients_and_freeze(self, fs: Any) -> None:
        """Build both S3 clients now, then freeze the heap (``heap.py``), once per process."""
        try:
            await fs.set_session()  # s3fs would build its aiobotocore client on the first call
            threaded = self._threaded_s3()
            if threaded is not None:
                await threaded.warm_up()
        except Exception as e:  # the first real call will report it
            self.log.debug("Building the S3 clients failed: %s", type(e).__name__)
            return
        frozen = freeze_startup_heap()
        if frozen:
            self.log.debug("Froze %d startup objects out of garbage collection", frozen)

    async def s3_filesystem(self) -> Any:
        """The server's one ``s3fs.S3FileSystem`` (public name, for handlers and uploads)."""
        return await self._filesystem()

    async def bucket(self, loc: Location) -> tuple[S3Bucket, BucketInfo]:
        """Public name of :meth:`_bucket`: the backend of ``loc``'s bucket, or a 404/403/503."""
        return await self._bucket(loc)

    async def uploads(self) -> Any:
        """Chunked uploads into buckets (``s3/uploads.py``), created on first use."""
        if self._uploads is None:
            from .s3.uploads import MultipartUploads

            self._uploads = MultipartUploads(
                await self._filesystem(),
                part_size=self.upload_part_size,
                idle_timeout=self.upload_idle_timeout,
                log=self.log,
            )
            self._uploads.start()
        return self._uploads

    async def close(self) -> None:
        """Abort pending uploads' timers and close the S3 connection pool."""
        if self._uploads is not None:
            await self._uploads.close()
            self._uploads = None
        if self._threaded is not None:
            self._threaded.close()
            self._threaded = None
        if self._fs is not None:
            await close_s3_filesystem(self._fs)
            self._fs = None

    # -- routing helpers -------------------------------------------------------------------------

    def locate(self, path: str) -> Location:
        return self.router.locate(path)

    def _posix(self, loc: Location) -> PosixRoot:
        return self.scratch if loc.kind == "scratch" else self.home

    def _check_home_name(self, loc: Location) -> None:
        if self._shadowed_by_a_mount(loc):
            raise HTTPError(400, f"Name reserved for a datalake folder: {loc.inner}")

    @staticmethod
    @contextlib.contextmanager
    def _below_a_file(loc: Location) -> Iterator[None]:
        """A home path below a file (``notes.txt/x``) makes jupyter_core's ``is_hidden``, which
        jupyter-server asks first, raise NotADirectoryError: a 500 for a client mistake. A 404."""
        try:
            yield
        except NotADirectoryError:
            raise HTTPError(404, f"No such file or directory: {loc.api_path}") from None

    @contextlib.contextmanager
    def _s3_errors(self, path: str, action: str) -> Iterator[None]:
        try:
            yield
        except HTTPError:
            raise
        except Exception as e:
            raise to_http_error(e, path, action, self.log) from None

    async def _bucket(self, loc: Location) -> tuple[S3Bucket, BucketInfo]:
        """The backend of ``loc``'s bucket, or a 404/403/503 if it is not usable."""
        found = await self.discovery.get()
        info = found.buckets.get(loc.bucket)
        if info is None and found.error is None:
            # a bucket granted or created since the last discovery: look again (at most every 5 s)
            found = await self.discovery.get(max_age=5.0)
            info = found.buckets.get(loc.bucket)
        if info is None:
            if found.error is not None:
                raise HTTPError(found.error.status_code, f"{found.error.log_message}: {loc.api_path}")
            folder = self.router.bucket_folder(loc.bucket)
            raise HTTPError(404, f"No such bucket, or no access to it: {folder}")
        fs = await self._filesystem()
        limit = self.listing_limit if self.listing_limit > 0 else None
        return S3Bucket(
            fs, loc.bucket, self.listings, self.log, threaded=self._threaded_s3(), listing_limit=limit
        ), info

    def _bucket_time(self, info: BucketInfo) -> datetime:
        """The date shown for a bucket's folders: its ``CreationDate`` from ListBuckets when known.

        A bucket known only from the shared list (Ceph RGW and AWS list owned buckets only) has
        none: it shows when this server first found it, which stays the same for the server's
        life. Never 1970 (JupyterLab showed "56 years ago").
        """
        if info.created > EPOCH:
            return info.created
        return self._first_seen.setdefault(info.name, datetime.now(timezone.utc))

    def _threaded_s3(self) -> ThreadedS3 | None:
        """Worker threads for paginated listings (``s3/threaded.py``), created on first use."""
        if self.s3_list_threads <= 0:
            return None
        if self._threaded is None:
            self._threaded = ThreadedS3(self.s3_settings(), workers=self.s3_list_threads)
        return self._threaded

    def _rebase(self, model: dict[str, Any], loc: Location) -> dict[str, Any]:
        """Turn a POSIX sub-manager's model (paths relative to its root) into API paths."""
        if loc.kind == "scratch":
            model["path"] = f"{SCRATCH_NAME}/{model['path']}".rstrip("/")
            if model["path"] == SCRATCH_NAME:
                model["name"] = SCRATCH_NAME
            if model.get("type") == "directory" and isinstance(model.get("content"), list):
                for child in model["content"]:
                    child["path"] = f"{SCRATCH_NAME}/{child['path']}"
        return model

    # -- existence -------------------------------------------------------------------------------

    def _shadowed_by_a_mount(self, loc: Location) -> bool:
        """A home entry named like a mount (``scratch``, ``datalake_*``) is hidden behind it."""
        return loc.kind == "home" and "/" not in loc.inner and self.router.is_reserved_top_name(loc.inner)

    async def _bucket_if_accessible(self, loc: Location) -> S3Bucket | None:
        """The bucket of ``loc``, or None when it does not exist or this user cannot see it."""
        try:
            bucket, _ = await self._bucket(loc)
        except HTTPError as e:
            if e.status_code == 404:
                return None
            raise
        return bucket

    async def dir_exists(self, path: str) -> bool:
        loc = self.locate(path)
        if loc.kind == "root":
            return True
        if loc.kind in ("home", "scratch"):
            if self._shadowed_by_a_mount(loc):
                return False
            return await self._posix(loc).dir_exists(loc.inner)
        bucket = await self._bucket_if_accessible(loc)
        if bucket is None:
            return False
        if not loc.inner:
            return True
        with self._s3_errors(loc.api_path, "read"):
            return await bucket.folder_exists(loc.inner + "/")

    async def file_exists(self, path: str = "") -> bool:
        loc = self.locate(path)
        if loc.is_mount_root:
            return False
        if loc.kind in ("home", "scratch"):
            if self._shadowed_by_a_mount(loc):
                return False
            return await self._posix(loc).file_exists(loc.inner)
        bucket = await self._bucket_if_accessible(loc)
        if bucket is None:
            return False
        if self._uploads is not None and self._uploads.in_progress(loc.bucket, loc.inner):
            # jupyter-server's PUT handler asks before every upload chunk; the object being
            # written counts as existing (as a partly written file does in home), without a HEAD
            return True
        with self._s3_errors(loc.api_path, "read"):
            try:
                await bucket.head(loc.inner)
                return True
            except FileNotFoundError:
                return False

    async def is_hidden(self, path: str) -> bool:
        loc = self.locate(path)
        if loc.kind == "root":
            return False
        by_name = any(part.startswith(".") for part in loc.inner.split("/") if part)
        if loc.kind in ("home", "scratch"):
            try:
                return await self._posix(loc).is_hidden(loc.inner)
            except NotADirectoryError:  # below a file: jupyter_core lets it out (a 500 for any request)
                return by_name
        return by_name

    # -- get -------------------------------------------------------------------------------------

    async def get(self, path, content=True, type=None, format=None, require_hash=False):
        loc = self.locate(path)
        if type not in (None, "directory", "file", "notebook"):
            raise HTTPError(400, f"Unknown type {type!r}: {loc.api_path}")
        if format not in (None, "text", "base64", "json"):
            raise HTTPError(400, f"Unknown format {format!r}: {loc.api_path}")
        if loc.kind == "root":
            return await self._root_model(content, type)
        if loc.kind in ("home", "scratch"):
            if self._shadowed_by_a_mount(loc):
                raise HTTPError(404, f"No such file or directory: {loc.api_path}")
            with self._below_a_file(loc):
                model = await self._posix(loc).get(
                    loc.inner, content=content, type=type, format=format, require_hash=require_hash
                )
            return self._rebase(model, loc)
        bucket, info = await self._bucket(loc)
        with self._s3_errors(loc.api_path, "read"):
            return await self._s3_get(loc, bucket, info, content, type, format, require_hash)

    async def _root_model(self, content: bool, type: str | None) -> dict[str, Any]:
        if type not in (None, "directory"):
            raise HTTPError(400, "The root is a directory")
        model = await self.home.get("", content=content, type="directory")
        if not content:
            return model
        entries = [m for m in model["content"] if not self.router.is_reserved_top_name(m["name"])]
        if self.scratch is not None:
            scratch = await self.scratch.get("", content=False, type="directory")
            entries.append(self._rebase(scratch, Location(SCRATCH_NAME, "scratch")))
        found = await self.discovery.get()
        for name, info in sorted(found.buckets.items()):
            folder = self.router.bucket_folder(name)
            entries.append(directory_model(folder, info.writable, self._bucket_time(info)))
        model["content"] = entries
        return model

    async def _s3_get(self, loc, bucket, info, content, type, format, require_hash):
        if not loc.inner or type == "directory":
            return await self._s3_dir(loc, bucket, info, content)
        if type is None:
            listing = await bucket.list_dir(loc.inner + "/")
            if listing.exists:
                return await self._dir_model(loc, info, listing if content else None)
            type = guess_type(loc.name)
        # a notebook is read as json whatever format is asked (jupyter-server ignores it too)
        try:
            if content:  # one GetObject: body, size, time and ETag together
                data, entry = await bucket.read(loc.inner, limit=self.max_content_size)
            else:
                data, entry = None, await bucket.head(loc.inner)
        except ContentTooLarge as e:
            raise HTTPError(
                413,
                f"{loc.api_path} is too large to open here ({e.size} bytes, the limit is "
                f"{self.max_content_size}): download it from /files/{loc.api_path} or read "
                f"s3://{loc.bucket}/{loc.inner} from a notebook",
            ) from None
        except FileNotFoundError:
            if loc.name != TRUNCATION_NOTE or not self.listing_limit_note:
                raise
            return self._truncation_note(loc, info, content)
        model = file_model(loc.api_path, entry, info.writable, type)
        if require_hash:
            model["hash"], model["hash_algorithm"] = entry.etag, "etag"
        if data is None:
            return model
        if type == "notebook":
            try:
                parsed = await read_notebook(self, data, loc.api_path, self.notebook_thread_threshold)
            except Exception as e:
                raise HTTPError(400, f"Unreadable Notebook: {loc.api_path} {type_name(e)}") from None
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
                    raise HTTPError(400, f"{loc.api_path} is not UTF-8 encoded") from None
        if len(data) > self.notebook_thread_threshold:
            encoded = await asyncio.to_thread(_b64encode, data)
        else:
            encoded = _b64encode(data)
        model["content"], model["format"] = encoded, "base64"
        model["mimetype"] = model["mimetype"] or "application/octet-stream"
        return model

    def _truncation_note(self, loc: Location, info: BucketInfo, content: bool) -> dict[str, Any]:
        """The pseudo-file of a truncated listing, as JupyterLab opens it (it is no S3 object)."""
        api_dir, _, _ = loc.api_path.rpartition("/")
        folder = loc.inner.rpartition("/")[0]
        text = truncation_message(loc.bucket, f"{folder}/" if folder else "", self.listing_limit)
        return truncation_note_model(api_dir, text, self._bucket_time(info), content)

    async def _dir_model(self, loc, info, listing) -> dict[str, Any]:
        model = directory_model(loc.api_path, info.writable, self._bucket_time(info))
        if loc.is_mount_root:
            model["name"] = self.router.bucket_folder(loc.bucket)
        if listing is not None:
            args = (loc.api_path, listing, info.writable, self._bucket_time(info), self.allow_hidden)
            if len(listing.files) + len(listing.folders) > MODELS_ON_LOOP_LIMIT:
                # some 2 µs per entry: 10,000 entries would hold the loop ~20 ms
                model["content"] = await asyncio.to_thread(listing_models, *args)
            else:
                model["content"] = listing_models(*args)
            model["format"] = "json"
            if listing.truncated:
                prefix = f"{loc.inner}/" if loc.inner else ""
                model["message"] = truncation_message(loc.bucket, prefix, self.listing_limit)
                if self.listing_limit_note:
                    note = self._truncation_note(loc.child(TRUNCATION_NOTE), info, False)
                    model["content"].append(note)
        return model

    async def _s3_dir(self, loc, bucket, info, content):
        prefix = f"{loc.inner}/" if loc.inner else ""
        if not content and loc.inner:
            if not await bucket.folder_exists(prefix):
                raise HTTPError(404, f"No such directory: {loc.api_path}")
            return await self._dir_model(loc, info, None)
        listing = await bucket.list_dir(prefix)
        if loc.inner and not listing.exists:
            raise HTTPError(404, f"No such directory: {loc.api_path}")
        return await self._dir_model(loc, info, listing if content else None)

    # -- save ------------------------------------------------------------------------------------

    async def save(self, model, path=""):
        loc = self.locate(path)
        if not isinstance(model, dict) or "type" not in model:
            raise HTTPError(400, "No file type provided")
        if model["type"] not in ("file", "notebook", "directory"):
            raise HTTPError(400, f"Unhandled contents type: {model['type']!r}")
        if loc.kind == "root":
            raise HTTPError(400, "Cannot save to the root folder itself")
        if loc.kind in ("home", "scratch"):
            self._check_home_name(loc)
            parent = loc.inner.rpartition("/")[0]
            if parent and not await self._posix(loc).dir_exists(parent):  # jupyter-server says 500
                raise HTTPError(404, f"No such directory: {loc.api_path.rpartition('/')[0]}")
            saved = await self._posix(loc).save(model, loc.inner)
            self.emit(data={"action": "save", "path": loc.api_path})
            return self._rebase(saved, loc)
        if loc.is_mount_root:
            raise HTTPError(400, f"Buckets are created by the datalake administrators: {loc.api_path}")
        bucket, info = await self._bucket(loc)
        if not info.writable:
            # refused before any S3 request: a chunked upload fails on its first chunk, not after
            # a part's worth of chunks (discovery decided writability without writing)
            raise HTTPError(403, f"Read-only bucket, cannot write: {loc.api_path}")
        with self._s3_errors(loc.api_path, "write"):
            if model.get("chunk") is not None:
                saved = await self._s3_save_chunk(loc, bucket, info, model)
            else:
                saved = await self._s3_save(loc, bucket, info, model)
        self.emit(data={"action": "save", "path": loc.api_path})
        return saved

    @staticmethod
    def _decode(model: dict[str, Any], path: str) -> bytes:
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

    async def _decode_off_loop(self, model: dict[str, Any], path: str) -> bytes:
        """:meth:`_decode`, in a worker thread for content above ``notebook_thread_threshold``."""
        content = model.get("content")
        if isinstance(content, str) and len(content) > self.notebook_thread_threshold:
            return await asyncio.to_thread(self._decode, model, path)
        return self._decode(model, path)

    @staticmethod
    async def _refuse_file_over_folder(loc: Location, bucket: S3Bucket) -> None:
        """A file saved under a folder's name would be hidden by the folder in every listing
        (home cannot even write it): 400. One ListObjectsV2 of one key, or none when cached."""
        if await bucket.folder_exists(f"{loc.inner}/"):
            raise HTTPError(400, f"A folder of that name exists: {loc.api_path}")

    @staticmethod
    async def _refuse_below_a_file(loc: Location, bucket: S3Bucket) -> None:
        """A key below a file's name (``f.txt/new.txt``) would turn the file into a folder that hides
        it in every listing (home cannot write there; jupyter-server says 500): 400. A missing
        folder is created, as in S3 (differential test RULES: implicit-folders). One ListObjectsV2
        of one key (none when the parent's listing is cached); a HeadObject per missing ancestor."""
        parts = loc.inner.split("/")[:-1]
        if not parts or await bucket.folder_exists("/".join(parts) + "/"):
            return
        for i in range(len(parts), 0, -1):
            if await _object_exists(bucket, "/".join(parts[:i])):
                raise HTTPError(
                    400, f"A file of that name exists: {'/'.join(loc.api_path.split('/')[: i + 1])}"
                )

    async def _s3_save(self, loc, bucket, info, model):
        await self._refuse_below_a_file(loc, bucket)
        self.run_pre_save_hooks(model=model, path=loc.api_path)
        kind = model["type"]
        if kind == "directory":
            if await _object_exists(bucket, loc.inner):  # home refuses a folder over a file too
                raise HTTPError(400, f"A file of that name exists: {loc.api_path}")
            await bucket.make_folder(f"{loc.inner}/")
            return await self._dir_model(loc, info, None)
        await self._refuse_file_over_folder(loc, bucket)
        if kind == "notebook":
            if "content" not in model or not isinstance(model["content"], dict):
                raise HTTPError(400, f"No notebook content provided: {loc.api_path}")
            try:
                size = estimate_size(model["content"])
                data, parsed = await write_notebook(
                    self, model["content"], loc.api_path, size, self.notebook_thread_threshold
                )
            except Exception as e:
                raise HTTPError(400, f"Unreadable notebook content: {loc.api_path} {type_name(e)}") from None
            entry = await bucket.write(loc.inner, data, "application/x-ipynb+json")
            # jupyter-server's rule: one checkpoint always exists for a notebook once saved
            checkpoints = S3Checkpoints(bucket)
            if not await checkpoints.list(loc.inner):
                await checkpoints.create(loc.inner)
            saved = file_model(loc.api_path, entry, info.writable, "notebook")
            if parsed.message:
                saved["message"] = parsed.message
            return saved
        data = await self._decode_off_loop(model, loc.api_path)
        entry = await bucket.write(loc.inner, data, None)
        # the type as the next get sees it (a file saved as "x.ipynb" is a notebook), as in home
        return file_model(loc.api_path, entry, info.writable, guess_type(loc.name))

    async def _s3_save_chunk(self, loc, bucket, info, model):
        chunk = model["chunk"]
        if not isinstance(chunk, int) or chunk == 0 or chunk < -1:
            raise HTTPError(400, f"Invalid chunk number {chunk!r}: {loc.api_path}")
        if model["type"] != "file":
            raise HTTPError(400, f'File type "{model["type"]}" is not supported for large file transfer')
        data = await self._decode_off_loop(model, loc.api_path)
        if chunk == 1:
            await self._refuse_below_a_file(loc, bucket)
            await self._refuse_file_over_folder(loc, bucket)
            self.run_pre_save_hooks(model=model, path=loc.api_path)
        uploads = await self.uploads()
        ident = (loc.bucket, loc.inner)
        if chunk == 1:  # forget the sizes of uploads that were aborted or timed out
            for stale in [k for k in self._chunked_sizes if not uploads.in_progress(*k)]:
                del self._chunked_sizes[stale]
            self._chunked_sizes[ident] = 0
        try:
            done = await uploads.add_chunk(loc.bucket, loc.inner, chunk, data)
        except BaseException:
            self._chunked_sizes.pop(ident, None)
            raise
        finally:
            bucket.invalidate(loc.inner)
        if ident in self._chunked_sizes:
            self._chunked_sizes[ident] += len(data)
        # No request for the model: the object is not in S3 before the last chunk, and after it
        # its size is the sum of the chunks (a HEAD per chunk cost 257 requests for 256 MiB).
        now = datetime.now(timezone.utc)
        if done:
            size = self._chunked_sizes.pop(ident, None)
            entry = ObjectEntry(loc.inner, size or 0, now)
            model = file_model(loc.api_path, entry, info.writable, guess_type(loc.name))
            model["size"] = size
            return model
        model = file_model(loc.api_path, ObjectEntry(loc.inner, 0, now), info.writable, guess_type(loc.name))
        model["size"] = self._chunked_sizes.get(ident)  # the bytes received so far, as in home
        return model

    # -- delete / rename / copy ------------------------------------------------------------------

    async def delete_file(self, path):
        await self.delete(path)

    async def rename_file(self, old_path, new_path):
        await self.rename(old_path, new_path)

    async def delete(self, path):
        loc = self.locate(path)
        if loc.is_mount_root:
            raise HTTPError(400, f"Cannot delete a datalake mount: {loc.api_path or '/'}")
        if loc.kind in ("home", "scratch"):
            self._check_home_name(loc)
            with self._below_a_file(loc):
                await self._posix(loc).delete(loc.inner)
        else:
            bucket, _ = await self._bucket(loc)
            with self._s3_errors(loc.api_path, "delete"):
                await self._s3_delete(loc, bucket)
        self.emit(data={"action": "delete", "path": loc.api_path})

    async def _s3_delete(self, loc: Location, bucket: S3Bucket) -> None:
        checkpoints = S3Checkpoints(bucket)
        try:
            await bucket.head(loc.inner)
        except FileNotFoundError:
            pass
        else:
            await bucket.delete_keys([loc.inner])
            await self._best_effort(checkpoints.delete_all(loc.inner), loc)
            return
        prefix = f"{loc.inner}/"
        entries = await bucket.list_tree(prefix)
        if not entries:
            raise HTTPError(404, f"No such file or directory: {loc.api_path}")
        if not self.recursive_bucket_delete:
            tree = await S3Side(bucket, loc.inner).scan()
            if tree is not None and tree.files:
                raise HTTPError(400, f"Directory not empty: {loc.api_path}")
        await bucket.delete_keys([e.key for e in entries])
        await self._best_effort(checkpoints.delete_all(prefix, folder=True), loc)

    async def _best_effort(self, coro, loc: Location) -> None:
        try:
            await coro
        except Exception as e:
            self.log.warning("Checkpoint housekeeping failed for %s: %s", loc.api_path, type(e).__name__)

    def _side(self, loc: Location, bucket: S3Bucket | None):
        if loc.kind in ("home", "scratch"):
            return PosixSide(self._posix(loc), loc.inner)
        return S3Side(bucket, loc.inner)

    async def _transfer(self, src: Location, dst: Location, move: bool) -> None:
        src_bucket = None
        if src.kind == "bucket":
            src_bucket, src_info = await self._bucket(src)
            if move and not src_info.writable:
                raise HTTPError(
                    403, f"Read-only bucket, cannot move out of it (copy instead): {src.api_path}"
                )
        dst_bucket = (await self._bucket(dst))[0] if dst.kind == "bucket" else None
        action = "move" if move else "copy"
        if dst.kind in ("home", "scratch") and dst.inner:
            parent = dst.inner.rpartition("/")[0]
            if parent and not await self._posix(dst).dir_exists(parent):
                raise HTTPError(404, f"No such parent directory: {dst.api_path}")
        with self._s3_errors(src.api_path, action):
            try:
                tree = await transfer(
                    self._side(src, src_bucket),
                    self._side(dst, dst_bucket),
                    move=move,
                    concurrency=self.transfer_concurrency,
                    inline_limit=self.transfer_inline_limit,
                    # within one bucket they follow below (server-side copies of the whole prefix)
                    checkpoints=move and not (dst_bucket is not None and dst.bucket == src.bucket),
                    log=self.log,
                )
            except FileNotFoundError:
                raise HTTPError(404, f"No such file or directory: {src.api_path}") from None
            except SourceNotRemoved as e:
                status = to_http_error(e.cause, src.api_path, "delete", self.log).status_code
                raise HTTPError(
                    status,
                    f"Copied to {dst.api_path}, but the source could not be removed: {src.api_path}",
                ) from None
            except SourceChanged as e:
                shown = ", ".join(repr(k) for k in e.kept[:5]) + (", ..." if len(e.kept) > 5 else "")
                raise HTTPError(
                    409,
                    f"Copied to {dst.api_path}, but {len(e.kept)} source file(s) changed during the "
                    f"move and were kept in {src.api_path}: {shown}",
                ) from None
            except HTTPError as e:
                if e.status_code == 409 and e.log_message == "Destination already exists":
                    raise HTTPError(409, f"Destination already exists: {dst.api_path}") from None
                raise
        if move and src_bucket is not None:
            folder = tree.kind == "directory"
            old = f"{src.inner}/" if folder else src.inner
            if dst_bucket is not None and dst.bucket == src.bucket:
                new = f"{dst.inner}/" if folder else dst.inner
                await self._best_effort(S3Checkpoints(src_bucket).move_all(old, new, folder), src)
            else:
                await self._best_effort(S3Checkpoints(src_bucket).delete_all(old, folder), src)

    async def rename(self, old_path, new_path):
        src, dst = self.locate(old_path), self.locate(new_path)
        if src.is_mount_root:
            raise HTTPError(400, f"Cannot rename a datalake mount: {src.api_path or '/'}")
        if dst.is_mount_root:
            raise HTTPError(409, f"Destination is a datalake mount: {dst.api_path or '/'}")
        self._check_home_name(dst)
        if src.api_path == dst.api_path:
            return
        if dst.api_path.startswith(src.api_path + "/"):
            raise HTTPError(400, f"Cannot move a folder into itself: {dst.api_path}")
        if dst.kind in ("home", "scratch"):
            parent = dst.inner.rpartition("/")[0]
            if parent and not await self._posix(dst).dir_exists(parent):  # jupyter-server says 500
                raise HTTPError(404, f"No such directory: {dst.api_path.rpartition('/')[0]}")
        else:
            await self._refuse_below_a_file(dst, (await self._bucket(dst))[0])
        if src.same_mount(dst) and src.kind in ("home", "scratch"):
            with self._below_a_file(src):
                await self._posix(src).rename(src.inner, dst.inner)
        else:
            await self._transfer(src, dst, move=True)
        self.emit(data={"action": "rename", "path": dst.api_path, "source_path": src.api_path})

    async def increment_filename(self, filename, path="", insert=""):
        """jupyter-server's naming, but a bucket folder is listed once (never from the cache)
        instead of two requests per name tried: the n-th copy of a file cost 2n requests, seconds
        once a folder held dozens of copies. A folder listed only in part asks name by name."""
        loc = self.locate(path)
        if loc.kind != "bucket":
            return await super().increment_filename(filename, path, insert)
        bucket, _ = await self._bucket(loc)
        with self._s3_errors(loc.api_path, "read"):
            listing = await bucket.list_dir(f"{loc.inner}/" if loc.inner else "", use_cache=False)
        if listing.truncated:
            return await super().increment_filename(filename, path, insert)
        taken = {e.name for e in listing.files} | set(listing.folders)
        # upstream's own loop, asking ``taken`` instead of S3 (it only calls ``exists``)
        return await AsyncContentsManager.increment_filename(_Taken(taken), filename, path, insert)

    async def copy(self, from_path, to_path=None):
        src = self.locate(from_path)
        if src.is_mount_root:
            raise HTTPError(400, f"Cannot copy a datalake mount: {src.api_path or '/'}")
        from_dir, _, from_name = src.api_path.rpartition("/")
        to_path = from_dir if to_path is None else self.locate(to_path).api_path
        if await self.dir_exists(to_path):
            name = copy_pat.sub(".", from_name)
            to_name = await self.increment_filename(name, to_path, insert="-Copy")
            to_path = f"{to_path}/{to_name}" if to_path else to_name
        else:
            parent = to_path.rpartition("/")[0]
            if not await self.dir_exists(parent):
                raise HTTPError(404, f"No such parent directory: {parent} to copy file in")
        dst = self.locate(to_path)
        if dst.is_mount_root:
            raise HTTPError(409, f"Destination is a datalake mount: {dst.api_path}")
        if dst.api_path.startswith(src.api_path + "/"):  # as `cp -r a a/b`; jupyter-server: 500
            raise HTTPError(400, f"Cannot copy a folder into itself: {dst.api_path}")
        self._check_home_name(dst)
        await self._transfer(src, dst, move=False)
        self.emit(data={"action": "copy", "path": dst.api_path, "source_path": src.api_path})
        model = await self.get(dst.api_path, content=False)
        # jupyter-server copies a notebook by saving it, and a saved notebook gets its first checkpoint
        if model["type"] == "notebook" and not await self.list_checkpoints(dst.api_path):
            await self.create_checkpoint(dst.api_path)
        return model

    # -- checkpoints -----------------------------------------------------------------------------

    async def _checkpoint_call(self, path: str, posix_call, s3_call):
        loc = self.locate(path)
        if loc.is_mount_root:
            raise HTTPError(400, f"No checkpoints for a folder: {loc.api_path or '/'}")
        if loc.kind in ("home", "scratch"):
            posix = self._posix(loc)
            if not await posix.file_exists(loc.inner):  # jupyter-server answers 500 for a missing file
                raise HTTPError(404, f"No such file: {loc.api_path}")
            try:
                return await posix_call(posix, loc.inner)
            except FileNotFoundError:
                raise HTTPError(404, f"No such file or checkpoint: {loc.api_path}") from None
        bucket, _ = await self._bucket(loc)
        with self._s3_errors(loc.api_path, "checkpoint"):
            try:
                return await s3_call(S3Checkpoints(bucket), loc.inner)
            except FileNotFoundError:
                raise HTTPError(404, f"No such file or checkpoint: {loc.api_path}") from None

    async def create_checkpoint(self, path):
        return await self._checkpoint_call(
            path, lambda m, p: m.create_checkpoint(p), lambda c, k: c.create(k)
        )

    async def list_checkpoints(self, path):
        return await self._checkpoint_call(path, lambda m, p: m.list_checkpoints(p), lambda c, k: c.list(k))

    async def restore_checkpoint(self, checkpoint_id, path):
        async def posix_restore(posix: PosixRoot, inner: str) -> None:
            # jupyter-server's copy finds no checkpoint "not writable": a PermissionError, a 500
            if checkpoint_id not in [c["id"] for c in await posix.list_checkpoints(inner)]:
                raise FileNotFoundError(checkpoint_id)
            await posix.restore_checkpoint(checkpoint_id, inner)

        return await self._checkpoint_call(path, posix_restore, lambda c, k: c.restore(k, checkpoint_id))

    async def delete_checkpoint(self, checkpoint_id, path):
        return await self._checkpoint_call(
            path,
            lambda m, p: m.delete_checkpoint(checkpoint_id, p),
            lambda c, k: c.delete(k, checkpoint_id),
        )

    # -- kernels ---------------------------------------------------------------------------------

    async def get_kernel_path(self, path, model=None):
        """Where a kernel for ``path`` starts, as a path the kernel manager joins to home.

        Home notebooks start in their folder, scratch notebooks in theirs (a relative path from
        home, which the kernel manager normalizes), bucket notebooks in ``bucket_kernel_dir``.
        """
        loc = self.locate(path)
        if loc.kind == "home":
            return await self.home.get_kernel_path(loc.inner)
        if loc.kind == "scratch":
            folder = await self.scratch.get_kernel_path(loc.inner)
            return os.path.relpath(self.scratch.os_path(folder), os.path.abspath(self.root_dir))
        return self.bucket_kernel_dir


class _Taken:
    """The names of one listed folder, as the ``exists`` that ``increment_filename`` asks."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    async def exists(self, path: str) -> bool:
        return path.rpartition("/")[2] in self.names


async def _object_exists(bucket: S3Bucket, key: str) -> bool:
    try:
        await bucket.head(key)
        return True
    except FileNotFoundError:
        return False


def _b64encode(data: bytes) -> str:
    """Base64 exactly as jupyter-server's file manager writes it (lines of 76 characters)."""
    return base64.encodebytes(data).decode("ascii")


def type_name(e: BaseException) -> str:
    return type(e).__name__
