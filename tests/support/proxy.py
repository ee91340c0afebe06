"""Proxy test helpers: a real upstream app on 127.0.0.1, the proxy in front of it
(fixtures ``proxy_engine``, ``make_proxy``), raw-socket exchanges and a raw upstream
(fixture ``raw_upstream``). Used by the proxy, adversarial and events tests."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.config import Address, Config, ProxyConfig
from sidecar.observability import Metrics, Module
from sidecar.proxy import ProxyComponent, create_proxy, proxy_views

HITS = web.AppKey("hits", dict[str, int])
RELEASE = web.AppKey("release", asyncio.Event)
WS_CLOSES = web.AppKey("ws_closes", list[int | None])
WS_HEADERS = web.AppKey("ws_headers", list["CIMultiDictProxy[str]"])


def blob(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


async def echo(request: web.Request) -> web.StreamResponse:
    """Stream the body back: fixed length when the request had one, else chunked."""
    response = web.StreamResponse()
    response.headers["X-Request-Chunked"] = str(request.headers.get("Transfer-Encoding", ""))
    response.headers["X-Request-Length"] = str(request.headers.get("Content-Length", ""))
    if request.content_length is not None:
        response.content_length = request.content_length
    await response.prepare(request)
    digest = hashlib.sha256()
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        await response.write(chunk)
    await response.write_eof()
    return response


async def headers(request: web.Request) -> web.Response:
    """The raw request head as JSON: [[name, value], ...] in order."""
    raw = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers]
    body = await request.read()
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.json_response(
        {"headers": raw, "method": request.method, "body": len(body), "peer_port": peer and peer[1]}
    )


async def download(request: web.Request) -> web.StreamResponse:
    """``size`` deterministic bytes, fixed length or (``?chunked=1``) chunked."""
    size = int(request.query.get("size", "1000"))
    data = blob(size, seed=size)
    response = web.StreamResponse()
    if request.query.get("chunked"):
        response.enable_chunked_encoding()
    else:
        response.content_length = size
    response.headers["X-Sha256"] = hashlib.sha256(data).hexdigest()
    await response.prepare(request)
    if request.method == "HEAD":  # aiohttp's StreamResponse would write the body anyway
        return response
    view = memoryview(data)
    for offset in range(0, size, 65536):
        await response.write(view[offset : offset + 65536])
    await response.write_eof()
    return response


async def gzipped(request: web.Request) -> web.Response:
    """A gzip body with Content-Encoding: gzip (must pass untouched)."""
    import gzip

    return web.Response(
        body=gzip.compress(b"hello " * 1000, mtime=0),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )


async def cookies(request: web.Request) -> web.Response:
    """Repeated and hop-by-hop headers in a known order."""
    response = web.Response(text="ok")
    response.headers.add("X-First", "1")
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("X-Middle", "2")
    response.headers.add("Set-Cookie", "b=2; Path=/")
    response.headers.add("Connection", "X-Secret-Hop")
    response.headers.add("X-Secret-Hop", "hidden")
    response.headers.add("Keep-Alive", "timeout=5")
    response.headers.add("Proxy-Authenticate", "Basic")
    return response


async def status(request: web.Request) -> web.Response:
    """Any status, with an empty body."""
    return web.Response(status=int(request.match_info["code"]))


async def slow(request: web.Request) -> web.Response:
    """Headers only after the test releases them (or a long wait)."""
    await asyncio.wait_for(request.app[RELEASE].wait(), 30)
    return web.Response(text="late")


async def count(request: web.Request) -> web.Response:
    """Count hits per method."""
    await request.read()
    hits = request.app[HITS]
    hits[request.method] = hits.get(request.method, 0) + 1
    return web.Response(text=str(hits[request.method]))


async def sse(request: web.Request) -> web.StreamResponse:
    """One event, then wait for the test to release the rest."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: first\n\n")
    await asyncio.wait_for(request.app[RELEASE].wait(), 30)
    await response.write(b"data: second\n\n")
    await response.write_eof()
    return response


async def held(request: web.Request) -> web.StreamResponse:
    """The head at once, the (fixed-length) body only once the test releases it."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    response = web.StreamResponse(headers={"X-Held": "yes", "X-Peer-Port": str(peer and peer[1])})
    response.content_length = 4
    await response.prepare(request)
    await asyncio.wait_for(request.app[RELEASE].wait(), 30)
    await response.write(b"body")
    await response.write_eof()
    return response


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Echo frames; ``close:CODE:REASON`` makes the server close with that code."""
    request.app[WS_HEADERS].append(request.headers)  # the handshake as the app saw it
    ws = web.WebSocketResponse(protocols=("chat",))
    await ws.prepare(request)
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            if message.data.startswith("close:"):
                _, code, reason = message.data.split(":", 2)
                await ws.close(code=int(code), message=reason.encode())
                break
            await ws.send_str(message.data)
        elif message.type is aiohttp.WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    request.app[WS_CLOSES].append(ws.close_code)
    return ws


