"""Process-wide runtime setup, in one place: what the process entry points (``causality-sidecar
run``/``demo``/``webhook``, bench/proxy_only.py) do, never a library function or a test's
embedded sidecar.

Before the event loop starts (`run`): glibc's allocator thresholds pinned
(`pin_malloc_thresholds`) and the event loop chosen (uvloop when installed,
`loop_factory`). Once the sidecar has started (`tune`): ``gc.freeze()``, a larger first
generation (`GEN0_THRESHOLD`) and a 0.5 ms GIL switch interval. Why each, and what it
measured: docs/proxy.md and docs/tail-latency.md.
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
