"""Process-wide runtime setup, in one place: what the process entry points (``causality-sidecar
run``/``demo``/``webhook``, bench/proxy_only.py) do, never a library function or a test's
embedded sidecar.

Before the event loop starts (`run`):

- glibc's allocator thresholds pinned (`pin_malloc_thresholds`): untuned, 1 MiB bodies
  flip at random into a mode with hundreds of minor page faults per request and half the
  throughput, because glibc hands the large read buffers back to the kernel and faults
  fresh pages in on the next request. An mmap threshold of 4 MiB and a trim threshold of
  64 MiB (what ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` do) remove that mode.
- The event loop: uvloop when it is installed, else asyncio's own (`loop_factory`).

Once the sidecar has started (`tune`):

- ``gc.freeze()``: everything that exists once the listeners are bound (modules, config,
  aiohttp apps, the OpenTelemetry SDK: ~10^5 objects) goes to the permanent generation,
  so no later full collection walks it again; the proxy's p99 at one connection is where
  those collections showed.
- A larger first generation (`GEN0_THRESHOLD` container allocations instead of 700):
  fewer young collections per request, each still small.
- A 0.5 ms GIL switch interval (CPython's default is 5 ms): a ``/metrics`` render runs in
  a worker thread (`sidecar.offloop`), and the event loop waits up to one interval for
  the GIL every time it wakes for a request while a render runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "GEN0_THRESHOLD",
    "MMAP_THRESHOLD_BYTES",
    "SWITCH_INTERVAL_S",
    "TRIM_THRESHOLD_BYTES",
    "Tuned",
    "loop_factory",
    "pin_malloc_thresholds",
    "run",
    "tune",
]

log = logging.getLogger(__name__)

GEN0_THRESHOLD = 10_000
SWITCH_INTERVAL_S = 0.0005
M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 * 2**20
TRIM_THRESHOLD_BYTES = 64 * 2**20

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def pin_malloc_thresholds() -> bool:
    """Set glibc's mmap and trim thresholds; False when not on glibc (nothing changed)."""
    try:
        # the process's own symbols include libc's: no find_library (which runs ldconfig
        # or a compiler in a subprocess, absent from the slim image)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    ok = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and ok
    log.debug("glibc malloc thresholds pinned: %s", ok)
    return ok


def loop_factory(uvloop: bool = True) -> LoopFactory | None:
    """uvloop's loop when it is installed (and `uvloop`), else None: asyncio's default."""
    if not uvloop:
        return None
    try:
        import uvloop as module
    except ImportError:
        return None
    factory: LoopFactory = module.new_event_loop
    return factory


def run(main: Callable[[], Coroutine[Any, Any, T]], *, uvloop: bool = True) -> T:
    """Pin the allocator thresholds (before large body buffers exist), then run ``main()``
    to its end on the chosen event loop."""
    pin_malloc_thresholds()
    with asyncio.Runner(loop_factory=loop_factory(uvloop)) as runner:
        return runner.run(main())


@dataclass(frozen=True, slots=True)
class Tuned:
    """What `tune` set, and what was in effect before."""

    frozen_objects: int
    thresholds_before: tuple[int, int, int]
    switch_interval_before: float


def tune() -> Tuned:
    """Freeze the objects alive now, raise the gen-0 threshold, shorten the GIL interval."""
    before = gc.get_threshold()
    interval = sys.getswitchinterval()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, before[1], before[2])
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return Tuned(gc.get_freeze_count(), before, interval)
