"""``DatalakeContentsManager``: home, scratch and every datalake bucket in one file browser.

A thin router. It splits an API path into a mount and a path inside it (``paths.PathRouter``),
picks the mount (``mounts/``: ``PosixMount`` for home and scratch, one ``BucketMount`` per bucket)
and delegates. What it owns itself: the virtual root listing, the rules every mount shares (a
mount's own folder cannot be written, deleted or moved; a move asks the destination mount whether
its folder can hold the name, ``Mount.check_parent``), and moves and copies between mounts
(``mounts/moves.py`` on the ``transfer`` engine).
Checkpoints go through ``checkpoints_class`` (``mounts/checkpoints.DatalakeCheckpoints``) and
jupyter-server's own ``delete``/``rename`` template methods.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from jupyter_server.services.contents.manager import AsyncContentsManager, copy_pat
from tornado.web import HTTPError
from traitlets import Bool, Float, Int, List, Unicode, default

from .discovery import DISCOVERY_TTL, BucketDiscovery, BucketInfo
from .mounts.base import Mount, dotted
from .mounts.bucket import BucketMount
from .mounts.checkpoints import DatalakeCheckpoints
from .mounts.moves import move_or_copy
from .mounts.posix import PosixMount
from .notebooks import THREAD_THRESHOLD
from .paths import SCRATCH_NAME, Location, PathRouter
from .posix import PosixRoot
from .s3.backend import S3Bucket
from .s3.client import S3Settings
from .s3.connection import S3Connection
from .s3.models import EPOCH, TRUNCATION_NOTE, directory_model
from .s3.threaded import COPY_THREADS, LIST_THREADS
from .s3.uploads import IDLE_TIMEOUT, PART_SIZE
from .transfer import INLINE_LIMIT
from .user_buckets import UserBucketList
from .user_buckets import default_path as default_user_buckets_path


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
    s3_connect_timeout = Float(
        S3Settings.connect_timeout, config=True, help="Seconds to wait for a connection to S3."
    )
    s3_read_timeout = Float(S3Settings.read_timeout, config=True, help="Seconds to wait for an S3 response.")
    s3_max_attempts = Int(
        S3Settings.max_attempts, config=True, help="Attempts per S3 request before it is reported as failed."
    )
    s3_list_threads = Int(
        LIST_THREADS,
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
        THREAD_THRESHOLD,
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
            return float(_env("VALERIA_BUCKET_CACHE_TTL", str(DISCOVERY_TTL)))
        except ValueError:
            return DISCOVERY_TTL

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
    transfer_concurrency = Int(
        8,
        config=True,
        help="Files copied at once in folder moves and copies that carry data through the server "
        "(between disk and S3): each holds up to transfer_inline_limit bytes in memory.",
    )
    server_copy_concurrency = Int(
        COPY_THREADS,
        config=True,
        help="Objects copied at once in folder moves and copies within the S3 endpoint: server-side "
        "CopyObject calls, made by as many worker threads (no data through the server). On Ceph RGW a "
        "1,000-object rename took 9.8 s at 8 at once and 5.5 s at 32 (bench/folder_rename.py).",
    )
    transfer_inline_limit = Int(
        INLINE_LIMIT,
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
    upload_part_size = Int(PART_SIZE, config=True, help="Part size of chunked uploads into buckets.")
    upload_idle_timeout = Float(
        IDLE_TIMEOUT,
        config=True,
        help="Seconds after which an unfinished chunked upload into a bucket is aborted.",
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

    @default("checkpoints_class")
    def _default_checkpoints_class(self) -> type:
        return DatalakeCheckpoints

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        scratch = self.scratch_dir and os.path.isdir(self.scratch_dir)
        self.router = PathRouter(self.bucket_prefix, bool(scratch))
        # one notary for every mount: a notebook trusted in home stays trusted once copied to a bucket
        # (with an in-memory signature store, each manager would otherwise have its own)
        posix = {"parent": self, "log": self.log, "notary": self.notary}
        self.home = PosixMount(
            "home", PosixRoot(root_dir=self.root_dir, **posix), reserved=self.router.is_reserved_top_name
        )
        self.scratch = (
            PosixMount("scratch", PosixRoot(root_dir=self.scratch_dir, **posix), SCRATCH_NAME, self.root_dir)
            if scratch
            else None
        )
        self.s3 = S3Connection(self.s3_settings, self)
        self.user_buckets = UserBucketList(self.user_buckets_file)
        self.discovery = BucketDiscovery(
            self.s3.filesystem,
            self.shared_buckets,
            self.bucket_cache_ttl,
            log=self.log,
            user_shared=self.user_buckets.names,
        )
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
            connect_timeout=self.s3_connect_timeout,
            read_timeout=self.s3_read_timeout,
            max_attempts=self.s3_max_attempts,
        )

    async def close(self) -> None:
        """Abort pending uploads' timers and close the S3 connection pool."""
        await self.s3.close()

    # -- routing ---------------------------------------------------------------------------------

    def locate(self, path: str) -> Location:
        return self.router.locate(path)

    async def mount_at(self, path: str) -> tuple[Mount | None, Location]:
        """The mount ``path`` falls in (None for the virtual root), and where in it; a 4xx/503
        for a bucket that does not exist or cannot be reached."""
        loc = self.locate(path)
        return await self._mount(loc), loc

    async def _mount(self, loc: Location) -> Mount | None:
        if loc.kind == "root":
            return None
        if loc.kind == "home":
            return self.home
        if loc.kind == "scratch":
            return self.scratch
        return await self._bucket_mount(loc)

    async def _mount_if_visible(self, loc: Location) -> Mount | None:
        """The mount of ``loc``, or None when it is a bucket this user does not have."""
        try:
            return await self._mount(loc)
        except HTTPError as e:
            if e.status_code == 404:
                return None
            raise

    async def _bucket_mount(self, loc: Location) -> BucketMount:
        """The mount of ``loc``'s bucket, or a 404/403/503 if it is not usable."""
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
        limit = self.listing_limit if self.listing_limit > 0 else None
        bucket = S3Bucket(
            await self.s3.filesystem(),
            loc.bucket,
            self.s3.listings,
            self.log,
            threaded=self.s3.threaded(),
            listing_limit=limit,
        )
        folder = self.router.bucket_folder(loc.bucket)
        return BucketMount(bucket, info, folder, self._bucket_time(info), self.s3, self)

    def _bucket_time(self, info: BucketInfo) -> datetime:
        """The date shown for a bucket's folders: its ``CreationDate`` from ListBuckets when known.

        A bucket known only from the shared list (Ceph RGW and AWS list owned buckets only) has
        none: it shows when this server first found it, which stays the same for the server's
        life. Never 1970 (JupyterLab showed "56 years ago").
        """
        if info.created > EPOCH:
            return info.created
        return self._first_seen.setdefault(info.name, datetime.now(timezone.utc))

    # -- the rules every mount shares ------------------------------------------------------------

    @staticmethod
    def _refuse_mount_root(loc: Location, action: str, status: int = 400) -> None:
        if loc.is_mount_root:
            raise HTTPError(status, f"Cannot {action} a datalake mount: {loc.api_path or '/'}")

    # -- existence -------------------------------------------------------------------------------

    async def dir_exists(self, path: str) -> bool:
        loc = self.locate(path)
        if loc.kind == "root":
            return True
        mount = await self._mount_if_visible(loc)
        return mount is not None and await mount.dir_exists(loc.inner)

    async def file_exists(self, path: str = "") -> bool:
        loc = self.locate(path)
        if loc.is_mount_root:
            return False
        mount = await self._mount_if_visible(loc)
        return mount is not None and await mount.file_exists(loc.inner)

    async def is_hidden(self, path: str) -> bool:
        loc = self.locate(path)
        try:
            mount = await self._mount(loc)
        except HTTPError:  # a bucket not reachable: hidden by name; the operation itself says why
            mount = None
        return await mount.is_hidden(loc.inner) if mount is not None else dotted(loc.inner)

    # -- get / save ------------------------------------------------------------------------------

    async def get(self, path, content=True, type=None, format=None, require_hash=False):
        loc = self.locate(path)
        if type not in (None, "directory", "file", "notebook"):
            raise HTTPError(400, f"Unknown type {type!r}: {loc.api_path}")
        if format not in (None, "text", "base64", "json"):
            raise HTTPError(400, f"Unknown format {format!r}: {loc.api_path}")
        mount = await self._mount(loc)
        if mount is None:
            return await self._root_model(content, type)
        return await mount.get(
            loc.inner, content=content, type=type, format=format, require_hash=require_hash
        )

    async def _root_model(self, content: bool, type: str | None) -> dict[str, Any]:
        """Home's listing without the names a mount shadows, then scratch and every bucket."""
        if type not in (None, "directory"):
            raise HTTPError(400, "The root is a directory")
        model = await self.home.get("", content=content, type="directory")
        if not content:
            return model
        entries = [m for m in model["content"] if not self.router.is_reserved_top_name(m["name"])]
        if self.scratch is not None:
            entries.append(await self.scratch.get("", content=False, type="directory"))
        found = await self.discovery.get()
        for name, info in sorted(found.buckets.items()):
            folder = self.router.bucket_folder(name)
            entries.append(directory_model(folder, info.writable, self._bucket_time(info)))
        model["content"] = entries
        return model

    async def save(self, model, path=""):
        loc = self.locate(path)
        if not isinstance(model, dict) or "type" not in model:
            raise HTTPError(400, "No file type provided")
        if model["type"] not in ("file", "notebook", "directory"):
            raise HTTPError(400, f"Unhandled contents type: {model['type']!r}")
        self._refuse_mount_root(loc, "save over")
        mount = await self._mount(loc)
        mount.check_name(loc.inner)
        saved = await mount.save(model, loc.inner)  # the mount checks the parent folder
        self.emit(data={"action": "save", "path": loc.api_path})
        return saved

    # -- delete / rename / copy: jupyter-server's delete() and rename() call these ---------------

    async def delete_file(self, path):
        loc = self.locate(path)
        self._refuse_mount_root(loc, "delete")
        mount = await self._mount(loc)
        mount.check_name(loc.inner)
        await mount.delete(loc.inner)

    async def rename_file(self, old_path, new_path):
        src, dst = self.locate(old_path), self.locate(new_path)
        self._refuse_mount_root(src, "rename")
        self._refuse_mount_root(dst, "move onto", 409)
        dst_mount = await self._mount(dst)
        dst_mount.check_name(dst.inner)
        if src.api_path == dst.api_path:
            return
        if dst.api_path.startswith(src.api_path + "/"):
            raise HTTPError(400, f"Cannot move a folder into itself: {dst.api_path}")
        await dst_mount.check_parent(dst.inner)
        src_mount = await self._mount(src)
        if src.same_mount(dst):
            await src_mount.rename(src.inner, dst.inner)
        else:
            await move_or_copy(src_mount, src.inner, dst_mount, dst.inner, move=True, config=self)

    async def increment_filename(self, filename, path="", insert=""):
        """jupyter-server's naming, asking the mount for the folder's names at once when it can
        (a bucket: one listing instead of two requests per name tried)."""
        mount, loc = await self.mount_at(path)
        taken = await mount.taken_names(loc.inner) if mount is not None else None
        if taken is None:
            return await super().increment_filename(filename, path, insert)
        # upstream's own loop, asking ``taken`` instead of the storage (it only calls ``exists``)
        return await AsyncContentsManager.increment_filename(_Taken(taken), filename, path, insert)

    async def copy(self, from_path, to_path=None):
        src = self.locate(from_path)
        self._refuse_mount_root(src, "copy")
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
        self._refuse_mount_root(dst, "copy onto", 409)
        if dst.api_path.startswith(src.api_path + "/"):  # as `cp -r a a/b`; jupyter-server: 500
            raise HTTPError(400, f"Cannot copy a folder into itself: {dst.api_path}")
        dst_mount = await self._mount(dst)
        dst_mount.check_name(dst.inner)
        await move_or_copy(await self._mount(src), src.inner, dst_mount, dst.inner, move=False, config=self)
        self.emit(data={"action": "copy", "path": dst.api_path, "source_path": src.api_path})
        model = await self.get(dst.api_path, content=False)
        # jupyter-server copies a notebook by saving it, and a saved notebook gets its first checkpoint
        if model["type"] == "notebook" and not await self.list_checkpoints(dst.api_path):
            await self.create_checkpoint(dst.api_path)
        return model

    # -- kernels ---------------------------------------------------------------------------------

    async def get_kernel_path(self, path, model=None):
        """Where a kernel for ``path`` starts, as a path the kernel manager joins to home.

        Home notebooks start in their folder, scratch notebooks in theirs (a relative path from
        home, which the kernel manager normalizes), bucket notebooks in ``bucket_kernel_dir``.
        """
        loc = self.locate(path)
        if loc.kind == "bucket":  # no S3 request to start a kernel
            return self.bucket_kernel_dir
        mount = await self._mount(loc)
        return await mount.kernel_path(loc.inner) if mount is not None else ""


class _Taken:
    """The names of one listed folder, as the ``exists`` that ``increment_filename`` asks."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    async def exists(self, path: str) -> bool:
        return path.rpartition("/")[2] in self.names
