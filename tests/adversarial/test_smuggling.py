"""Case 1: ambiguous framing and malformed heads are 400 and never reach the app.

Input: raw bytes on a fresh socket. Expected: 400 (or 431 when the head is over the
limit), the connection closed, zero requests at the app, and a normal request served
right after. The proxy suite's table (`tests/proxy/test_smuggling.py`) already covers CL+TE,
TE+CL, non-numeric/negative/`+`/list CLs, two different CLs, `chunked, identity`,
`Transfer-Encoding : chunked`, bare LF and NUL; this file adds the rest of issue 7's list
(leading spaces and signs in CL, chunk sizes with junk or overflow, bare CR, NUL and
control bytes in names) and runs under both parsers: the C extension in the normal run,
the pure-Python one in a subprocess with ``AIOHTTP_NO_EXTENSIONS=1``.
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
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"

CASES = {
    "cl-leading-plus-space": POST + b"Content-Length: + 5\r\n\r\nhello",
    "cl-leading-zero-x": POST + b"Content-Length: 0x5\r\n\r\nhello",
    "cl-space-inside": POST + b"Content-Length: 5 5\r\n\r\nhello",
    "cl-space-before-colon": POST + b"Content-Length : 5\r\n\r\nhello",
    "cl-leading-space-name": POST + b" Content-Length: 5\r\n\r\nhello",
    "cl-overflow": POST + b"Content-Length: 99999999999999999999999999\r\n\r\nhello",
    "cl-and-te-chunked-identity": POST
    + b"Content-Length: 5\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-identity-then-chunked-and-cl": POST
    + b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    "te-tab-before-colon": POST + b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
    "chunk-size-junk": CHUNKED + b"5 junk\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": CHUNKED + b"fffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "chunk-size-negative": CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-plus": CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-empty": CHUNKED + b"\r\nhello\r\n0\r\n\r\n",
    "chunk-data-too-long": CHUNKED + b"2\r\nhello\r\n0\r\n\r\n",
    "bare-cr-in-value": b"GET /x HTTP/1.1\r\nHost: a\r\nX-Y: a\rb\r\n\r\n",
    "bare-cr-line-end": b"GET /x HTTP/1.1\rHost: a\r\n\r\n",
    "nul-in-name": b"GET /x HTTP/1.1\r\nHost: a\r\nX\x00Y: z\r\n\r\n",
    "ctl-in-name": b"GET /x HTTP/1.1\r\nHost: a\r\nX\x01Y: z\r\n\r\n",
    "space-in-name": b"GET /x HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n",
    "lf-in-target": b"GET /x\ny HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad-version": b"GET /x HTTP/1.1x\r\nHost: a\r\n\r\n",
}
# Written after a rejected head on the same bytes: a smuggled request would reach the app.
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.fixture
async def guarded(make_proxy: ProxyFactory, raw_upstream):
    up = await raw_upstream(
        replying(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", keep_open=True)
    )
    return await make_proxy(upstream=up.url, max_header_bytes=4096), up


def test_the_expected_parser_is_in_use() -> None:
    """C extension in the normal run, pure Python in the AIOHTTP_NO_EXTENSIONS=1 run."""
    module = http_parser.HttpRequestParser.__module__
    assert module == ("aiohttp.http_parser" if PURE_PYTHON_RUN else "aiohttp._http_parser")


@pytest.mark.parametrize("raw", list(CASES.values()), ids=list(CASES))
async def test_malformed_head_is_refused_and_never_forwarded(guarded, raw: bytes) -> None:
    proxy, upstream = guarded
    status, _, _ = split_response(await raw_exchange(proxy.url, raw + SMUGGLED))
    assert status == 400
    assert upstream.heads == []  # neither the request nor what followed it
    assert proxy.sample("sidecar_proxy_errors_total", reason="bad_request") == 1
    # still serving
    again = await raw_exchange(
        proxy.url, b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert split_response(again)[0] == 200
    assert [h.split(b" ")[1] for h in upstream.heads] == [b"/ok"]


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
    engine_cases = len(CASES) * len(ENGINES)  # each case under both proxy engines
    assert f"{engine_cases + 1} passed, 1 skipped" in result.stdout, result.stdout[-2000:]
