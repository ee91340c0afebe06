"""Every failure mode answers explicitly, with its status and its reason label."""

from __future__ import annotations

import asyncio
import socket
import struct

import aiohttp
import pytest

from tests.support.proxy import (
    HITS,
    RELEASE,
    ProxyFactory,
    raw_exchange,
    split_response,
    wait_for,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_502(make_proxy: ProxyFactory) -> None:
    p = await make_proxy(upstream=f"http://127.0.0.1:{_free_port()}")
    async with p.session.get(p.url + "/x") as r:
        assert r.status == 502
        assert r.headers["Content-Type"].startswith("text/plain")
        assert "upstream" in await r.text()
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_connect_error") == 1
    assert p.sample("http_request_errors_total", path="/x", status="502") == 1


async def test_no_response_headers_in_time_is_504(make_proxy: ProxyFactory) -> None:
    p = await make_proxy(response_timeout=0.3)
    try:
        async with p.session.get(p.url + "/slow") as r:
            assert r.status == 504
    finally:
        assert p.upstream_app is not None
        p.upstream_app[RELEASE].set()
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_timeout") == 1


async def test_response_timeout_holds_on_a_pooled_connection(make_proxy: ProxyFactory) -> None:
    # One upstream connection: the 504 comes from a connection that served requests before
    # (its timer was armed by an earlier request), and the next request still works.
    p = await make_proxy(response_timeout=0.3, max_connections=1)
    assert p.upstream_app is not None
    for _ in range(3):
        async with p.session.get(p.url + "/headers") as r:
            assert r.status == 200
    async with p.session.get(p.url + "/slow") as r:
        assert r.status == 504
    p.upstream_app[RELEASE].set()
    async with p.session.get(p.url + "/headers") as r:
        assert r.status == 200
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_timeout") == 1


async def test_response_timeout_does_not_cut_a_slow_body(make_proxy: ProxyFactory) -> None:
    p = await make_proxy(response_timeout=0.3, max_connections=1)
    assert p.upstream_app is not None
    async with p.session.get(p.url + "/held") as r:
        assert r.status == 200
        await asyncio.sleep(0.6)  # the behaviour under test: the body outlasts the timeout
        p.upstream_app[RELEASE].set()
        assert await r.read() == b"body"
        held_port = r.headers["X-Peer-Port"]
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_timeout") == 0
    async with p.session.get(p.url + "/headers") as r:  # the connection was pooled, not spoilt
        assert str((await r.json())["peer_port"]) == held_port


async def test_upstream_silent_mid_body_past_idle_timeout_aborts_the_client(
    make_proxy: ProxyFactory, raw_upstream
) -> None:
    async def stall(n, _head, reader, writer) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        await writer.drain()
        await reader.read(1)  # returns b"" when the proxy gives up and closes
        return False

    up = await raw_upstream(stall)
    p = await make_proxy(upstream=up.url, idle_timeout=0.3)
    async with p.session.get(p.url + "/stall") as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    await wait_for(lambda: p.sample("sidecar_proxy_errors_total", reason="upstream_timeout") == 1)
    await wait_for(lambda: up.closed == 1, timeout=3)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n",
        # neither length nor chunks: the body ends at the upstream's close, so a clean close
        # (FIN) would end it, and a reset (RST) must not look like that end
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789",
    ],
    ids=["length", "chunked", "close-delimited"],
)
async def test_upstream_reset_mid_body_aborts_the_client(
    make_proxy: ProxyFactory, raw_upstream, head: bytes
) -> None:
    first_bytes_relayed = asyncio.Event()

    async def reset(n, _head, reader, writer) -> bool:
        writer.write(head)
        await writer.drain()
        await asyncio.wait_for(first_bytes_relayed.wait(), 10)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # linger 0: the close is a reset
        return False

    up = await raw_upstream(reset)
    p = await make_proxy(upstream=up.url)
    async with p.session.get(p.url + "/r") as r:
        assert r.status == 200
        assert await r.content.readexactly(10) == b"0123456789"
        first_bytes_relayed.set()
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    await wait_for(lambda: p.sample("sidecar_proxy_errors_total", reason="upstream_reset") == 1)


