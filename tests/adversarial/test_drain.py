"""Drain (design §10, issue 7): WebSockets get a close frame 1001, long streams are cut.

`sidecar/server.py` stops each component with ``shutdown.drain_timeout``; these tests
drive the proxy component's ``stop`` directly with a WebSocket session and a server-sent
event stream open through real sockets. Expected: a WebSocket is told ``1001 Going
Away`` at once on both sides (the client and the app), not held until the drain timeout
and then dropped without a close frame; it counts as finished, not cut. A stream that is
still running when the drain timeout ends is aborted (never ended cleanly, so the client
cannot mistake it for a complete body) and counted as cut.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.support.proxy import RELEASE, WS_CLOSES, ProxyFactory, wait_for

GOING_AWAY = 1001


async def test_websocket_gets_close_1001_on_drain(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    assert p.upstream_app is not None
    ws = await p.session.ws_connect(p.url + "/ws", autoclose=False)
    await ws.send_str("before")
    assert (await ws.receive()).data == "before"
    started = time.monotonic()
    stopping = asyncio.ensure_future(p.component.stop(10.0))
    try:
        message = await asyncio.wait_for(ws.receive(), 5.0)
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        assert message.data == GOING_AWAY
        await ws.close()
        await wait_for(lambda: p.upstream_app[WS_CLOSES] == [GOING_AWAY])
        assert await asyncio.wait_for(stopping, 5.0) == 0  # closed cleanly, not cut
        assert time.monotonic() - started < 5.0  # not held for the 10 s drain timeout
    finally:
        stopping.cancel()
        await ws.close()


async def test_stream_still_running_at_the_drain_timeout_is_cut(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    assert p.upstream_app is not None
    async with p.session.get(p.url + "/sse") as response:
        assert await response.content.readuntil(b"\n\n") == b"data: first\n\n"
        cut = await p.component.stop(0.3)
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.content.read()
    assert cut == 1
    p.upstream_app[RELEASE].set()
