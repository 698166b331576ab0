"""``valeria_datalake.here()``: the folder of the running notebook, as code in it can open it.

For a notebook in a bucket that is ``s3://bucket/folder/`` (the kernel runs in home: a bucket is
no folder on disk); for one in home or scratch, the real local folder. The server tells the kernel
its notebook in ``VALERIA_NOTEBOOK`` (``sessions.py``), because ``JPY_SESSION_NAME`` is the
notebook's name joined to the nearest existing local folder, which for a bucket notebook is home.
A notebook renamed or moved after its kernel started keeps the old folder until the kernel restarts.
This module runs inside kernels: it imports nothing beyond the standard library.
"""

from __future__ import annotations

import os


def here(name: str = "") -> str:
    """The running notebook's folder (``s3://bucket/folder/`` or a local path), joined to ``name``."""
    where = os.environ.get("VALERIA_NOTEBOOK", "")
    if where.startswith("s3://"):
        return where.rsplit("/", 1)[0] + "/" + name
    if not where:
        where = os.environ.get("JPY_SESSION_NAME", "")
    folder = os.path.dirname(where) if where else os.getcwd()
    return os.path.join(folder, name) if name else folder
