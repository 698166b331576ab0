"""Keep full garbage collections short, since they stall the event loop from any thread.

A full (generation 2) collection walks every tracked object while holding the GIL. A notebook
server with jupyter-server, JupyterLab and two S3 clients (botocore's service models) tracks
~300,000 objects: one full collection took ~140 ms here, and building a 10,000-entry listing
allocates enough to trigger one, even when the listing is made in a worker thread. Objects alive
once the server is set up live as long as the server; ``gc.freeze()`` moves them to the permanent
generation, which collections skip, so a full collection only walks what was made since.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup_heap() -> int:
    """``gc.freeze()`` once per process; returns how many objects were frozen (0 if already done)."""
    global _frozen
    if _frozen:
        return 0
    _frozen = True
    gc.freeze()
    return gc.get_freeze_count()
