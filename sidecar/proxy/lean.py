"""The lean client side (``proxy.engine: lean``): an `asyncio.Protocol` on aiohttp's C parser.

aiohttp's server builds, for every request, a task, a `web.BaseRequest` (URL, headers
proxy, lazy properties), a `web.StreamResponse` and its header preparation, around the
two things the proxy needs: llhttp's parse of the head (and body framing) and a writer
for the answer. This engine keeps those two — aiohttp's C `HttpRequestParser` and its
`StreamWriter` — and drives `ProxyHandler` from one coroutine per connection:

    data_received -> parser -> queue of (message, body stream)
      -> one request at a time, in order (HTTP/1.1 pipelining) -> ProxyHandler.handle
      -> `LeanResponse` (the head with the first body bytes, the same framing rules as
         the aiohttp engine: `sidecar.proxy.framing`)

Whatever it does not handle goes to aiohttp on the same connection, with the bytes it
holds: a protocol switch (WebSocket upgrade, CONNECT) is handed to the aiohttp engine's
connection handler (`ProxyRequestHandler`: created as ``web.Server`` creates it,
``connection_made``, ``transport.set_protocol``, then the upgrade request, re-serialised
from the parsed head, and what followed it). Requests queued before it are answered
first.

Everything else is the aiohttp engine's, kept the same: the handler (admission 503, 431,
413, body streaming both ways, 100-continue, 502/504, 499 on a client that left, the
metrics, the access log, the events inspection), a refused head answered
``HTTP/1.1 400``/``431`` with ``Connection: close`` and a lingering close, the
``proxy.header_timeout`` clock, the keep-alive timeout and the drain on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.client_exceptions import ClientConnectionResetError
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.http_parser import HttpRequestParser, HttpRequestParserPy, RawRequestMessage
from aiohttp.http_writer import HttpVersion
from aiohttp.http_writer import _serialize_headers as serialize_headers  # C when built
from aiohttp.streams import EMPTY_PAYLOAD, EmptyStreamReader, StreamReader
from aiohttp.tcp_helpers import tcp_keepalive
from aiohttp.web_protocol import MAX_MSG_QUEUE_SIZE, RequestPayloadError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sidecar.proxy.framing import frame_response
from sidecar.proxy.parser import strict_request_parser

if TYPE_CHECKING:
    from sidecar.proxy.metrics import ProxyMetrics
    from sidecar.proxy.server import ProxyHandler

__all__ = [
    "LINGER_BYTES",
    "LINGER_SECONDS",
    "LeanConnection",
    "LeanListener",
    "LeanRequest",
    "LeanResponse",
    "RelayResponse",
    "refusal",
]

log = logging.getLogger(__name__)

# Lingering close after an error answered while the client may still be sending (nginx's
# lingering_close): input is read and dropped for at most this long or this many bytes.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 2**20
KEEPALIVE_TIMEOUT = 3630.0  # aiohttp's server default, so both engines close idle alike
READ_BUFSIZE = 2**18
MAX_QUEUE = MAX_MSG_QUEUE_SIZE  # parsed requests waiting; reading pauses past this
RESUME_QUEUE = MAX_QUEUE // 2
_TIMER_SLACK = 0.001
SEPARATE_WRITE = 2**16  # a head goes in the same write as body bytes shorter than this


class RelayResponse(Protocol):
    """A response the handler streams (`web.StreamResponse` or `LeanResponse`)."""

    async def prepare(self, request: Any) -> object:
        """Decide the framing; the head goes with the first write."""

    async def write(self, data: bytes) -> None:
        """Send body bytes (the head first, if it has not gone yet)."""

    async def write_eof(self, data: bytes = b"") -> None:
        """Send the last body bytes and end the body."""


def refusal(exc: HttpProcessingError) -> tuple[int, str]:
    """The answer to a request head the parser refused: 431 when a line or the header
    section is over the limit, else 400 (a fixed text, never the parser's message, which
    quotes the offending bytes)."""
    if isinstance(exc, LineTooLong) or "Too many headers" in str(exc):
        return 431, "request header section too large"
    return 400, "bad request"


class LeanRequest:
    """The parts of a request the handler reads (the names of `web.BaseRequest`'s)."""

    __slots__ = (
        "body_exists",
        "content",
        "headers",
        "keep_alive",
        "message",
        "method",
        "raw_headers",
        "raw_path",
        "remote",
        "scheme",
        "transport",
        "version",
    )

    def __init__(
        self, message: RawRequestMessage, payload: StreamReader, conn: LeanConnection
    ) -> None:
        self.message = message
        self.method: str = message.method
        self.raw_path: str = message.path
        self.raw_headers: tuple[tuple[bytes, bytes], ...] = message.raw_headers
        self.headers: CIMultiDictProxy[str] = message.headers
        self.version: HttpVersion = message.version
        self.keep_alive = not message.should_close
        self.content = payload
        self.body_exists = type(payload) is not EmptyStreamReader
        self.transport: asyncio.Transport | None = conn.transport
        self.remote = conn.remote
        self.scheme = conn.scheme

    @property
    def content_length(self) -> int | None:
        """The ``Content-Length`` (the parser checked it is a number)."""
        value = self.headers.get("Content-Length")
        return None if value is None else int(value)

    @property
    def rel_url(self) -> URL:
        """The target in origin form (for an absolute-form request line)."""
        return self.message.url.relative()


class LeanResponse:
    """A relayed response written straight to the transport: the head (serialised by
    aiohttp's C serialiser) goes in the same write as the first body bytes; chunked
    framing for a body of unknown length to an HTTP/1.1 client; writes wait while the
    transport's buffer is over its high-water mark."""

    __slots__ = (
        "_chunked",
        "_conn",
        "_head",
        "_left",
        "headers",
        "keep_alive",
        "reason",
        "status",
    )

    def __init__(self, conn: LeanConnection, status: int, reason: str, headers: CIMultiDict[str]):
        self._conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self.keep_alive = False
        self._head = b""  # serialised at prepare(), until it is written
        self._chunked = False
        self._left: int | None = None  # body bytes still allowed (None: no length)

    async def prepare(self, request: LeanRequest) -> None:
        """Frame the body for this client; raise ValueError (nothing sent) on a header
        with control bytes, as aiohttp's serialiser does."""
        headers = self.headers
        value = headers.get("Content-Length")
        length = int(value) if value is not None and value.isdigit() else None
        version = request.version
        framing = frame_response(
            headers, request.method, self.status, version, request.keep_alive, length
        )
        line = f"HTTP/{version.major}.{version.minor} {self.status} {self.reason}"
        self._head = serialize_headers(line, headers)
        self._left = 0 if framing.empty else framing.length
        self._chunked = framing.chunked
        self.keep_alive = framing.keep_alive

    def _send(self, data: bytes, last: bool) -> None:
        left = self._left
        if left is not None and len(data) > left:  # never past the length announced
            data = data[:left]
        if left is not None:
            self._left = left - len(data)
        if self._chunked:
            if data:
                data = b"%x\r\n%b\r\n" % (len(data), data)
            if last:
                data += b"0\r\n\r\n"
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            raise ClientConnectionResetError("Cannot write to closing transport")
        head = self._head
        if head:
            self._head = b""
            if len(data) < SEPARATE_WRITE:
                transport.write(head + data)
                return
            transport.write(head)
        if data:
            transport.write(data)

    def _send_chunks(self, chunks: list[bytes], last: bool) -> None:
        """`_send` for several chunks, written as they are (one ``writelines``: no copy)."""
        left = self._left
        if left is not None:  # never past the length announced
            kept: list[bytes] = []
            for chunk in chunks:
                if left <= 0:
                    break
                kept.append(chunk[:left] if len(chunk) > left else chunk)
                left -= len(kept[-1])
            self._left, chunks = left, kept
        size = sum(map(len, chunks))
        pieces = [self._head] if self._head else []
        if self._chunked:
            if size:
                pieces += [b"%x\r\n" % size, *chunks, b"\r\n"]
            if last:
                pieces.append(b"0\r\n\r\n")
        else:
            pieces += chunks
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            raise ClientConnectionResetError("Cannot write to closing transport")
        self._head = b""
        if pieces:
            transport.writelines(pieces)

    async def write_chunks(self, chunks: list[bytes], last: bool) -> None:
        """Body bytes in several chunks (with ``last``, the end of the body)."""
        if len(chunks) == 1:
            self._send(chunks[0], last)
        else:
            self._send_chunks(chunks, last)
        conn = self._conn
        if conn.writing_paused:
            await conn._drain_helper()

    async def write(self, data: bytes) -> None:
        """Body bytes (``b""`` sends the head now)."""
        self._send(data, False)
        conn = self._conn
        if conn.writing_paused:
            await conn._drain_helper()

    async def write_eof(self, data: bytes = b"") -> None:
        """The last body bytes, and the end of the body."""
        self._send(data, True)
        conn = self._conn
        if conn.writing_paused:
            await conn._drain_helper()


Answer = web.StreamResponse | LeanResponse


class LeanListener:
    """The protocol factory of the lean engine (one `LeanConnection` per connection).

    ``fallback`` builds the aiohttp engine's connection handler, to which a connection is
    handed for what this engine does not handle (a protocol switch)."""

    def __init__(
        self,
        handler: ProxyHandler,
        metrics: ProxyMetrics,
        fallback: Callable[[], asyncio.Protocol],
        *,
        header_timeout: float,
        max_header_bytes: int,
    ) -> None:
        self.handler = handler
        self.metrics = metrics
        self.fallback = fallback
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self.connections: set[LeanConnection] = set()
        self.loop = asyncio.get_running_loop()

    def __call__(self) -> LeanConnection:
        """A protocol for one accepted connection."""
        return LeanConnection(self)

    def close_all(self) -> None:
        """Close every connection: idle ones at once, busy ones aborted (their requests
        are counted as the client leaving, 499)."""
        for conn in list(self.connections):
            conn.shut()


class LeanConnection(BaseProtocol):
    """One client connection: parse, queue, answer in order."""

    __slots__ = (
        "_busy",
        "_deadline_head",
        "_deadline_idle",
        "_linger_left",
        "_listener",
        "_payload",
        "_queue",
        "_tail",
        "_task",
        "_timer",
        "_timer_at",
        "_waiter",
        "loop",
        "remote",
        "scheme",
    )

    def __init__(self, listener: LeanListener) -> None:
        loop = listener.loop
        limit = listener.max_header_bytes
        parser = HttpRequestParser(
            self,
            loop,
            READ_BUFSIZE,
            max_line_size=limit,
            max_field_size=limit,
            payload_exception=RequestPayloadError,
            auto_decompress=False,  # request bodies are forwarded as sent, never inflated
            max_msg_queue_size=MAX_QUEUE,
        )
        if type(parser) is HttpRequestParserPy:  # AIOHTTP_NO_EXTENSIONS=1: llhttp's checks
            parser = strict_request_parser(parser)
        super().__init__(loop, parser)
        self.loop = loop
        self._listener = listener
        self._queue: deque[tuple[RawRequestMessage | HttpProcessingError, StreamReader]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a request is being answered
        self._payload: StreamReader | None = None  # the body of the request being answered
        self._tail: bytearray | None = None  # after a protocol switch: bytes to hand over
        self._linger_left = -1  # >= 0: lingering close, bytes still allowed
        self._deadline_head = 0.0  # loop time by which a started head must be complete
        self._deadline_idle = 0.0  # loop time at which an idle keep-alive connection closes
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.remote: str | None = None
        self.scheme = "http"

    # ------------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the clock for the first head and the connection's coroutine."""
        super().connection_made(transport)
        tcp_keepalive(cast(asyncio.Transport, transport))  # as aiohttp's (and TCP_NODELAY)
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, list | tuple) else None
        if transport.get_extra_info("sslcontext"):
            self.scheme = "https"
        listener = self._listener
        listener.connections.add(self)
        if listener.header_timeout > 0:
            self._deadline_head = self.loop.time() + listener.header_timeout
            self._arm(self._deadline_head)
        self._task = self.loop.create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        """Parse what came; queue complete heads (with their body streams)."""
        if self._linger_left >= 0:
            self._linger_left -= len(data)
            if self._linger_left < 0 and self.transport is not None:
                self.transport.close()
            return
        tail = self._tail
        if tail is not None:  # after a protocol switch: kept for aiohttp
            tail += data
            if len(tail) >= READ_BUFSIZE and not self._buffer_paused:
                self._pause_reading_for_buffer()
            return
        parser = self._parser
        if parser is None:  # a refused head: nothing more is parsed
            return
        queue = self._queue
        try:
            messages, upgraded, rest = parser.feed_data(data)
        except HttpProcessingError as exc:
            self._parser = None
            queue.append((exc, EMPTY_PAYLOAD))
        else:
            queue.extend(messages)
            if upgraded:
                self._tail = bytearray(rest)
        if queue:
            self._deadline_head = 0.0
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if len(queue) >= MAX_QUEUE and not self._buffer_paused:
                self._pause_reading_for_buffer()
        elif data and not self._busy:
            self._head_started()

    def _head_started(self) -> None:
        """Bytes of a head arrived on an idle connection: the head clock starts."""
        self._deadline_idle = 0.0
        timeout = self._listener.header_timeout
        if timeout > 0 and not self._deadline_head:
            self._deadline_head = self.loop.time() + timeout
            self._arm(self._deadline_head)

    def eof_received(self) -> bool | None:
        """The client's FIN: the transport closes, and a request in progress is the
        client leaving (499, the upstream request cancelled), as under aiohttp's server
        and nginx. A FIN cannot tell a half-close from a close."""
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop the timer; a request in progress is the client leaving (the task is
        cancelled, as aiohttp's ``handler_cancellation``)."""
        super().connection_lost(exc)
        self._listener.connections.discard(self)
        self._parser = None
        self._cancel_timer()
        payload = self._payload
        if payload is not None and not payload.is_eof():
            payload.set_exception(exc or ConnectionResetError("Connection lost"))
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        self._task = None

    # --------------------------------------------------------------------------- timers

    def _arm(self, due: float) -> None:
        """One timer per connection, for the earliest deadline (re-armed when it fires)."""
        timer = self._timer
        if timer is None or due < self._timer_at:
            if timer is not None:
                timer.cancel()
            self._timer_at = due
            self._timer = self.loop.call_at(due, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        transport = self.transport
        if transport is None:
            return
        now = self.loop.time() + _TIMER_SLACK
        head, idle = self._deadline_head, self._deadline_idle
        if head and head <= now:  # slowloris: a head not complete in time
            self._listener.metrics.error("bad_request")
            transport.close()
        elif idle and idle <= now:
            transport.close()
        elif head or idle:
            self._arm(min(d for d in (head, idle) if d))

    # ---------------------------------------------------------------------- the requests

    async def _serve(self) -> None:
        """Answer the queued requests one at a time, in order."""
        queue = self._queue
        try:
            while self.transport is not None:
                if not queue:
                    self._waiter = self.loop.create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
                    continue
                message, payload = queue.popleft()
                parser = self._parser
                if parser is not None:
                    parser.message_consumed()
                    if self._buffer_paused and len(queue) <= RESUME_QUEUE:
                        self._resume_when_drained()
                if isinstance(message, HttpProcessingError):
                    await self._refuse(message)
                    return
                if message.upgrade or message.method == "CONNECT":
                    if self._tail is None and not payload.is_eof():
                        await payload.wait_eof()  # llhttp switches once the body is complete
                    if self._tail is not None and not queue:  # the switch: aiohttp's
                        self._hand_off(message, payload)
                        return
                if not await self._answer(LeanRequest(message, payload, self), payload):
                    return
                if not queue and self.transport is not None:
                    self._deadline_idle = self.loop.time() + KEEPALIVE_TIMEOUT
                    self._arm(self._deadline_idle)
        except asyncio.CancelledError:
            pass  # the connection went away (or the proxy stopped)

    def _resume_when_drained(self) -> None:
        """Parse what the parser held while the queue was full, then read again."""
        self.data_received(b"")
        if len(self._queue) < MAX_QUEUE:
            self._resume_reading_for_buffer()

    async def _answer(self, request: LeanRequest, payload: StreamReader) -> bool:
        """Proxy one request; whether the connection stays open for the next."""
        self._busy = True
        self._payload = payload
        self._deadline_idle = 0.0
        try:
            answer = await self._listener.handler.handle(request, self._respond)
            if type(answer) is LeanResponse:
                keep = answer.keep_alive
            else:
                assert isinstance(answer, web.Response)
                keep = await self._write_plain(request, answer)
        except (ConnectionError, asyncio.CancelledError):
            return False
        except Exception:
            log.exception("unexpected error while proxying a request")
            if self.transport is not None:
                self.transport.abort()
            return False
        finally:
            self._busy = False
            self._payload = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if not payload.is_eof():  # the rest of the body is not read: close, lingering
            payload.set_exception(RequestPayloadError("request body not read"))
            await self._linger()
            return False
        if not keep:
            transport.close()
        return keep

    def _respond(self, status: int, reason: str, headers: CIMultiDict[str]) -> LeanResponse:
        return LeanResponse(self, status, reason, headers)

    async def _write_plain(self, request: LeanRequest, answer: web.Response) -> bool:
        """An answer of the handler's own (a short text): whether to keep the connection."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False  # never sent: the client left
        body = answer.body
        assert isinstance(body, bytes)
        # a body not read to its end closes the connection (`_answer`): say so
        keep = request.keep_alive and answer.keep_alive is not False and request.content.is_eof()
        headers = CIMultiDict(answer.headers)
        headers["Content-Length"] = str(len(body))
        version = request.version
        if not keep:
            headers["Connection"] = "close"
        elif version.minor == 0:
            headers["Connection"] = "keep-alive"
        line = f"HTTP/{version.major}.{version.minor} {answer.status} {answer.reason}"
        head = serialize_headers(line, headers)
        # HEAD: the length the GET would have, no body (RFC 9110 §9.3.2)
        transport.write(head if request.method == "HEAD" else head + body)
        if self.writing_paused:
            await self._drain_helper()
        return keep

    # ---------------------------------------------------------------- refusals, closing

    async def _refuse(self, exc: HttpProcessingError) -> None:
        """A head the parser refused: 400 (431 when too large), in HTTP/1.1, counted,
        then the close lingers (the client may still be sending)."""
        self._listener.metrics.error("bad_request")
        status, text = refusal(exc)
        reason = "Bad Request" if status == 400 else "Request Header Fields Too Large"
        body = (text + "\n").encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(head.encode() + body)
        await self._linger()

    async def _linger(self) -> None:
        """Half-close after the answer, then drop input until the client's FIN or a bound
        (nginx's lingering close: closing with unread input sends RST, which can destroy
        the answer before the client reads it)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        self._linger_left = LINGER_BYTES
        self._deadline_head = self._deadline_idle = 0.0
        self._cancel_timer()
        transport.write_eof()  # FIN once the answer is flushed
        self._buffer_paused = self._reading_paused = False
        self._resume_transport_reading()  # nothing is kept now
        self.loop.call_later(LINGER_SECONDS, transport.close)

    def shut(self) -> None:
        """Close for the proxy's stop: at once when idle, aborted when busy."""
        transport = self.transport
        if transport is None:
            return
        if self._busy:
            transport.abort()
        else:
            transport.close()

    # --------------------------------------------------------------------- protocol switch

    def _hand_off(self, message: RawRequestMessage, payload: StreamReader) -> None:
        """Give the connection to aiohttp's handler with the switch request and what followed."""
        transport = self.transport
        assert transport is not None
        assert self._tail is not None
        data = _request_bytes(message, payload) + bytes(self._tail)
        self._tail = None
        self._listener.connections.discard(self)
        self._cancel_timer()
        self._parser = None
        self._task = None
        handler = self._listener.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        self.transport = None
        if self._buffer_paused or self._reading_paused:
            transport.resume_reading()
        handler.data_received(data)


def _request_bytes(message: RawRequestMessage, payload: StreamReader) -> bytes:
    """The request again, as bytes aiohttp's parser reads the same: the parser's head
    (names and values as received) and its body, which is complete (llhttp defers a
    protocol switch until then); a chunked body is sent as one chunk."""
    version = message.version
    lines = [
        f"{message.method} {message.path} HTTP/{version.major}.{version.minor}\r\n".encode(
            "utf-8", "surrogateescape"
        )
    ]
    lines.extend(name + b": " + value + b"\r\n" for name, value in message.raw_headers)
    lines.append(b"\r\n")
    if type(payload) is not EmptyStreamReader:
        body = payload.read_nowait(-1)
        if message.chunked:
            lines.append(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n")
        else:
            lines.append(body)
    return b"".join(lines)
