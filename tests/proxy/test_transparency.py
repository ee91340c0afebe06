"""Byte-exact streaming both ways, header policy, and framing through real sockets."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
from collections.abc import AsyncIterator

import pytest

from tests.support.proxy import ProxyFactory, blob, raw_exchange, replying, split_response


async def _chunks(data: bytes, size: int = 7919) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


@pytest.mark.parametrize("size", [0, 1, 65537, 3 * 2**20 + 11], ids=["empty", "1B", "64K+1", "3M"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_upload_round_trip_is_byte_exact(
    make_proxy: ProxyFactory, size: int, framing: str
) -> None:
    p = await make_proxy()
    data = os.urandom(size)
    body = io.BytesIO(data) if framing == "length" else _chunks(data)
    async with p.session.post(p.url + "/echo", data=body) as r:
        echoed = await r.read()
        assert r.status == 200
        if framing == "length":
            assert r.headers["X-Request-Length"] == str(size)
            assert r.headers["Content-Length"] == str(size)
            assert "Transfer-Encoding" not in r.headers
        else:
            assert r.headers["X-Request-Chunked"] == "chunked"
            assert r.headers["Transfer-Encoding"] == "chunked"
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
async def test_download_is_byte_exact_and_keeps_framing(
    make_proxy: ProxyFactory, chunked: bool
) -> None:
    p = await make_proxy()
    size = 5 * 2**20 + 3
    query = f"/download?size={size}" + ("&chunked=1" if chunked else "")
    async with p.session.get(p.url + query) as r:
        data = await r.read()
        assert hashlib.sha256(data).hexdigest() == r.headers["X-Sha256"]
        if chunked:
            assert r.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in r.headers
        else:
            assert r.headers["Content-Length"] == str(size)
    assert len(data) == size


async def test_gzip_body_passes_untouched(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    raw = await raw_exchange(
        p.url,
        b"GET /gzip HTTP/1.1\r\nHost: app\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    )
    status, headers, body = split_response(raw)
    assert status == 200
    assert ("Content-Encoding", "gzip") in headers
    assert body == gzip.compress(b"hello " * 1000, mtime=0)


async def test_response_header_order_repeats_and_hop_by_hop(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    raw = await raw_exchange(
        p.url, b"GET /cookies HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    status, headers, body = split_response(raw)
    names = [k for k, _ in headers]
    assert status == 200
    assert body == b"ok"
    interesting = [(k, v) for k, v in headers if k in ("X-First", "Set-Cookie", "X-Middle")]
    assert interesting == [
        ("X-First", "1"),
        ("Set-Cookie", "a=1; Path=/"),
        ("X-Middle", "2"),
        ("Set-Cookie", "b=2; Path=/"),
    ]
    for hop in ("X-Secret-Hop", "Keep-Alive", "Proxy-Authenticate"):
        assert hop not in names


async def _seen_by_upstream(make_proxy: ProxyFactory, head: bytes, **config: object) -> dict:
    p = await make_proxy(**config)
    raw = await raw_exchange(p.url, head)
    status, _, body = split_response(raw)
    assert status == 200, raw
    return json.loads(body)


async def test_request_headers_pass_in_order_without_additions(make_proxy: ProxyFactory) -> None:
    seen = await _seen_by_upstream(
        make_proxy,
        b"GET /headers?q=1 HTTP/1.1\r\nHost: app.example:8080\r\nX-B: 2\r\nX-A: 1\r\n"
        b"X-A: again\r\nConnection: close\r\n\r\n",
        forwarded_headers=False,
    )
    names = [k.lower() for k, _ in seen["headers"]]
    assert seen["headers"][0] == ["Host", "app.example:8080"]
    assert [h for h in seen["headers"] if h[0].startswith("X-")] == [
        ["X-B", "2"],
        ["X-A", "1"],
        ["X-A", "again"],
    ]
    for added in ("accept-encoding", "user-agent", "accept", "content-type", "x-forwarded-for"):
        assert added not in names


async def test_request_hop_by_hop_headers_are_removed(make_proxy: ProxyFactory) -> None:
    seen = await _seen_by_upstream(
        make_proxy,
        b"GET /headers HTTP/1.1\r\nHost: a\r\nConnection: close, X-Private\r\nX-Private: no\r\n"
        b"Keep-Alive: 5\r\nProxy-Connection: keep-alive\r\nTE: trailers, deflate\r\n"
        b"Proxy-Authorization: Basic eA==\r\nUpgrade: h2c\r\nTrailer: X-T\r\nX-Kept: yes\r\n\r\n",
    )
    headers = {k.lower(): v for k, v in seen["headers"]}
    for hop in ("x-private", "keep-alive", "proxy-connection", "proxy-authorization", "upgrade"):
        assert hop not in headers
    assert "trailer" not in headers
    assert headers["te"] == "trailers"
    assert headers["x-kept"] == "yes"


async def test_forwarded_headers_appended_and_set_when_absent(make_proxy: ProxyFactory) -> None:
    seen = await _seen_by_upstream(
        make_proxy,
        b"GET /headers HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 10.0.0.1\r\n"
        b"Connection: close\r\n\r\n",
    )
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert headers["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "shop.example"
    assert headers["host"] == "shop.example"
    kept = await _seen_by_upstream(
        make_proxy,
        b"GET /headers HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: outer\r\nConnection: close\r\n\r\n",
    )
    kept_headers = {k.lower(): v for k, v in kept["headers"]}
    assert kept_headers["x-forwarded-proto"] == "https"
    assert kept_headers["x-forwarded-host"] == "outer"
    assert kept_headers["x-forwarded-for"] == "127.0.0.1"


async def test_head_keeps_length_and_sends_no_body(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    raw = await raw_exchange(
        p.url, b"HEAD /download?size=1234 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    status, headers, body = split_response(raw)
    assert status == 200
    assert ("Content-Length", "1234") in headers
    assert body == b""


async def test_head_and_get_alternate_on_one_pooled_connection(make_proxy: ProxyFactory) -> None:
    # A pooled connection keeps its response parser between requests, except when the
    # next one needs the other kind (HEAD: no body): a mix-up would hang or corrupt a GET.
    p = await make_proxy(max_connections=1)
    expected = blob(1234, seed=1234)
    for method in ("GET", "HEAD", "HEAD", "GET", "GET", "HEAD", "GET"):
        async with p.session.request(method, p.url + "/download?size=1234") as r:
            assert r.status == 200
            assert r.headers["Content-Length"] == "1234"
            assert await r.read() == (expected if method == "GET" else b"")
    assert p.sample("http_request_total", method="GET", status="200") == 4
    assert p.sample("http_request_total", method="HEAD", status="200") == 3


@pytest.mark.parametrize("code", [204, 304])
async def test_no_body_statuses(make_proxy: ProxyFactory, code: int) -> None:
    p = await make_proxy()
    raw = await raw_exchange(
        p.url, f"GET /status/{code} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()
    )
    status, headers, body = split_response(raw)
    assert status == code
    assert body == b""
    assert "Transfer-Encoding" not in [k for k, _ in headers]


async def test_keep_alive_serves_many_requests_on_one_connection(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    for i in range(20):
        async with p.session.post(p.url + "/echo", data=str(i).encode()) as r:
            assert await r.read() == str(i).encode()
    assert p.sample("http_request_total", method="POST", path="/echo", status="200") == 20


async def test_http10_client_without_host_gets_the_upstream_authority(
    make_proxy: ProxyFactory,
) -> None:
    p = await make_proxy(forwarded_headers=False)
    raw = await raw_exchange(p.url, b"GET /headers HTTP/1.0\r\n\r\n")
    status, _, body = split_response(raw)
    assert status == 200
    headers = json.loads(body)["headers"]
    assert [h for h in headers if h[0].lower() == "host"] == [
        ["Host", p.upstream.removeprefix("http://")]
    ]


async def test_upstream_connection_close_is_honoured(
    make_proxy: ProxyFactory, raw_upstream
) -> None:
    up = await raw_upstream(
        replying(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", keep_open=False
        )
    )
    p = await make_proxy(upstream=up.url)
    for _ in range(3):
        async with p.session.post(p.url + "/c", data=b"x") as r:  # POST: never retried
            assert r.status == 200
            assert await r.read() == b"ok"
            assert "Connection" not in r.headers or r.headers["Connection"] != "close"
    assert len(up.heads) == 3


@pytest.mark.parametrize(
    ("request_line", "upstream_head", "expected"),
    [
        (  # no Date, Server or Content-Type added; only the framing for this client
            b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\nx-b: 2\r\n\r\nok",
            [("X-A", "1"), ("Content-Length", "2"), ("x-b", "2"), ("Connection", "close")],
        ),
        (  # an HTTP/1.0 client keeping the connection is told so
            b"GET /a HTTP/1.0\r\nConnection: keep-alive",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            [("Content-Length", "2"), ("Connection", "keep-alive")],
        ),
        (  # a close-delimited body reaches an HTTP/1.1 client chunked
            b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\nok",
            [("X-A", "1"), ("Transfer-Encoding", "chunked"), ("Connection", "close")],
        ),
        (  # ... and an HTTP/1.0 client as it came, ended by the close
            b"GET /a HTTP/1.0\r\nConnection: keep-alive",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\nok",
            [("X-A", "1")],
        ),
    ],
    ids=["exact-head", "http10-keepalive", "close-delimited-http11", "close-delimited-http10"],
)
async def test_response_head_is_the_upstreams_framed_for_the_client(
    make_proxy: ProxyFactory,
    raw_upstream,
    request_line: bytes,
    upstream_head: bytes,
    expected: list[tuple[str, str]],
) -> None:
    up = await raw_upstream(replying(upstream_head, keep_open=False))
    p = await make_proxy(upstream=up.url)
    host, port = p.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request_line + b"\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status, headers, _ = split_response(head)
        assert status == 200
        assert headers == expected
        if ("Content-Length", "2") in headers:  # the connection may stay open: read 2 bytes
            body = await asyncio.wait_for(reader.readexactly(2), 10)
        else:
            body = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
    chunked = ("Transfer-Encoding", "chunked") in expected
    assert body == (b"2\r\nok\r\n0\r\n\r\n" if chunked else b"ok")


async def test_a_body_that_came_with_the_head_is_forwarded_exactly(
    make_proxy: ProxyFactory,
) -> None:
    # Head and body in one packet: the proxy has the whole body at once and sends it
    # upstream with the head, its Content-Length unchanged.
    p = await make_proxy()
    raw = await raw_exchange(
        p.url,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
        b"hello\x00world",
    )
    status, headers, body = split_response(raw)
    assert status == 200
    assert ("X-Request-Length", "11") in headers
    assert ("X-Request-Chunked", "") in headers
    assert body == b"hello\x00world"
    assert p.sample("http_request_body_size_bytes_sum", path="/echo") == 11


async def test_not_modified_keeps_its_content_length_and_no_body(
    make_proxy: ProxyFactory, raw_upstream
) -> None:
    # RFC 9110 §8.6: a 304 may carry the 200's Content-Length; it has no body either way.
    not_modified = b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n'
    up = await raw_upstream(replying(not_modified, keep_open=True))
    p = await make_proxy(upstream=up.url)
    for _ in range(2):  # the client connection stays usable: no body was expected or sent
        async with p.session.get(p.url + "/cached") as r:
            assert r.status == 304
            assert r.headers["Content-Length"] == "1234"
            assert r.headers["ETag"] == '"v1"'
            assert await r.read() == b""
