"""The proxy's client side: aiohttp's low-level server and the forwarding handler.

aiohttp's HTTP parser (the C one when the extensions are built) reads the client's
request; `web.Server` skips the application router and middleware chain, which the
proxy does not need (it owns no path). One request, one straight line:

    label -> admission (503) -> header size (431) -> body size (413)
          -> upgrade? (WebSocket relay) -> send upstream (502/504)
          -> stream the response back (abort on upstream reset) -> record metrics
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.hdrs import CONNECTION
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpRequestParserPy
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

from sidecar.config import Address, Config
from sidecar.lifecycle import bound_addresses
from sidecar.proxy.framing import frame_response
from sidecar.proxy.headers import request_headers, response_headers
from sidecar.proxy.inspection import EventInspector, ResponseTee, call_safely
from sidecar.proxy.lean import (
    LINGER_BYTES,
    LINGER_SECONDS,
    LeanListener,
    LeanRequest,
    LeanResponse,
    RelayResponse,
    refusal,
)
from sidecar.proxy.metrics import STATUS_CLIENT_CLOSED, ProxyMetrics
from sidecar.proxy.parser import strict_request_parser
from sidecar.proxy.proxylog import AccessLog, FailureLog
from sidecar.proxy.routes import RouteLabeler, method_label
from sidecar.proxy.upstream import Body, Upstream, UpstreamError, UpstreamResponse
from sidecar.proxy.websocket import is_websocket_upgrade, relay_websocket

__all__ = ["ProxyComponent", "ProxyHandler"]

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"
CONTINUE_LINE = b"HTTP/1.1 100 Continue\r\n\r\n"
UPSTREAM_BODY_ERRORS = (aiohttp.ClientError, HttpProcessingError, TimeoutError, OSError)


# A request as either engine hands it to `ProxyHandler.handle`, the response a relayed
# one is streamed into (made by the engine's ``respond``), and what the handler returns.
Request = web.BaseRequest | LeanRequest
Respond = Callable[[int, str, CIMultiDict[str]], RelayResponse]
Answer = web.StreamResponse | RelayResponse


class RequestTooLarge(Exception):
    """The client's streamed body passed ``proxy.max_request_body``."""


@dataclass(slots=True)
class Exchange:
    """What the metrics need to know about one request, filled in as it goes."""

    method: str
    path: str
    start: float
    status: int = 0
    ttfb: float | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    websocket: bool = False
    body_too_large: bool = False


