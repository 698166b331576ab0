"""How long an asyncio event loop was blocked: a task that sleeps ``interval`` and records how late
it woke up.

A loop that runs a blocking call (a synchronous S3 request, hashing a big buffer...) cannot wake
the task on time; the lateness is the stall every other coroutine of that server (kernels'
websockets, other tabs) suffered. On a busy machine a process that is simply not scheduled is late
too, so the monitor also records the CPU time the loop's thread used while the task was late
(``max_busy``): that part is work done on the loop, whatever the machine's load.

Used by the benchmark inside each notebook server under test
(``bench/``), and usable in tests (which assert the monitor's own behaviour, never a duration of
the code under test).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from typing_extensions import Self


@dataclass
class StallReport:
    """What the monitor saw since its last reset (seconds)."""

    max_stall: float = 0.0
    max_busy: float = 0.0
    samples: int = 0
    over_10ms: int = 0
    over_50ms: int = 0
    total_stall: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_stall_ms": round(self.max_stall * 1000, 2),
            "max_busy_ms": round(self.max_busy * 1000, 2),
            "samples": self.samples,
            "over_10ms": self.over_10ms,
            "over_50ms": self.over_50ms,
            "total_stall_ms": round(self.total_stall * 1000, 1),
            "window_s": round(time.monotonic() - self.started, 3),
        }


class LoopStallMonitor:
    """Measure the event loop's longest stall.

    ``start()`` on the loop to watch (from a coroutine or a callback running on it),
    ``report()``/``reset()`` at any time, ``stop()`` at the end. Also an async context manager.
    Lateness under ``interval`` is scheduler noise; what exceeds it is counted as a stall.
    """

    def __init__(self, interval: float = 0.001) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self._report = StallReport()
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> Self:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def stop(self) -> StallReport:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        return self._report

    def reset(self) -> StallReport:
        """Start a new measurement window; returns the finished one."""
        finished, self._report = self._report, StallReport()
        return finished

    def report(self) -> StallReport:
        return self._report

    async def _watch(self) -> None:
        clock, cpu = time.perf_counter, time.thread_time
        while True:
            before, cpu_before = clock(), cpu()
            await asyncio.sleep(self.interval)
            late = clock() - before - self.interval
            busy = cpu() - cpu_before
            r = self._report
            r.samples += 1
            if busy > r.max_busy:
                r.max_busy = busy
            if late > 0:
                r.total_stall += late
                if late > r.max_stall:
                    r.max_stall = late
                if late > 0.010:
                    r.over_10ms += 1
                if late > 0.050:
                    r.over_50ms += 1

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
