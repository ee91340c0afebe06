"""Case 5: every upstream fault gives its documented answer, a reason label, no stuck state.

Input: a hand-written upstream that, per request path, refuses, hangs before headers,
resets before headers, resets mid-body, sends an invalid status line, or a header with
control bytes. Expected (design §6, `sidecar.proxy.upstream`): 502/504 with the reason
label, or an aborted client connection mid-body; the upstream connection closed by the
proxy, nothing in flight afterwards, and ``/ok`` served right after on the same proxy.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import aiohttp
import pytest

from tests.support.process import free_port
from tests.support.proxy import ProxyFactory, wait_for

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FAULTS: dict[str, tuple[bytes | None, int | None, str]] = {
    # path: (bytes to send before the fault, expected status (None: aborted body), reason)
    "hang-before-headers": (None, 504, "upstream_timeout"),
    "reset-before-headers": (b"", 502, "upstream_reset"),
    "reset-mid-body": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
        None,
        "upstream_reset",
    ),
    "invalid-status-line": (
        b"HTTP/1.1 2xx Fine\r\nContent-Length: 0\r\n\r\n",
        502,
        "upstream_reset",
    ),
    "not-http": (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", 502, "upstream_reset"),
    "control-byte-in-header": (
        b"HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 0\r\n\r\n",
        502,
        "upstream_reset",
    ),
    "nul-in-header": (
        b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 0\r\n\r\n",
        502,
        "upstream_reset",
    ),
    "bad-content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx",
        502,
        "upstream_reset",
    ),
}


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _behaviour(n, head: bytes, reader, writer) -> bool:
    path = head.split(b" ", 2)[1].decode()
    if path == "/ok":
        writer.write(OK)
        await writer.drain()
        return True
    before, _, _ = FAULTS[path.strip("/")]
    if before is None:
        await reader.read(1)  # hang until the proxy gives up and closes
        return False
    writer.write(before)
    await writer.drain()
    if path.startswith("/reset"):
        _rst(writer)
    return False


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
async def test_upstream_fault_is_answered_and_leaves_nothing_stuck(
    make_proxy: ProxyFactory, raw_upstream, fault: str
) -> None:
    _, status, reason = FAULTS[fault]
    up = await raw_upstream(_behaviour)
    proxy = await make_proxy(upstream=up.url, response_timeout=0.5)
    async with aiohttp.ClientSession() as client:
        if status is None:
            async with client.get(f"{proxy.url}/{fault}") as r:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await r.read()
        else:
            async with client.get(f"{proxy.url}/{fault}") as r:
                assert r.status == status
                assert "upstream" in await r.text()
        await wait_for(lambda: proxy.sample("sidecar_proxy_errors_total", reason=reason) == 1)
        await wait_for(lambda: up.closed >= 1)  # the faulty upstream connection was let go
        assert proxy.component.in_flight == 0
        async with client.get(f"{proxy.url}/ok") as r:
            assert r.status == 200
            assert await r.read() == b"ok"


async def test_refused_upstream_is_502_and_recovers(make_proxy: ProxyFactory, raw_upstream) -> None:
    proxy = await make_proxy(upstream=f"http://127.0.0.1:{free_port()}")
    async with aiohttp.ClientSession() as client:
        for _ in range(3):
            async with client.get(f"{proxy.url}/x") as r:
                assert r.status == 502
        assert proxy.sample("sidecar_proxy_errors_total", reason="upstream_connect_error") == 3
        assert proxy.component.in_flight == 0
