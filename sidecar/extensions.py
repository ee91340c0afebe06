"""Which code runs the two hot paths: the C extensions, or their pure-Python equivalents.

The C extensions are built when a compiler is there (``setup.py`` marks them optional):
``sidecar.events._scan`` (batch scanner and key memory of the event inspector),
``sidecar.merge._runs`` (the merge fast path's run prover and whole-body scan) and
``sidecar.ingest._pblabels`` (a series' label text as protobuf label pairs). Their
modules ask `enabled` here, the one place that honours ``SIDECAR_NO_EXTENSIONS`` (any
non-empty value; aiohttp's ``AIOHTTP_NO_EXTENSIONS`` is the model): set, or a module not
built, and that module's pure-Python path runs, with the same results. `label` is
``sidecar_build_info``'s ``extensions`` label; `describe` is the line logged at start.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Final

__all__ = ["ENV", "MODULES", "NO_EXTENSIONS", "built", "describe", "enabled", "label"]

ENV: Final = "SIDECAR_NO_EXTENSIONS"
NO_EXTENSIONS: Final = bool(os.environ.get(ENV))
MODULES: Final = ("sidecar.events._scan", "sidecar.merge._runs", "sidecar.ingest._pblabels")


@functools.cache
def built(name: str) -> str | None:
    """None when the C module `name` imports; else why not (the ImportError's text)."""
    try:
        importlib.import_module(name)
    except ImportError as exc:
        return str(exc)
    return None


def enabled(name: str) -> bool:
    """Whether the C module `name` (one of `MODULES`) is the one to run."""
    return not NO_EXTENSIONS and built(name) is None


def label() -> str:
    """``c`` (every module in C), ``python`` (none) or ``mixed`` (some not built)."""
    in_c = [enabled(name) for name in MODULES]
    return "c" if all(in_c) else "mixed" if any(in_c) else "python"


def describe() -> str:
    """One sentence saying which path runs, and why not C when it is not."""
    if NO_EXTENSIONS:
        return f"C extensions off ({ENV} is set): the pure-Python paths run"
    missing = [f"{name} ({built(name)})" for name in MODULES if built(name) is not None]
    if not missing:
        return "C extensions in use: " + ", ".join(MODULES)
    return "C extensions not built, pure-Python paths run instead: " + "; ".join(missing)
