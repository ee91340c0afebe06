"""A refused request head is answered in HTTP/1.1, as nginx answers it (raw sockets).

aiohttp writes its error answers with the HTTP/1.0 of a placeholder request; nginx (and
RFC 9110 §2.5: the highest minor version of the request's major version the server
speaks) answers any HTTP/1.x client in HTTP/1.1. The same bytes go to a real nginx and
to the proxy; both status lines must match.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import free_port
from tests.support.proxy import ProxyFactory, raw_exchange
from tests.support.tls_upstream import TlsUpstream, running_nginx

CASES = {
    "http11-content-length-not-a-number": (
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"
    ),
    "http11-content-length-and-chunked": (
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "http10-content-length-not-a-number": b"POST /x HTTP/1.0\r\nContent-Length: abc\r\n\r\n",
}


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[TlsUpstream]:
    with running_nginx(tmp_path, free_port(), b"static") as upstream:
        yield upstream


def status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("raw", list(CASES.values()), ids=list(CASES))
async def test_a_refused_head_is_answered_in_http_1_1_like_nginx(
    make_proxy: ProxyFactory, nginx: TlsUpstream, raw: bytes
) -> None:
    theirs = status_line(await raw_exchange(f"http://127.0.0.1:{nginx.plain_port}", raw))
    proxy = await make_proxy()
    ours = status_line(await raw_exchange(proxy.url, raw))
    assert theirs == b"HTTP/1.1 400 Bad Request"  # what nginx does with it
    assert ours == theirs
