"""The events hook: wanted bodies are inspected and forwarded byte for byte."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from sidecar.config import EventsConfig
from tests.support.proxy import ProxyFactory, split_response

LIMIT = 4096
EVENTS = EventsConfig(enabled=True, max_body_bytes=LIMIT)


@dataclass
class RecordingInspector:
    """A real implementation of the EventInspector protocol that remembers its calls."""

    requests: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    responses: list[tuple[str, int, str | None, bytes]] = field(default_factory=list)
    explode: bool = False

    def wants_request(self, method: str, path: str) -> bool:
        return method == "POST" and path == "/echo"

    def inspect_request(self, path: str, content_type: str | None, body: bytes) -> None:
        self.requests.append((path, content_type, body))
        if self.explode:
            raise ValueError("inspector bug")

    def request_skipped(self, path: str) -> None:
        self.skipped.append(path)

    def wants_response(self, path: str) -> bool:
        return path == "/echo"

    def inspect_response(
        self, path: str, status: int, content_type: str | None, body: bytes
    ) -> None:
        self.responses.append((path, status, content_type, body))
        if self.explode:
            raise ValueError("inspector bug")


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), 1000):
        yield data[offset : offset + 1000]


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
async def test_small_bodies_are_inspected_and_forwarded_unchanged(
    make_proxy: ProxyFactory, chunked: bool
) -> None:
    inspector = RecordingInspector()
    p = await make_proxy(inspector=inspector, events=EVENTS)
    data = os.urandom(LIMIT)
    body = _chunks(data) if chunked else data
    headers = {"Content-Type": "application/json"}
    async with p.session.post(p.url + "/echo?x=1", data=body, headers=headers) as r:
        assert await r.read() == data
        # the framing the client chose reaches the app: chunked stays chunked
        assert r.headers["X-Request-Chunked"] == ("chunked" if chunked else "")
        assert r.headers["X-Request-Length"] == ("" if chunked else str(LIMIT))
    assert inspector.requests == [("/echo", "application/json", data)]
    assert inspector.responses == [("/echo", 200, "application/octet-stream", data)]
    assert inspector.skipped == []


async def test_inspected_body_with_expect_100_continue(make_proxy: ProxyFactory) -> None:
    inspector = RecordingInspector()
    p = await make_proxy(inspector=inspector, events=EVENTS)
    host, port = p.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"hello")
        rest = await asyncio.wait_for(reader.read(-1), 5)
    finally:
        writer.close()
    status, _, body = split_response(rest)
    assert status == 200
    assert body == b"hello"
    assert inspector.requests == [("/echo", None, b"hello")]


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
async def test_large_bodies_pass_uninspected(make_proxy: ProxyFactory, chunked: bool) -> None:
    inspector = RecordingInspector()
    p = await make_proxy(inspector=inspector, events=EVENTS)
    data = os.urandom(LIMIT * 3 + 1)
    body = _chunks(data) if chunked else data
    async with p.session.post(p.url + "/echo", data=body) as r:
        echoed = await r.read()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()
    assert inspector.requests == []
    assert inspector.skipped == ["/echo"]
    assert inspector.responses == []


async def test_inspector_errors_never_change_the_exchange(make_proxy: ProxyFactory) -> None:
    inspector = RecordingInspector(explode=True)
    p = await make_proxy(inspector=inspector, events=EVENTS)
    async with p.session.post(p.url + "/echo", data=b"{}") as r:
        assert r.status == 200
        assert await r.read() == b"{}"
    assert len(inspector.requests) == len(inspector.responses) == 1


async def test_inspector_unused_when_events_disabled(make_proxy: ProxyFactory) -> None:
    inspector = RecordingInspector()
    p = await make_proxy(inspector=inspector)
    async with p.session.post(p.url + "/echo", data=b"{}") as r:
        assert await r.read() == b"{}"
    assert inspector.requests == inspector.responses == []
