"""The project's demo app (`python -m sidecar.demo`) as a subprocess."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.process import http_get, wait_until

ROOT = Path(__file__).resolve().parents[2]


def answers(url: str) -> bool:
    """``url`` answers 200 (False while nothing listens there yet)."""
    try:
        return http_get(url, timeout=1)[0] == 200
    except OSError:
        return False


@contextlib.contextmanager
def demo_app(port: int) -> Iterator[None]:
    """The demo app on ``127.0.0.1:port``, answering before this yields."""
    proc = subprocess.Popen([sys.executable, "-m", "sidecar.demo", f"127.0.0.1:{port}"], cwd=ROOT)
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/"), 20, "the demo app")
        yield
    finally:
        proc.terminate()
        proc.wait(10)