def _plain(status: int, text: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


def _header_section_size(request: Request) -> int:
    """Bytes of the request line and header section as received."""
    line = len(request.method) + len(request.raw_path) + 11
    return line + sum(len(k) + len(v) + 4 for k, v in request.raw_headers) + 2


class ProxyHandler:
    """Forwards each request to the upstream and records it."""

    def __init__(
        self,
        config: Config,
        upstream: Upstream,
        metrics: ProxyMetrics,
        labeler: RouteLabeler,
        inspector: EventInspector | None,
    ) -> None:
        self._proxy = config.proxy
        self._events = config.events
        self._upstream = upstream
        self._metrics = metrics
        self._labeler = labeler
        self._inspector = inspector if config.events.enabled else None
        self.failures = FailureLog(upstream.display)
        # None when off: the only cost per request then is one check (set it to toggle)
        self.access_log = AccessLog(upstream.display) if config.logging.access_log else None
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.going_away = asyncio.Event()  # set on drain: WebSockets close with 1001

    def reconfigure(self, config: Config, inspector: EventInspector | None) -> None:
        """Apply a reloaded config (SIGHUP) to what the request path reads.

        ``config`` is the running config (`sidecar.reload.running_config`: only keys that
        need no new listener or upstream pool differ). Each setting is one reference the
        request path already reads, swapped here: the ``proxy`` section, the route
        labeler (rebuilt, its label count starting again, when ``routes``,
        ``unmatched_routes`` or ``max_route_labels`` changed), the events inspector and
        section, and the access log.
        """
        new, old = config.proxy, self._proxy
        routing = (new.routes, new.unmatched_routes, new.max_route_labels)
        if routing != (old.routes, old.unmatched_routes, old.max_route_labels):
            self._labeler = RouteLabeler(*routing, on_overflow=self._metrics.overflow)
        self._proxy = new
        self._events = config.events
        self._inspector = inspector if config.events.enabled else None
        if config.logging.access_log != (self.access_log is not None):
            self.access_log = (
                AccessLog(self._upstream.display) if config.logging.access_log else None
            )

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        """Proxy one request (the aiohttp engine's handler: the low-level server's)."""
        answer = await self.handle(request, _relayed)
        assert isinstance(answer, web.StreamResponse)
        return answer

    async def handle(self, request: Request, respond: Respond) -> Answer:
        """Proxy one request; a relayed response streams into what ``respond`` makes."""
        ex = Exchange(
            method_label(request.method), self._labeler.label(request.raw_path), time.perf_counter()
        )
        if self.in_flight >= self._proxy.max_in_flight:
            retry = {"Retry-After": RETRY_AFTER_SECONDS}
            return self._reject(ex, 503, "overloaded", "proxy overloaded", retry)
        self.in_flight += 1
        self.idle.clear()
        try:
            return await self._handle(request, ex, respond)
        except asyncio.CancelledError:
            self._client_left(ex)
            raise
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()
            self._record(ex)
            if self.access_log is not None:
                self.access_log.write(request, ex)

    def _record(self, ex: Exchange) -> None:
        if ex.websocket:
            return
        now = time.perf_counter()
        ttfb = None if ex.ttfb is None else (ex.ttfb - ex.start) * 1000.0
        self._metrics.exchange(
            ex.method,
            ex.path,
            ex.status,
            (now - ex.start) * 1000.0,
            ttfb,
            ex.request_bytes,
            ex.response_bytes,
        )

    def _client_left(self, ex: Exchange) -> None:
        # mid-body, 499; a WebSocket session that opened stays 101 (its client ends it)
        if ex.status == 0 or (ex.ttfb is not None and not ex.websocket):
            ex.status = STATUS_CLIENT_CLOSED
        self._metrics.error("client_disconnect")

    def _reject(
        self,
        ex: Exchange,
        status: int,
        reason: str,
        text: str,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        """A short plain-text error answered by the proxy itself, counted by reason."""
        self._metrics.error(reason)
        ex.status = status
        return _plain(status, text, headers)

    def _too_large(self, ex: Exchange) -> web.Response:
        response = self._reject(ex, 413, "request_too_large", "request body too large")
        response.force_close()  # the rest of the body is not read
        return response

    async def _handle(self, request: Request, ex: Exchange, respond: Respond) -> Answer:
        if _header_section_size(request) > self._proxy.max_header_bytes:
            response = self._reject(ex, 431, "bad_request", "request header section too large")
            response.force_close()
            return response
        limit = self._proxy.max_request_body
        length = request.content_length
        if limit and length is not None and length > limit:
            return self._too_large(ex)
        if isinstance(request, web.BaseRequest) and is_websocket_upgrade(request):
            ex.websocket = True
            session = await relay_websocket(
                request,
                self._upstream,
                self._metrics,
                ex.method,
                ex.path,
                self.going_away,
                forwarded=self._proxy.forwarded_headers,
                failures=self.failures,
                opened=lambda: _websocket_opened(ex),
            )
            ex.status = session.status
            return session
        headers = request_headers(
            request.headers,
            peer=request.remote,
            scheme=request.scheme,
            forwarded=self._proxy.forwarded_headers,
        )
        try:
            body = await self._request_body(request, ex)
            upstream = await self._upstream.send(request.method, _target(request), headers, body)
        except RequestTooLarge:
            return self._too_large(ex)
        except UpstreamError as exc:
            if ex.body_too_large:
                return self._too_large(ex)
            self.failures.failed(exc.reason, ex.method, ex.path, exc.status, _detail(exc))
            return self._reject(ex, exc.status, exc.reason, exc.message)
        return await self._relay(request, upstream, ex, respond)

    # ----------------------------------------------------------------- request body

    async def _request_body(self, request: Request, ex: Exchange) -> Body:
        if not request.body_exists:
            return None
        inspector = self._inspector
        path = ""
        if inspector is not None:
            path = request.raw_path.partition("?")[0]
            if not inspector.wants_request(request.method, path):
                inspector = None
        content = request.content
        if content.is_eof() and request.content_length is not None:
            body = content.read_nowait(-1)  # all of it came with the head: one write upstream
            self._count_request_bytes(ex, len(body))
            if inspector is not None:  # and inspected without waiting
                self._inspect_whole(request, inspector, path, body)
            return body
        if inspector is not None:
            return await self._inspected_body(request, ex, inspector, path)
        return self._stream_body(request, ex, b"")

    def _inspect_whole(
        self, request: Request, inspector: EventInspector, path: str, body: bytes
    ) -> None:
        """Inspect a wanted body already read whole (skipped past the limit)."""
        if len(body) > self._events.max_body_bytes:
            call_safely("request_skipped", inspector.request_skipped, path)
        else:
            content_type = request.headers.get("Content-Type")
            call_safely("inspect_request", inspector.inspect_request, path, content_type, body)

    async def _inspected_body(
        self, request: Request, ex: Exchange, inspector: EventInspector, path: str
    ) -> Body:
        """Read a wanted body whole when it fits the limit; else stream it uninspected."""
        limit = self._events.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            call_safely("request_skipped", inspector.request_skipped, path)
            return self._stream_body(request, ex, b"")
        self._send_continue(request)
        chunks: list[bytes] = []
        size = 0
        content = request.content
        while size <= limit:
            chunk = await content.readany()
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size == length:  # all it said it would send: no further read to see the end
                break
        prefix = b"".join(chunks)  # one copy at most: a single chunk is returned as it is
        if len(prefix) > limit:
            call_safely("request_skipped", inspector.request_skipped, path)
            return self._stream_body(request, ex, prefix)
        self._inspect_whole(request, inspector, path, prefix)
        if length is not None:  # the whole body, as long as it said: sent in one write
            self._count_request_bytes(ex, len(prefix))
            return prefix
        return self._stream_body(request, ex, prefix)  # chunked stays chunked

    def _count_request_bytes(self, ex: Exchange, size: int) -> None:
        ex.request_bytes += size
        limit = self._proxy.max_request_body
        if limit and ex.request_bytes > limit:
            ex.body_too_large = True
            raise RequestTooLarge

    def _send_continue(self, request: Request) -> None:
        """Answer ``Expect: 100-continue`` once the proxy starts reading the body."""
        if request.headers.get("Expect", "").lower() == "100-continue":
            transport = request.transport
            if transport is not None and not transport.is_closing():
                transport.write(CONTINUE_LINE)

    async def _stream_body(
        self, request: Request, ex: Exchange, prefix: bytes
    ) -> AsyncIterator[bytes]:
        """The client's body, chunk by chunk as it arrives (the upstream sends it on)."""
        if prefix:
            self._count_request_bytes(ex, len(prefix))
            yield prefix
        elif ex.status == 0:  # never after the response head went out
            self._send_continue(request)
        content = request.content
        while chunks := await next_chunks(content):  # as they came: no copy into one
            for chunk in chunks:
                self._count_request_bytes(ex, len(chunk))
                yield chunk

    # ---------------------------------------------------------------- response body

    async def _relay(
        self, request: Request, upstream: UpstreamResponse, ex: Exchange, respond: Respond
    ) -> Answer:
        """Stream the upstream response to the client; abort the client on upstream failure."""
        complete = False
        try:
            response = respond(upstream.status, upstream.reason, response_headers(upstream.headers))
            ex.status = upstream.status
            try:
                await response.prepare(request)
            except ValueError:  # aiohttp refuses a header with control bytes: nothing sent
                self.failures.failed("upstream_reset", ex.method, ex.path, 502, "invalid header")
                return self._reject(ex, 502, "upstream_reset", "upstream sent an invalid response")
            content = upstream.content
            if not content.total_bytes and not content.is_eof():
                await response.write(b"")  # no body bytes yet (a stream): the head goes now
            ex.ttfb = time.perf_counter()
            tee = self._tee(request)
            write = (
                response.write_chunks
                if isinstance(response, LeanResponse)
                else functools.partial(_write_joined, response)
            )
            while True:
                try:
                    if content.is_eof():  # the rest is buffered: it goes with the end
                        chunks, last = buffered_chunks(content), True
                    else:
                        chunks = await next_chunks(content)
                        last = not chunks
                except UPSTREAM_BODY_ERRORS as exc:
                    self._upstream_broke(request, ex, exc)
                    return response
                for chunk in chunks:
                    ex.response_bytes += len(chunk)
                    if tee is not None:
                        tee.add(chunk)
                if last:
                    break
                await write(chunks, False)
            await write(chunks, True)
            complete = True
            if tee is not None:
                self._inspect_response(upstream, tee)
            return response
        except ConnectionError:
            self._client_left(ex)
            return web.Response()  # never sent: the connection is gone
        finally:
            if complete:
                upstream.release()
            else:
                upstream.close()

    def _upstream_broke(self, request: Request, ex: Exchange, exc: BaseException) -> None:
        """The upstream failed mid-body: abort the client rather than end the body cleanly."""
        timeout = isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError)
        reason = "upstream_timeout" if timeout else "upstream_reset"
        self._metrics.error(reason)
        detail = f"during the response body: {type(exc).__name__}"
        self.failures.failed(reason, ex.method, ex.path, ex.status, detail)
        transport = request.transport
        if transport is not None:
            transport.abort()

    def _tee(self, request: Request) -> ResponseTee | None:
        inspector = self._inspector
        if inspector is None:
            return None
        path = request.raw_path.partition("?")[0]
        if not inspector.wants_response(path):
            return None
        return ResponseTee(self._events.max_body_bytes, path)

    def _inspect_response(self, upstream: UpstreamResponse, tee: ResponseTee) -> None:
        if tee.overflowed or self._inspector is None:
            return
        content_type = upstream.headers.get("Content-Type")
        call_safely(
            "inspect_response",
            self._inspector.inspect_response,
            tee.path,
            upstream.status,
            content_type,
            tee.body(),
        )


class _RelayedResponse(web.StreamResponse):
    """A relayed response: the upstream's head as it came, written with the first body bytes.

    One write: `web.StreamResponse` writes the head at ``prepare()`` and the body in a
    second write, two ``send`` calls for a small response. When the upstream's body (or
    its first chunk) is already buffered, the head now goes out with it in one write;
    `ProxyHandler._relay` sends the head at once when no body byte has arrived yet (a
    stream such as SSE), so a client never waits on a head the proxy already has.

    Transparent: aiohttp's ``_prepare_headers`` adds ``Date``, ``Server`` and a default
    ``Content-Type`` the upstream did not send; this one only frames the body for this
    client (as aiohttp does: ``Content-Length`` kept, else chunked for HTTP/1.1 or the
    connection's close for HTTP/1.0; no body for HEAD, 1xx, 204, 304, and a 304 keeps the
    ``Content-Length`` aiohttp would drop) and says whether the connection stays open.
    It overrides an aiohttp internal (the tests pin its effect).
    """

    _send_headers_immediately = False  # aiohttp's switch (``web.Response`` sets it too)

    async def _prepare_headers(self) -> None:
        request = self._req
        writer = self._payload_writer
        assert request is not None
        assert writer is not None
        keep_alive = request.keep_alive if self._keep_alive is None else self._keep_alive
        framing = frame_response(
            self._headers,
            request.method,
            self.status,
            request.version,
            keep_alive,
            self.content_length,
        )
        if not framing.empty:
            writer.length = framing.length
            if framing.chunked:
                writer.enable_chunking()
        self._keep_alive = framing.keep_alive


def _relayed(status: int, reason: str, headers: CIMultiDict[str]) -> _RelayedResponse:
    """The aiohttp engine's ``respond``."""
    return _RelayedResponse(status=status, reason=reason, headers=headers)


def _websocket_opened(ex: Exchange) -> None:
    """The 101 went out: the session's status (for the access log), and its first byte."""
    ex.status = 101
    ex.ttfb = time.perf_counter()


def _detail(exc: UpstreamError) -> str:
    """What the log says of a failure: the TLS cause, or the type of the error behind it
    (never its text, which may quote the upstream's bytes)."""
    cause = exc.__cause__
    return exc.detail or ("" if cause is None else type(cause).__name__)


def _target(request: Request) -> str:
    """The request target as the client sent it (origin form), for the upstream."""
    raw = request.raw_path
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


class _Linger:
    """A lingering close in progress: bytes still allowed, and the end of it."""

    __slots__ = ("done", "left")

    def __init__(self, done: asyncio.Future[None], budget: int) -> None:
        self.done = done
        self.left = budget

    def discard(self, size: int) -> None:
        """Drop ``size`` bytes read; past the budget, stop lingering."""
        self.left -= size
        if self.left <= 0:
            self.finish()

    def finish(self) -> None:
        """The client finished sending, went away, or used up the budget."""
        if not self.done.done():
            self.done.set_result(None)


class _ClosingAnswer(web.Response):
    """An error answer to a head the parser refused, while more of the request may still
    be arriving: once it is written, the connection closes lingering (see `linger`).

    Its status line says HTTP/1.1, as nginx's does: aiohttp would write the HTTP/1.0 of
    the placeholder request it builds for a refused head, whatever the client sent. RFC
    9110 §2.5: a server answers in the highest minor version it conforms to of the
    request's major version, so 1.1 to any HTTP/1.x client; the close is then announced.
    """

    def __init__(self, protocol: ProxyRequestHandler, status: int, text: str) -> None:
        super().__init__(status=status, text=text + "\n")
        self._protocol = protocol
        self.force_close()
        self.headers[CONNECTION] = "close"

    async def _write_headers(self) -> None:
        """aiohttp's (an internal it calls once), with the status line in HTTP/1.1."""
        writer = self._payload_writer
        assert writer is not None
        await writer.write_headers(f"HTTP/1.1 {self.status} {self.reason}", self.headers)

    async def write_eof(self, data: bytes = b"") -> None:
        """Write the answer, then linger before the connection is closed."""
        await super().write_eof(data)
        await self._protocol.linger()


class ProxyRequestHandler(RequestHandler):
    """aiohttp's connection handler, plus: 431 for oversized heads, parse errors counted,
    and ``proxy.header_timeout`` for every request head (slowloris): a new connection's
    first head within that time of the accept, a keep-alive connection's next head within
    that time of its first byte (as nginx's ``client_header_timeout``). Idle keep-alive
    connections are closed by aiohttp's own keep-alive timeout.

    A refused head is answered while the client may still be sending (a 1 MiB header
    section is refused at its first 64 KiB). Closing then, with unread bytes in the socket,
    makes the kernel send RST, which can destroy the answer before the client reads it.
    So the close lingers as nginx's does: after the answer, half-close (FIN), read and drop
    what still arrives until the client's FIN, `LINGER_BYTES` or `LINGER_SECONDS`, then close.
    """

    metrics: ProxyMetrics | None = None
    header_timeout: float = 0.0
    _head_timer: asyncio.TimerHandle | None = None
    _heads_before: int = 0  # heads parsed when the head clock started
    _linger: _Linger | None = None

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        parser = self._parser
        if type(parser) is HttpRequestParserPy:  # AIOHTTP_NO_EXTENSIONS=1: add llhttp's checks
            self._parser = strict_request_parser(parser)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the clock for the first request head."""
        super().connection_made(transport)
        if self.header_timeout > 0:
            self._start_head_clock()

    def _start_head_clock(self) -> None:
        self._heads_before = self._request_count
        self._head_timer = self._loop.call_later(self.header_timeout, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        """Parse; stop the head clock once a request head is complete, start it when part
        of a new head arrives on an idle keep-alive connection. Lingering: drop."""
        if self._linger is not None:
            self._linger.discard(len(data))
            return
        super().data_received(data)
        if self._head_timer is not None:
            if self._request_count != self._heads_before:
                self._head_timer.cancel()
                self._head_timer = None
        elif self._waiter is not None and not self._messages and data:
            self._next_head_started()

    def _next_head_started(self) -> None:
        """Idle, waiting for a request, and still no complete head: bytes of one arrived."""
        if self.header_timeout > 0:
            self._start_head_clock()

    def eof_received(self) -> None:
        """The client finished sending: a lingering close can end (the transport closes)."""
        if self._linger is not None:
            self._linger.finish()

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop the head clock and any lingering."""
        if self._linger is not None:
            self._linger.finish()
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    async def linger(self) -> None:
        """Half-close after the answer, then drop input until the client's FIN or a bound."""
        transport = self.transport
        if transport is None or transport.is_closing() or not transport.can_write_eof():
            return
        linger = self._linger = _Linger(self._loop.create_future(), LINGER_BYTES)
        transport.write_eof()  # FIN once the answer is flushed
        transport.resume_reading()  # the parser may have paused it; nothing is kept now
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_SECONDS):
                await linger.done

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._request_count == self._heads_before and self.transport is not None:
            if self.metrics is not None:
                self.metrics.error("bad_request")
            self.transport.close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Parse errors of the client's request: 400 (431 when a line or header is over the
        limit), counted. aiohttp passes those with status 400; anything else (status 500)
        is an unexpected exception of the handler, answered by aiohttp's default.

        The answer is a fixed reason, never the parser's message: that quotes the offending
        bytes (an ``Authorization`` or ``Cookie`` value with a control byte, say)."""
        if status == 400 and isinstance(exc, HttpProcessingError):
            if self.metrics is not None:
                self.metrics.error("bad_request")
            self.close()  # parse nothing more on this connection
            return _ClosingAnswer(self, *refusal(exc))
        return super().handle_error(request, status, exc, message)


class ProxyServer(web.Server):
    """`web.Server` building `ProxyRequestHandler` connections."""

    def __init__(
        self, handler: ProxyHandler, metrics: ProxyMetrics, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self._proxy_metrics = metrics
        self.header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        """A connection handler (aiohttp calls this per accepted connection)."""
        protocol = ProxyRequestHandler(self, loop=self._loop, **self._kwargs)
        protocol.metrics = self._proxy_metrics
        protocol.header_timeout = self.header_timeout
        return protocol


class ProxyComponent:
    """The proxy listener as a lifecycle `Component`, with either engine
    (``proxy.engine``): aiohttp's server, or the lean protocol (`sidecar.proxy.lean`),
    which hands protocol switches to the aiohttp engine's connection handler."""

    name = "proxy"

    def __init__(
        self,
        config: Config,
        handler: ProxyHandler,
        upstream: Upstream,
        metrics: ProxyMetrics,
        listen: Sequence[Address] | None = None,
    ) -> None:
        proxy = config.proxy
        self.handler = handler
        self._upstream = upstream
        self._listen = list(listen) if listen is not None else [proxy.listen]
        self.server = ProxyServer(
            handler,
            metrics,
            proxy.header_timeout,
            handler_cancellation=True,
            access_log=None,
            auto_decompress=False,  # request bodies are forwarded as sent, never inflated
            max_line_size=proxy.max_header_bytes,
            max_field_size=proxy.max_header_bytes,
            read_bufsize=2**18,
        )
        self._runner = web.ServerRunner(self.server, handle_signals=False)
        self.engine = proxy.engine
        self._metrics = metrics
        self._header_timeout = proxy.header_timeout
        self._max_header_bytes = proxy.max_header_bytes
        self.lean: LeanListener | None = None
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        """Open the upstream pool and bind the listener."""
        await self._upstream.start()
        try:
            if self.engine == "lean":
                await self._start_lean()
                return
            await self._runner.setup()
            for address in self._listen:
                site = web.TCPSite(self._runner, address.host, address.port, reuse_address=True)
                await site.start()
        except BaseException:
            await self._close_listeners()
            await self._runner.cleanup()
            await self._upstream.close()
            raise

    async def _start_lean(self) -> None:
        loop = asyncio.get_running_loop()
        self.lean = LeanListener(
            self.handler,
            self._metrics,
            self.server,
            header_timeout=self._header_timeout,
            max_header_bytes=self._max_header_bytes,
        )
        for address in self._listen:
            server = await loop.create_server(
                self.lean, address.host, address.port, reuse_address=True
            )
            self._servers.append(server)

    async def _close_listeners(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()

    @property
    def addresses(self) -> list[Address]:
        """Bound addresses."""
        if self.engine != "lean":
            return bound_addresses(self._runner)
        out: list[Address] = []
        for server in self._servers:
            for sock in server.sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    host, port = sock.getsockname()[:2]
                    out.append(Address(host, port))
        return out

    @property
    def in_flight(self) -> int:
        """Requests (and WebSocket sessions) being proxied."""
        return self.handler.in_flight

    async def stop(self, drain_timeout: float) -> int:
        """Stop accepting, tell WebSockets 1001 (Going Away), let in-flight requests finish
        up to the timeout, close the rest (the number returned)."""
        for site in list(self._runner.sites):
            await site.stop()
        listening = list(self._servers)
        await self._close_listeners()
        self.handler.going_away.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                await self.handler.idle.wait()
        cut = self.handler.in_flight
        if self.lean is not None:
            self.lean.close_all()
            await self.server.shutdown(0.001)  # the connections handed to aiohttp
            for server in listening:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(drain_timeout or 0.001):
                        await server.wait_closed()
        # Already waited; cut the rest now. Not 0: aiohttp's ceil_timeout(0) means "no timeout".
        self._runner._shutdown_timeout = 0.001
        await self._runner.cleanup()
        await self._upstream.close()
        self.handler.failures.close()
        return cut


def buffered_chunks(content: StreamReader) -> list[bytes]:
    """Every chunk ``content`` holds now, as the upstream's reads gave them.

    ``readany()`` joins what is buffered into one ``bytes``: a copy of nearly the whole
    body when the client is slower than the upstream (1 MiB bodies: ~3 joins a request,
    ~15 % of the proxy's CPU). The chunks go to the client as they are, in one
    ``writelines``. (``_read_nowait_chunk`` is aiohttp's own one-chunk read, the one
    ``readchunk()`` uses; it keeps the reader's size, cursor and flow control right.)
    """
    buffer = getattr(content, "_buffer", None)  # (an EmptyStreamReader has none)
    chunks = []
    while buffer:
        chunks.append(content._read_nowait_chunk(-1))
    return chunks


async def next_chunks(content: StreamReader) -> list[bytes]:
    """The next chunks of the body, waiting for one (empty: the body ended)."""
    while True:
        # one chunk, not joined (an upstream's chunked framing may cut it shorter, and
        # gives an empty one at a chunk's end: not the body's end)
        first, chunk_end = await content.readchunk()
        if first or not chunk_end:
            break
    return [first, *buffered_chunks(content)] if first else []


async def _write_joined(response: RelayResponse, chunks: list[bytes], last: bool) -> None:
    """``chunks`` to the client as one write (with ``last``, and the end of the body):
    `LeanResponse.write_chunks` for aiohttp's `web.StreamResponse`."""
    data = b"".join(chunks)  # (one chunk is returned as it is, not copied)
    if last:
        await response.write_eof(data)
    else:
        await response.write(data)
