"""1 GiB up and 1 GiB down through a proxy process whose memory must stay flat.

The proxy runs alone in a subprocess (``bench/proxy_only.py``) so its RSS is its own;
upstream and client run in the test process. Growth is the peak RSS (VmHWM) at the end
minus the RSS after a warm-up exchange.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.process import PROXY_ONLY
from tests.support.proxy import ENGINES

GIB = 2**30
BLOCK = bytes(range(256)) * 1024  # 256 KiB
MAX_GROWTH = 50 * 2**20


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} missing")


async def _sink(request: web.Request) -> web.Response:
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
    return web.Response(text=str(total))


async def _source(request: web.Request) -> web.StreamResponse:
    size = int(request.query["size"])
    response = web.StreamResponse()
    response.content_length = size
    await response.prepare(request)
    for _ in range(size // len(BLOCK)):
        await response.write(BLOCK)
    await response.write_eof()
    return response


async def _blocks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // len(BLOCK)):
        yield BLOCK


async def _round_trip(session: aiohttp.ClientSession, url: str, size: int) -> None:
    headers = {"Content-Length": str(size)}
    async with session.post(url + "/sink", data=_blocks(size), headers=headers) as r:
        assert r.status == 200
        assert await r.text() == str(size)
    received = 0
    async with session.get(url + f"/source?size={size}") as r:
        async for chunk in r.content.iter_any():
            received += len(chunk)
    assert received == size


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
async def test_one_gib_each_way_keeps_proxy_memory_flat(aiohttp_server: Any, engine: str) -> None:
    app = web.Application(client_max_size=2 * GIB)
    app.router.add_post("/sink", _sink)
    app.router.add_get("/source", _source)
    upstream = await aiohttp_server(app)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROXY_ONLY),
        "--upstream",
        f"http://127.0.0.1:{upstream.port}",
        "--engine",
        engine,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"listening on "), line
        url = "http://" + line.split()[-1].decode()
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            await _round_trip(session, url, 16 * 2**20)
            baseline = _status_kib(process.pid, "VmRSS")
            await _round_trip(session, url, GIB)
        peak = _status_kib(process.pid, "VmHWM")
        assert peak - baseline < MAX_GROWTH, (peak - baseline) / 2**20
    finally:
        process.terminate()
        await process.wait()
