"""The response body goes to the client in the chunks the upstream's reads gave, not
joined into one copy (`sidecar.proxy.server.buffered_chunks`): aiohttp's own
`StreamReader` read by the relay's helpers, and a real nginx serving 6 MiB through the
proxy to a client that reads slowly, byte for byte."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader

from sidecar.proxy import lean
from sidecar.proxy.server import buffered_chunks, next_chunks
from tests.support.nginx import running_nginx
from tests.support.process import free_port
from tests.support.proxy import ProxyFactory

SIZE = 6 * 2**20 + 5


def _reader() -> StreamReader:
    """aiohttp's reader on a connected protocol (a limit above what the tests feed, so
    it never asks that transport to pause)."""
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(asyncio.Transport())
    return StreamReader(protocol, 2**20, loop=loop)


async def test_buffered_chunks_are_the_very_objects_fed() -> None:
    content = _reader()
    fed = [b"a" * 70_000, b"b" * 3, b"c" * 100_000]
    for chunk in fed:
        content.feed_data(chunk)
    taken = buffered_chunks(content)
    assert len(taken) == len(fed)
    assert all(got is sent for got, sent in zip(taken, fed, strict=True))  # no copy
    assert buffered_chunks(content) == []
    content.feed_eof()
    assert await next_chunks(content) == []  # the end of the body
    assert content.total_bytes == sum(map(len, fed))


async def test_next_chunks_waits_and_an_http_chunk_end_is_not_the_body_end() -> None:
    content = _reader()
    waiting = asyncio.ensure_future(next_chunks(content))
    content.begin_http_chunk_receiving()
    content.end_http_chunk_receiving()  # an empty HTTP chunk: nothing to send yet
    await asyncio.sleep(0)
    assert not waiting.done()
    content.begin_http_chunk_receiving()
    content.feed_data(b"first")
    content.end_http_chunk_receiving()
    content.begin_http_chunk_receiving()
    content.feed_data(b"second")
    assert await waiting == [b"first", b"second"]
    content.end_http_chunk_receiving()
    content.feed_eof()
    assert await next_chunks(content) == []


def test_an_empty_payload_has_no_chunks() -> None:
    assert buffered_chunks(EMPTY_PAYLOAD) == []


NGINX_CONF = """\
daemon off;
user root;
worker_processes 1;
pid {root}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {root}/www; sendfile on; tcp_nopush on; }}
        location /chunked {{ alias {root}/www/big; gzip on; gzip_types *; gzip_min_length 0;
                             gzip_comp_level 1; }}
    }}
}}
"""


@pytest.fixture
def nginx_upstream(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A real nginx on 127.0.0.1 serving ``/big`` (Content-Length, sendfile) and
    ``/chunked`` (gzipped on the fly: chunked); its URL and the file."""
    (tmp_path / "www").mkdir()
    (tmp_path / "tmp").mkdir()
    body = hashlib.shake_256(b"relay").digest(SIZE)
    (tmp_path / "www" / "big").write_bytes(body)
    port = free_port()
    with running_nginx(tmp_path, NGINX_CONF.format(root=tmp_path, port=port), (port,)):
        yield f"http://127.0.0.1:{port}", body


@pytest.mark.parametrize("path", ["/big", "/chunked"])
async def test_a_slow_client_gets_nginx_bytes_exactly_in_several_chunks_a_write(
    make_proxy: ProxyFactory,
    nginx_upstream: tuple[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
    proxy_engine: str,
    path: str,
) -> None:
    upstream, body = nginx_upstream
    sizes: list[int] = []  # chunks each write carried
    write_chunks = lean.LeanResponse.write_chunks

    async def spy(self: lean.LeanResponse, chunks: list[bytes], last: bool) -> None:
        sizes.append(len(chunks))
        await write_chunks(self, chunks, last)

    monkeypatch.setattr(lean.LeanResponse, "write_chunks", spy)
    p = await make_proxy(upstream=upstream)
    headers = {"Accept-Encoding": "gzip"} if path == "/chunked" else {}
    async with p.session.get(p.url + path, headers=headers, auto_decompress=False) as r:
        assert r.status == 200
        received = bytearray()
        while piece := await r.content.read(4096):
            received += piece
            await asyncio.sleep(0)  # a turn of the loop for the proxy: nginx sends faster
    if path == "/chunked":
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert r.headers["Content-Encoding"] == "gzip"
        received = bytearray(gzip.decompress(received))
    else:
        assert r.headers["Content-Length"] == str(SIZE)
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    if proxy_engine == "lean":
        assert sizes, "no write carried more than one chunk: the test proves nothing"
        assert max(sizes) > 1