async def test_a_protocol_switch_nobody_asked_for_is_502(
    make_proxy: ProxyFactory, raw_upstream
) -> None:
    # The client's Upgrade is hop-by-hop (WebSockets take their own path), so a 101 on the
    # plain path switches a protocol the client never asked for: never relayed as such.
    async def switch(n, _head, reader, writer) -> bool:
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n?"
        )
        await writer.drain()
        await reader.read(1)  # returns b"" when the proxy closes the connection
        return False

    up = await raw_upstream(switch)
    p = await make_proxy(upstream=up.url)
    raw = await raw_exchange(p.url, b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    status, _, body = split_response(raw)
    assert (status, body) == (502, b"upstream sent an invalid response\n")
    await wait_for(lambda: up.closed == 1, timeout=3)
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_reset") == 1


async def test_client_leaving_cancels_the_upstream_request(
    make_proxy: ProxyFactory, raw_upstream
) -> None:
    async def hang(n, _head, reader, writer) -> bool:
        await reader.read(1)  # returns b"" when the proxy closes the connection
        return False

    up = await raw_upstream(hang)
    p = await make_proxy(upstream=up.url)
    host, port = p.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
    await writer.drain()
    await wait_for(lambda: len(up.heads) == 1)
    writer.close()
    await wait_for(lambda: up.closed == 1, timeout=3)
    await wait_for(lambda: p.sample("sidecar_proxy_errors_total", reason="client_disconnect") == 1)
    assert p.sample("http_request_total", path="/hang", status="499") == 1


async def test_above_max_in_flight_is_503_with_retry_after(make_proxy: ProxyFactory) -> None:
    p = await make_proxy(max_in_flight=1)
    assert p.upstream_app is not None
    slow = asyncio.ensure_future(p.session.get(p.url + "/slow"))
    await wait_for(lambda: p.component.in_flight == 1)
    async with p.session.get(p.url + "/x") as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "1"
    p.upstream_app[RELEASE].set()
    async with await slow as r:
        assert r.status == 200
    assert p.sample("sidecar_proxy_errors_total", reason="overloaded") == 1


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_body_above_max_request_body_is_413(make_proxy: ProxyFactory, framing: str) -> None:
    p = await make_proxy(max_request_body=1000)
    if framing == "length":
        head = b"POST /count HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n"
        raw = await raw_exchange(p.url, head + b"x" * 1001)
    else:
        head = b"POST /count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        raw = await raw_exchange(p.url, head + b"3e9\r\n" + b"x" * 1001 + b"\r\n0\r\n\r\n")
    status, _, _ = split_response(raw)
    assert status == 413
    assert p.sample("sidecar_proxy_errors_total", reason="request_too_large") == 1
    assert p.upstream_app is not None
    assert p.upstream_app[HITS] == {}  # the upstream never saw it


async def test_body_at_the_limit_passes(make_proxy: ProxyFactory) -> None:
    p = await make_proxy(max_request_body=1000)
    async with p.session.post(p.url + "/echo", data=b"y" * 1000) as r:
        assert r.status == 200
        assert await r.read() == b"y" * 1000


async def _close_second_request(n, head, reader, writer) -> bool:
    """Answer the first request on a connection keep-alive; drop the connection on the next."""
    if n == 0:
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        writer.write(OK)
        await writer.drain()
        return True
    writer.transport.abort()
    return False


async def test_a_pooled_connection_that_received_unasked_bytes_is_not_reused(
    make_proxy: ProxyFactory, raw_upstream
) -> None:
    # Bytes an upstream sends on an idle connection answer no request: a request sent
    # there would get them as its response (a desync), so the connection is dropped.
    answered = asyncio.Event()

    async def babble(n, head, reader, writer) -> bool:
        path = head.split(b" ", 2)[1]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
        if n == 0:
            await asyncio.wait_for(answered.wait(), 10)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra")
        await writer.drain()
        return True

    up = await raw_upstream(babble)
    p = await make_proxy(upstream=up.url)
    async with p.session.get(p.url + "/first") as r:
        assert await r.read() == b"/first"
    answered.set()
    pool = p.component._upstream._pool
    await wait_for(lambda: bool(pool._idle and pool._idle[0][0]._buffer))  # the proxy has them
    async with p.session.get(p.url + "/second") as r:
        assert (r.status, await r.read()) == (200, b"/second")


async def test_get_is_retried_once_on_a_stale_pooled_connection(
    make_proxy: ProxyFactory, raw_upstream
) -> None:
    up = await raw_upstream(_close_second_request)
    p = await make_proxy(upstream=up.url)
    for _ in range(2):
        async with p.session.get(p.url + "/g") as r:
            assert r.status == 200
            assert await r.read() == b"ok"
    assert [h.split(b" ")[0] for h in up.heads] == [b"GET", b"GET", b"GET"]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_post_and_patch_are_never_retried(
    make_proxy: ProxyFactory, raw_upstream, method: str
) -> None:
    up = await raw_upstream(_close_second_request)
    p = await make_proxy(upstream=up.url)
    async with p.session.request(method, p.url + "/p", data=b"first") as r:
        assert r.status == 200
    async with p.session.request(method, p.url + "/p", data=b"second") as r:
        assert r.status == 502
    assert [h.split(b" ")[0] for h in up.heads] == [method.encode()] * 2
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_reset") == 1


async def test_idle_pooled_connections_are_closed(make_proxy: ProxyFactory, raw_upstream) -> None:
    async def keep(n, head, reader, writer) -> bool:
        writer.write(OK)
        await writer.drain()
        return True

    up = await raw_upstream(keep)
    p = await make_proxy(upstream=up.url, upstream_keepalive=0.2)
    async with p.session.get(p.url + "/k") as r:
        assert r.status == 200
    await wait_for(lambda: up.closed == 1, timeout=5)


async def test_slow_request_head_is_cut_after_header_timeout(make_proxy: ProxyFactory) -> None:
    p = await make_proxy(header_timeout=0.3)
    host, port = p.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /x HTTP/1.1\r\nHost: a\r\n")  # never finished
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert p.sample("sidecar_proxy_errors_total", reason="bad_request") == 1
    async with p.session.get(p.url + "/count") as r:  # complete heads are unaffected
        assert r.status == 200
