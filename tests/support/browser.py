"""Headless Chromium (Debian package ``chromium``) for page tests: DOM dumps and screenshots.

Started the way the issue prescribes, with a fresh profile each time; run without blocking
the event loop, so the page's server can live in the test's own loop.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from tests.support.prometheus import require_tool

__all__ = ["dump_dom", "screenshot"]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_S = 90.0


async def _chromium(*args: str) -> tuple[int, str, str]:
    binary = require_tool("chromium", package="chromium")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        process = await asyncio.create_subprocess_exec(
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def dump_dom(url: str) -> str:
    """The DOM of ``url`` after load, serialised by Chromium."""
    code, out, err = await _chromium("--dump-dom", url)
    assert code == 0, f"chromium --dump-dom exited {code}: {err[-2000:]}"
    return out


async def screenshot(url: str, path: Path, width: int = 1280, height: int = 1400) -> Path:
    """A PNG of ``url`` at ``width`` x ``height``."""
    code, _, err = await _chromium(f"--screenshot={path}", f"--window-size={width},{height}", url)
    assert code == 0, f"chromium --screenshot exited {code}: {err[-2000:]}"
    assert path.exists(), f"no screenshot at {path}: {err[-2000:]}"
    return path
