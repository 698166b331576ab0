"""``/api/valeria/datalake``: what the JupyterLab extension needs to know about the buckets.

* ``GET /api/valeria/datalake``: the folder prefix, every visible bucket (folder name, bucket
  name, writable, where it comes from: ``own``, ``admin`` or ``user``), the user's own shared-bucket
  list with whether each is readable now, and discovery's error if S3 could not be asked. The
  answer comes from the contents manager's own discovery (the same cache), never a credential.
* ``POST /api/valeria/datalake/shared-buckets`` with ``{"bucket": name}``: check the name, probe
  the bucket with the user's own keys (read, then write, as discovery does) and, if readable, add
  it to the user's list (``user_buckets.py``), so it shows as ``datalake_<bucket>`` from now on.
  A bad name is a 400, a bucket the user cannot read a 404; either way nothing changes.
* ``DELETE /api/valeria/datalake/shared-buckets/<name>``: remove it from the user's list.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from .paths import is_bucket_name

#: jupyter-server's permission the endpoint needs: it describes and changes what the file browser shows
AUTH_RESOURCE = "contents"


class _DatalakeHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def datalake(self) -> Any:
        cm = self.contents_manager
        if getattr(cm, "discovery", None) is None or getattr(cm, "user_buckets", None) is None:
            raise web.HTTPError(404, "The datalake contents manager is not active on this server")
        return cm


class DatalakeStateHandler(_DatalakeHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        cm = self.datalake
        found = await cm.discovery.get()
        mine = await cm.user_buckets.names()
        admin = set(cm.discovery.shared)

        def source(name: str, owned: bool) -> str:
            if owned:
                return "own"
            return "admin" if name in admin else "user" if name in mine else "own"

        buckets = [
            {
                "bucket": name,
                "folder": cm.router.bucket_folder(name),
                "writable": info.writable,
                "source": source(name, info.owned),
            }
            for name, info in sorted(found.buckets.items())
        ]
        user = [{"bucket": n, "readable": n in found.buckets} for n in mine]
        error = found.error.log_message if found.error is not None else None
        self.finish(
            json.dumps({"prefix": cm.bucket_prefix, "buckets": buckets, "user_buckets": user, "error": error})
        )


class SharedBucketsHandler(_DatalakeHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        cm = self.datalake
        try:
            name = json.loads(self.request.body or b"{}").get("bucket", "")
        except (ValueError, AttributeError):
            raise web.HTTPError(400, 'The body must be JSON: {"bucket": "<name>"}') from None
        name = name.strip() if isinstance(name, str) else ""
        if not is_bucket_name(name):
            raise web.HTTPError(
                400,
                f"Not a valid bucket name: {name[:80]!r} (3 to 255 letters, digits, '.', '-' or '_', "
                "starting with a letter or digit)",
            )
        found = await cm.discovery.get()
        if name in found.buckets:
            self.finish(
                json.dumps(
                    {
                        "bucket": name,
                        "added": False,
                        "message": f"Already in your datalake: {cm.router.bucket_folder(name)}",
                    }
                )
            )
            return
        info = await cm.discovery.probe(name)
        if info is None:
            raise web.HTTPError(404, f"No such bucket, or your credentials cannot read it: {name}")
        await cm.user_buckets.add(name)
        cm.discovery.invalidate()
        self.set_status(201)
        self.finish(
            json.dumps(
                {
                    "bucket": name,
                    "added": True,
                    "folder": cm.router.bucket_folder(name),
                    "writable": info.writable,
                }
            )
        )

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        cm = self.datalake
        if not await cm.user_buckets.remove(name):
            raise web.HTTPError(404, f"Not in your shared-bucket list: {name[:255]}")
        cm.discovery.invalidate()
        self.set_status(204)
        self.finish()


#: (pattern, handler) pairs, below the server's base URL
HANDLERS = [
    (r"/api/valeria/datalake", DatalakeStateHandler),
    (r"/api/valeria/datalake/shared-buckets", SharedBucketsHandler),
    (r"/api/valeria/datalake/shared-buckets/([^/]+)", SharedBucketsHandler),
]
