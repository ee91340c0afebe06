"""HTTP/1.1 pipelining over raw sockets, under both engines: answers in order, none lost,
none duplicated, past the parser's queue limit, and a WebSocket upgrade pipelined behind a
plain request (the lean engine hands that connection to aiohttp)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from tests.support.proxy import ProxyFactory, blob

HEAD_END = b"\r\n\r\n"


async def read_response(
    reader: asyncio.StreamReader, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """One response off a keep-alive connection: (status, headers, body), framed by
    Content-Length, chunked, or no body (HEAD, 1xx, 204, 304)."""
    head = await reader.readuntil(HEAD_END)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    assert headers.get("transfer-encoding") == "chunked", headers
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, headers, bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: app\r\n\r\n".encode()


async def test_pipelined_requests_are_answered_in_order(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    upload = blob(5000, seed=3)
    requests = [
        get("/download?size=5"),
        get("/status/204"),
        b"HEAD /download?size=9 HTTP/1.1\r\nHost: app\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n%s" % (len(upload), upload),
        b"POST /echo HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        get("/download?size=70000&chunked=1"),
    ]
    reader, writer = await connect(p.url)
    try:
        writer.write(b"".join(requests))  # one write: the proxy reads them together
        async with asyncio.timeout(10):
            answers = [
                await read_response(reader, method)
                for method in ("GET", "GET", "HEAD", "POST", "POST", "GET")
            ]
    finally:
        writer.close()
    assert [status for status, _, _ in answers] == [200, 204, 200, 200, 200, 200]
    assert answers[0][2] == blob(5, seed=5)
    assert answers[2][1]["content-length"] == "9"
    assert answers[3][2] == upload
    assert answers[4][2] == b"abcde"
    assert answers[4][1]["transfer-encoding"] == "chunked"
    body = answers[5][2]
    assert hashlib.sha256(body).hexdigest() == answers[5][1]["x-sha256"]
    assert p.sample("http_request_total", method="POST", path="/echo", status="200") == 2


async def test_a_hundred_pipelined_requests_none_lost_none_doubled(
    make_proxy: ProxyFactory,
) -> None:
    """Past the parser's queue of 32: reading pauses and resumes, the order holds."""
    p = await make_proxy()
    sizes = [1 + (i * 37) % 500 for i in range(100)]
    reader, writer = await connect(p.url)
    try:
        writer.write(b"".join(get(f"/download?size={n}") for n in sizes))
        async with asyncio.timeout(20):
            answers = [await read_response(reader) for _ in sizes]
        writer.write(get("/count"))  # and the connection still serves
        async with asyncio.timeout(10):
            status, _, body = await read_response(reader)
    finally:
        writer.close()
    assert [len(b) for _, _, b in answers] == sizes
    assert all(b == blob(n, seed=n) for (_, _, b), n in zip(answers, sizes, strict=True))
    assert (status, body) == (200, b"1")  # the app counted exactly one /count


async def test_websocket_upgrade_pipelined_behind_a_request(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    upgrade = (
        "GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    reader, writer = await connect(p.url)
    try:
        writer.write(get("/download?size=3") + upgrade)
        async with asyncio.timeout(10):
            first = await read_response(reader)
            head = await reader.readuntil(HEAD_END)
            mask = os.urandom(4)
            payload = b"hello"
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
            frame = await reader.readexactly(2 + len(payload))
    finally:
        writer.close()
    assert first[0] == 200
    assert first[2] == blob(3, seed=3)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert frame == bytes([0x81, len(payload)]) + payload  # echoed through the relay


async def test_the_proxys_own_answer_to_head_has_no_body(make_proxy: ProxyFactory) -> None:
    """A 502 to HEAD says its length but sends no body: the next answer on the
    connection must not start with one."""
    p = await make_proxy(upstream="http://127.0.0.1:1")  # nothing listens: 502
    reader, writer = await connect(p.url)
    try:
        writer.write(b"HEAD /x HTTP/1.1\r\nHost: app\r\n\r\n" + get("/y"))
        async with asyncio.timeout(10):
            head = await read_response(reader, "HEAD")
            after = await read_response(reader)
    finally:
        writer.close()
    assert head[0] == 502
    assert int(head[1]["content-length"]) > 0
    assert after[0] == 502
    assert after[2] == b"upstream connection failed\n"


@pytest.mark.parametrize("proxy_engine", ["lean"])  # aiohttp reads the rest, up to 10 s
async def test_an_answer_before_the_whole_body_says_close(make_proxy: ProxyFactory) -> None:
    """The lean engine closes a connection whose request body it did not read to the end;
    its answer says so, and the connection then closes."""
    p = await make_proxy(upstream="http://127.0.0.1:1")  # nothing listens: 502
    reader, writer = await connect(p.url)
    try:
        writer.write(b"POST /x HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\nabc")
        async with asyncio.timeout(10):
            status, headers, _ = await read_response(reader)
            writer.write(b"defghij")  # the rest of the body, read and dropped
            rest = await reader.read()
    finally:
        writer.close()
    assert status == 502
    assert headers["connection"] == "close"
    assert rest == b""
