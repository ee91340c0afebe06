"""WebSocket relay, server-sent events as they arrive, and Expect: 100-continue."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.support.proxy import (
    RELEASE,
    WS_CLOSES,
    WS_HEADERS,
    ProxyFactory,
    raw_exchange,
    split_response,
    wait_for,
)


@pytest.mark.parametrize("forwarded", [True, False])
async def test_websocket_upgrade_headers_follow_the_header_policy(
    make_proxy: ProxyFactory, forwarded: bool
) -> None:
    # a raw handshake: aiohttp's client would write its own Connection header
    p = await make_proxy(forwarded_headers=forwarded)
    reader, writer = await asyncio.open_connection(*p.url.removeprefix("http://").split(":"))
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade, X-Secret\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nX-Secret: hop only\r\nProxy-Authorization: Basic x\r\n"
        b"Cookie: a=1\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 101 ")
    assert p.upstream_app is not None
    [seen] = p.upstream_app[WS_HEADERS]
    assert "X-Secret" not in seen  # named by Connection: one hop only
    assert "x-secret" not in seen.get("Connection", "").lower()
    assert "Proxy-Authorization" not in seen
    assert seen["Cookie"] == "a=1"
    assert seen["Host"] == "app.example"
    assert ("X-Forwarded-Proto" in seen) is forwarded
    assert ("X-Forwarded-Host" in seen) is forwarded


async def test_websocket_echo_keeps_frames_and_close_code(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    async with p.session.ws_connect(p.url + "/ws", protocols=("chat",), autoping=False) as ws:
        assert ws.protocol == "chat"
        await ws.send_str("héllo")
        assert (await ws.receive()).data == "héllo"
        await ws.send_bytes(b"\x00\x01\xff")
        assert (await ws.receive()).data == b"\x00\x01\xff"
        await ws.ping(b"are you there")
        pong = await ws.receive()
        assert pong.type is aiohttp.WSMsgType.PONG
        assert pong.data == b"are you there"
        await ws.send_str("close:4001:bye now")
        closing = await ws.receive()
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == 4001
        assert closing.extra == "bye now"
    assert p.sample("http_request_total", method="GET", path="/ws", status="101") == 1
    assert p.sample("http_request_duration_milliseconds_count", path="/ws") == 0


async def test_websocket_client_close_code_reaches_upstream_and_back(
    make_proxy: ProxyFactory,
) -> None:
    p = await make_proxy()
    ws = await p.session.ws_connect(p.url + "/ws")
    await ws.send_str("ping")
    assert (await ws.receive()).data == "ping"
    await ws.close(code=4321, message=b"client done")
    assert p.upstream_app is not None
    await wait_for(lambda: p.upstream_app[WS_CLOSES] == [4321])


async def test_sse_first_event_arrives_while_upstream_still_sending(
    make_proxy: ProxyFactory,
) -> None:
    p = await make_proxy()
    assert p.upstream_app is not None
    async with p.session.get(p.url + "/sse") as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        assert first == b"data: first\n\n"
        assert not p.upstream_app[RELEASE].is_set()  # upstream has not finished
        p.upstream_app[RELEASE].set()
        assert await r.content.read() == b"data: second\n\n"
    assert p.sample("http_request_time_to_first_byte_milliseconds_count", path="/sse") == 1


async def test_head_reaches_the_client_before_any_body_byte_exists(
    make_proxy: ProxyFactory,
) -> None:
    # The proxy writes a response's head together with its first body bytes when they are
    # already there; when none are, the head must still go out at once.
    p = await make_proxy()
    assert p.upstream_app is not None
    async with p.session.get(p.url + "/held") as r:
        assert r.status == 200
        assert r.headers["X-Held"] == "yes"
        assert not p.upstream_app[RELEASE].is_set()  # no body byte was written yet
        p.upstream_app[RELEASE].set()
        assert await r.read() == b"body"


async def test_expect_100_continue(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    host, port = p.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /headers HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    writer.write(b"hello")
    await writer.drain()
    rest = await asyncio.wait_for(reader.read(-1), 5)
    writer.close()
    status, _, body = split_response(rest)
    assert status == 200
    assert json.loads(body)["body"] == 5


async def test_expect_100_continue_with_aiohttp_client(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    async with p.session.post(p.url + "/headers", data=b"x" * 1000, expect100=True) as r:
        assert r.status == 200
        assert (await r.json())["body"] == 1000


async def test_expect_answered_without_continue_is_never_reused(
    make_proxy: ProxyFactory, raw_upstream
) -> None:
    # The client sent its body with the head, so the proxy sends it at once; an upstream
    # answering finally without a 100 may leave those bytes unread (RFC 9110 §10.1.1 lets
    # it close or discard them): the connection must carry no other request after them.
    refused = asyncio.Event()

    async def refuse(n, head, reader, writer) -> bool:
        if b"Expect" in head:  # the body is left unread (and read as the next head here)
            writer.write(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
        else:  # the answer names the request it answers
            if n == 1:  # the body read as a request: answered once the 417 was relayed
                await asyncio.wait_for(refused.wait(), 10)
            path = head.split(b" ", 2)[1]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
        await writer.drain()
        return True

    up = await raw_upstream(refuse)
    p = await make_proxy(upstream=up.url)
    body = b"GET /smuggled HTTP/1.1\r\n\r\n"
    raw = await raw_exchange(
        p.url,
        b"PUT /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert split_response(raw)[0] == 417
    refused.set()
    async with p.session.get(p.url + "/b") as r:
        assert (r.status, await r.read()) == (200, b"/b")  # not the answer to /smuggled


async def test_websocket_refused_by_upstream_keeps_its_status(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await p.session.ws_connect(p.url + "/no-such-socket")
    assert caught.value.status == 404


async def test_websocket_to_a_dead_upstream_is_502(make_proxy: ProxyFactory) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = await make_proxy(upstream=f"http://127.0.0.1:{port}")
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await p.session.ws_connect(p.url + "/ws")
    assert caught.value.status == 502
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_connect_error") == 1
