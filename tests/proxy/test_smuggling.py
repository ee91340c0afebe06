"""Request smuggling: ambiguous or malformed heads are 400 (431 when too big), never forwarded.

These run with whichever HTTP parser aiohttp loaded. `test_c_parser_is_in_use` proves that
is the C one in the normal run; `test_same_cases_with_the_pure_python_parser` re-runs this
file in a subprocess with ``AIOHTTP_NO_EXTENSIONS=1`` and checks that run used the Python one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import http_parser

from tests.support.proxy import ENGINES, ProxyFactory, raw_exchange, replying, split_response

PURE_PYTHON_RUN = os.environ.get("AIOHTTP_NO_EXTENSIONS") == "1"
POST = b"POST /x HTTP/1.1\r\nHost: a\r\n"

CASES = {
    "cl-and-te": POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "cl-not-a-number": POST + b"Content-Length: abc\r\n\r\n",
    "cl-negative": POST + b"Content-Length: -1\r\n\r\n",
    "cl-plus-sign": POST + b"Content-Length: +5\r\n\r\nhello",
    "cl-list": POST + b"Content-Length: 5, 5\r\n\r\nhello",
    "cl-repeated-conflicting": POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "te-xchunked": POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-chunked-then-identity": POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-space-before-colon": POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "te-vertical-tab": POST + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
    "te-line-folding": POST + b"Transfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n",
    "bare-lf-in-head": b"GET /x HTTP/1.1\nHost: a\n\n",
    "bare-lf-after-header": b"GET /x HTTP/1.1\r\nHost: a\nX-Y: z\r\n\r\n",
    "nul-in-value": b"GET /x HTTP/1.1\r\nHost: a\r\nX-Y: a\x00b\r\n\r\n",
    "nul-in-target": b"GET /x\x00y HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad-chunk-size": POST + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
}


@pytest.fixture
async def guarded(make_proxy: ProxyFactory, raw_upstream):
    up = await raw_upstream(
        replying(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", keep_open=False)
    )
    return await make_proxy(upstream=up.url, max_header_bytes=4096), up


def test_c_parser_is_in_use_unless_disabled() -> None:
    module = http_parser.HttpRequestParser.__module__
    if PURE_PYTHON_RUN:
        assert module == "aiohttp.http_parser", module
    else:
        assert module == "aiohttp._http_parser", module


@pytest.mark.parametrize("raw", list(CASES.values()), ids=list(CASES))
async def test_malformed_head_is_400_and_never_forwarded(guarded, raw: bytes) -> None:
    proxy, upstream = guarded
    answer = await raw_exchange(proxy.url, raw)
    status, headers, _ = split_response(answer)
    assert status == 400
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")  # not aiohttp's HTTP/1.0
    assert ("Connection", "close") in headers
    assert upstream.heads == []
    assert proxy.sample("sidecar_proxy_errors_total", reason="bad_request") == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 5000 + b"\r\n\r\n",
        b"GET /" + b"p" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 60) for i in range(80))
        + b"\r\n",
    ],
    ids=["one-header", "request-line", "many-headers"],
)
async def test_head_over_the_limit_is_431(guarded, raw: bytes) -> None:
    proxy, upstream = guarded
    answer = await raw_exchange(proxy.url, raw)
    assert split_response(answer)[0] == 431
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert upstream.heads == []


async def test_a_well_formed_request_still_passes(guarded) -> None:
    proxy, upstream = guarded
    raw = await raw_exchange(
        proxy.url, POST + b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    assert split_response(raw)[0] == 200
    assert len(upstream.heads) == 1


@pytest.mark.skipif(PURE_PYTHON_RUN, reason="this is the subprocess run itself")
def test_same_cases_with_the_pure_python_parser() -> None:
    env = {**os.environ, "AIOHTTP_NO_EXTENSIONS": "1"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(Path(__file__).relative_to(root))],
        cwd=root, env=env, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    engine_cases = (len(CASES) + 4) * len(ENGINES)  # each case under both engines
    assert f"{engine_cases + 1} passed, 1 skipped" in result.stdout, result.stdout[-2000:]
