"""`sidecar.runtime`'s set-up before the loop: allocator thresholds and the loop choice,
checked in fresh interpreters (both are process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sidecar.runtime import MMAP_THRESHOLD_BYTES

SCRIPT = """
import asyncio, ctypes, sys
from sidecar import runtime

class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
if sys.argv[1] == "pin":
    assert runtime.pin_malloc_thresholds()
before = libc.mallinfo2().hblks
block = libc.malloc(1024 * 1024)  # 1 MiB: mmap'd by default (threshold 128 KiB)
mapped = libc.mallinfo2().hblks - before
libc.free(ctypes.c_void_p(block))

async def which() -> str:
    return type(asyncio.get_running_loop()).__module__

print(mapped, runtime.run(which, uvloop=sys.argv[2] == "uvloop"))
"""


@pytest.mark.parametrize(
    ("pin", "loop", "mapped", "module"),
    [
        ("pin", "uvloop", "0", "uvloop"),
        ("no-pin", "uvloop", "1", "uvloop"),
        ("pin", "asyncio", "0", "asyncio.unix_events"),
    ],
    ids=["pinned-uvloop", "default-allocator", "asyncio-loop"],
)
def test_allocator_thresholds_and_loop_choice(
    pin: str, loop: str, mapped: str, module: str
) -> None:
    """Pinned, a 1 MiB block (under the `MMAP_THRESHOLD_BYTES` of 4 MiB) comes from the
    heap, not from its own mmap; `run` runs on uvloop unless told not to."""
    assert MMAP_THRESHOLD_BYTES > 2**20
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, pin, loop],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [mapped, module]