def upstream_app() -> web.Application:
    """The upstream app the tests put the proxy in front of."""
    app = web.Application(client_max_size=2**31)
    app[HITS] = {}
    app[RELEASE] = asyncio.Event()
    app[WS_CLOSES] = []
    app[WS_HEADERS] = []
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/headers", headers)
    app.router.add_get("/download", download)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/cookies", cookies)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/count", count)
    app.router.add_get("/sse", sse)
    app.router.add_get("/held", held)
    app.router.add_get("/ws", websocket)
    return app


@dataclass
class Proxied:
    """A running proxy and what tests need to talk to it."""

    component: ProxyComponent
    module: Module
    url: str
    upstream: str  # the base URL the proxy forwards to
    upstream_app: web.Application | None
    session: aiohttp.ClientSession
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics_text(self) -> str:
        """The module's exposition text."""
        return generate_latest(self.module.registry).decode()

    def sample(self, name: str, **labels: str) -> float:
        """The value of one sample (0 when absent)."""
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0


ProxyFactory = Callable[..., Awaitable[Proxied]]


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


ENGINES = ("aiohttp", "lean")


@pytest.fixture(params=ENGINES)
def proxy_engine(request: pytest.FixtureRequest) -> str:
    """``proxy.engine``: every test that builds a proxy runs under both engines."""
    return str(request.param)


@pytest.fixture
async def make_proxy(aiohttp_server: Any, proxy_engine: str) -> AsyncIterator[ProxyFactory]:
    """Build a proxy (default: in front of `upstream_app`) with config overrides, under
    the engine `proxy_engine` says unless ``engine=`` is given."""
    started: list[Proxied] = []

    async def factory(
        upstream: str | None = None, inspector: Any = None, events: Any = None, **proxy: Any
    ) -> Proxied:
        app = None
        if upstream is None:
            app = upstream_app()
            server = await aiohttp_server(app)
            upstream = f"http://127.0.0.1:{server.port}"
        proxy.setdefault("engine", proxy_engine)
        proxy_config = dataclasses.replace(
            ProxyConfig(), listen=Address("127.0.0.1", 0), upstream=upstream, **proxy
        )
        config = Config(proxy=proxy_config)
        if events is not None:
            config = dataclasses.replace(config, events=events)
        module = Module.new("test", views=proxy_views(proxy_config))
        component = create_proxy(config, module, Metrics.create(module.meter), inspector)
        await component.start()
        address = component.addresses[0]
        session = aiohttp.ClientSession(auto_decompress=False)
        url = f"http://127.0.0.1:{address.port}"
        proxied = Proxied(component, module, url, upstream, app, session)
        started.append(proxied)
        return proxied

    yield factory
    for p in started:
        await p.session.close()
        await p.component.stop(1.0)
        await p.module.shutdown()


async def raw_exchange(url: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes to the proxy and read until it closes the connection."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read(-1)
    finally:
        writer.close()


def split_response(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, [(name, value)...], body) of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    pairs = [tuple(line.split(": ", 1)) for line in lines[1:]]
    return status, [(k, v) for k, v in pairs], body


Behaviour = Callable[[int, bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


def replying(response: bytes, *, keep_open: bool) -> Behaviour:
    """A `RawUpstream` behaviour answering every request with ``response`` as written;
    the connection then stays open for the next request or is closed."""

    async def reply(
        n: int, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        writer.write(response)
        await writer.drain()
        return keep_open

    return reply


@dataclass
class RawUpstream:
    """A hand-written HTTP/1.1 upstream for failure cases aiohttp's server cannot produce.

    ``behaviour(n, head, reader, writer)`` is called for each request head read on a
    connection (``n`` counts requests on that connection from 0); the server records every
    head it received and every connection that reached EOF.
    """

    url: str = ""
    heads: list[bytes] = field(default_factory=list)
    closed: int = 0
    server: asyncio.Server | None = None


async def start_raw_upstream(behaviour: Behaviour) -> RawUpstream:
    """Start it; ``behaviour`` returns False to stop serving that connection."""
    state = RawUpstream()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                state.heads.append(head)
                if not await behaviour(n, head, reader, writer):
                    break
                n += 1
        finally:
            state.closed += 1
            writer.close()

    state.server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = state.server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    return state


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[..., Awaitable[RawUpstream]]]:
    """Factory of `RawUpstream` servers, closed after the test."""
    servers: list[RawUpstream] = []

    async def factory(behaviour: Any) -> RawUpstream:
        state = await start_raw_upstream(behaviour)
        servers.append(state)
        return state

    yield factory
    for state in servers:
        assert state.server is not None
        state.server.close()
