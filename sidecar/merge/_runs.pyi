"""Types of the C extension `sidecar/merge/_runs.c` (see its header comment)."""

from array import array
from collections.abc import Sequence

def take_run(
    body: str,
    start: int,
    limit: int,
    names: tuple[str, ...],
    allowed: tuple[str, ...],
    counter: bool,
    suffix: str,
    /,
) -> tuple[int, str] | None:
    """Prove the sample lines of ASCII ``body`` from ``start`` to the next comment line (or
    ``limit``): ``(end, lines with suffix added)``, or None when a line is not taken."""

def split_created(chunk: str, created: str, /) -> tuple[str, str]:
    """The lines of ASCII ``chunk`` without and with the sample name ``created``, in order
    (the first is ``chunk`` itself when no line has it)."""

def scan_text(
    body: str, /
) -> list[tuple[str, str, str | None, int, int, int, tuple[str, ...] | None]] | None:
    """The families of an ASCII text 0.0.4 body laid out as client_golang writes it:
    ``(name, kind, help, header start, samples start, end, label names)`` each (the
    distinct label names of its sample lines, first seen first; None past 64), or None."""

def apply_plan(
    chunks: Sequence[str],
    olds: str,
    old_ends: array[int],
    order: array[int] | None,
    news: str,
    new_ends: array[int],
    split: int,
    /,
) -> tuple[str, str] | None:
    """Output line k: the k-th ``name{labels}`` of ASCII ``news`` (``new_ends``: where
    each ends) plus the value of line ``order[k]`` (None: line ``k``) of the ASCII
    ``chunks``; those before ``split`` and those from it, once each chunk line ``i`` is
    the i-th ``name{labels}`` of ``olds`` (cut at ``old_ends``), one space, a value
    without a space and a newline; None when a line is not. Buffers of int64."""
