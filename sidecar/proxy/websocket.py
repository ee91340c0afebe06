"""WebSocket upgrades, relayed frame by frame in both directions.

Text, binary, ping and pong frames keep their type and payload; a close frame's code
and reason are passed on to the other side. The session counts in
``http_request_total`` with status 101 and stays out of the latency histograms.

On drain (design §10) the proxy sets its ``going_away`` event: each open session stops
relaying and closes both sides with 1001 (Going Away), waiting for their close frames, so
a WebSocket ends cleanly at the start of the drain instead of being cut at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from sidecar.proxy.headers import request_headers
from sidecar.proxy.metrics import ProxyMetrics
from sidecar.proxy.proxylog import FailureLog
from sidecar.proxy.upstream import Upstream, translate

__all__ = ["is_websocket_upgrade", "relay_websocket", "upstream_headers"]

log = logging.getLogger(__name__)

GOING_AWAY = aiohttp.WSCloseCode.GOING_AWAY  # 1001
GOING_AWAY_REASON = b"proxy shutting down"

# Negotiated per hop by aiohttp on each side; forwarding them would mix two handshakes.
WEBSOCKET_HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "host",
    }
)

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    """True for a GET asking ``Upgrade: websocket`` with ``Connection: upgrade``."""
    headers = request.headers
    return (
        request.method == "GET"
        and headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in headers.get("Connection", "").lower()
    )


def upstream_headers(request: web.BaseRequest, *, forwarded: bool) -> CIMultiDict[str]:
    """The client's end-to-end headers (the proxy's header policy, ``X-Forwarded-*`` when
    ``forwarded``) without the handshake's own, which aiohttp's client writes afresh."""
    out = request_headers(
        request.headers, peer=request.remote, scheme=request.scheme, forwarded=forwarded
    )
    for name in WEBSOCKET_HANDSHAKE_HEADERS:
        out.popall(name, None)
    out["Host"] = request.host
    return out


async def relay_websocket(
    request: web.BaseRequest,
    upstream: Upstream,
    metrics: ProxyMetrics,
    method: str,
    path: str,
    going_away: asyncio.Event,
    *,
    forwarded: bool = True,
    failures: FailureLog | None = None,
    opened: Callable[[], None] | None = None,
) -> web.StreamResponse:
    """Open the upstream WebSocket first, then accept the client's and pump both ways
    until either side closes, or ``going_away`` is set (both sides then get 1001)."""
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    protocols = [p for p in protocols if p]
    url = upstream.base.replace("http", "ws", 1) + request.raw_path  # https: wss
    tls = upstream.tls
    try:
        remote = await upstream.session.ws_connect(
            url,
            ssl=True if tls is None else tls.context,
            server_hostname=None if tls is None else tls.server_hostname,
            headers=upstream_headers(request, forwarded=forwarded),
            protocols=protocols,
            autoping=False,
            autoclose=False,
            max_msg_size=0,
        )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        error = translate(exc)
        if isinstance(exc, aiohttp.WSServerHandshakeError):
            return web.Response(status=exc.status or 502, text="upstream refused the upgrade\n")
        metrics.error(error.reason)
        if failures is not None:
            failures.failed(
                error.reason, method, path, error.status, error.detail or type(exc).__name__
            )
        return web.Response(status=error.status, text=error.message + "\n")
    local = web.WebSocketResponse(
        protocols=[remote.protocol] if remote.protocol else (),
        autoping=False,
        autoclose=False,
        max_msg_size=0,
    )
    metrics.websocket(method, path)
    try:
        await local.prepare(request)
        if opened is not None:
            opened()
        await _pump_both(local, remote, going_away)
    finally:
        await remote.close()
    return local


async def _pump_both(
    local: web.WebSocketResponse,
    remote: aiohttp.ClientWebSocketResponse,
    going_away: asyncio.Event,
) -> None:
    pumps = [
        asyncio.ensure_future(_pump(local, remote)),
        asyncio.ensure_future(_pump(remote, local)),
    ]
    drain = asyncio.ensure_future(going_away.wait())
    try:
        done, _ = await asyncio.wait([*pumps, drain], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*pumps, drain):
            task.cancel()
        for task in (*pumps, drain):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if drain in done and not any(pump in done for pump in pumps):
        await _go_away(local, remote)


async def _go_away(local: web.WebSocketResponse, remote: aiohttp.ClientWebSocketResponse) -> None:
    """Close both sides with 1001 and wait for their close frames (each socket's own
    close timeout bounds the wait; the drain timeout bounds the whole)."""
    results = await asyncio.gather(
        local.close(code=GOING_AWAY, message=GOING_AWAY_REASON),
        remote.close(code=GOING_AWAY, message=GOING_AWAY_REASON),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            log.info("closing a WebSocket on drain failed: %r", result)


async def _pump(source: Socket, sink: Socket) -> None:
    """Forward frames from ``source`` to ``sink`` until a close (passed on) or an error."""
    while True:
        message = await source.receive()
        kind = message.type
        if kind is WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif kind is WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif kind is WSMsgType.PING:
            await sink.ping(message.data)
        elif kind is WSMsgType.PONG:
            await sink.pong(message.data)
        elif kind is WSMsgType.CLOSE:
            await sink.close(code=message.data, message=(message.extra or "").encode())
            return
        else:  # CLOSING, CLOSED, ERROR: the other side is gone
            await sink.close()
            return
