"""The upstream side: a lean pooled HTTP/1.1 client, errors translated at one boundary.

aiohttp's `ClientSession` spent ~35 % of the proxy's CPU per request (URL handling,
header preparation, connector bookkeeping, tracing hooks) — the profile in docs/proxy.md.
The proxy needs none of that: it talks to one origin, forwards headers it already
validated, and streams bodies. So this module keeps aiohttp's pieces that do the real
work — its response protocol and (C) parser (`ResponseHandler`), and its request
`StreamWriter` (C header serialisation, chunked framing, flow control) — and replaces
the session with a pool of connections to the one upstream.

Exception tree raised to the handler::

    UpstreamError (status, reason, message)
      reason upstream_connect_error -> 502  refused, unreachable, connect timeout
      reason upstream_tls_error     -> 502  TLS handshake failed: certificate not trusted,
                                            wrong name, or no TLS server (https:// only)
      reason upstream_timeout       -> 504  no response headers within response_timeout,
                                            or silence longer than idle_timeout
      reason upstream_reset         -> 502  connection closed or reset, invalid response
                                            (bad status line, control bytes in a header,
                                            a malformed Content-Length: aiohttp's parser
                                            raises `HttpProcessingError`, no `ClientError`)

Retries (RFC 9112 §9.3.1): a request goes upstream at most once, except that an
idempotent request without a body, sent on a pooled keep-alive connection that turns out
closed before any response byte, is sent once more on a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.client_exceptions import ClientConnectionResetError
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_writer import StreamWriter
from aiohttp.http_writer import _serialize_headers as serialize_headers  # C when built
from aiohttp.streams import EofStream, StreamReader
from multidict import CIMultiDict, CIMultiDictProxy

from sidecar.config import ProxyConfig
from sidecar.proxy.tls import UpstreamTls, upstream_tls

__all__ = ["RETRYABLE_METHODS", "Upstream", "UpstreamError", "UpstreamResponse", "tls_failed"]

RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
READ_BUFSIZE = 2**18
SWEEP_EVERY_MIN = 0.05  # seconds; idle connections are checked at least this often
TIMER_SLACK = 0.001  # a connection's timer may fire this early (the loop's timers are in ms)

Body = bytes | AsyncIterable[bytes] | None


class UpstreamError(Exception):
    """The upstream could not produce a response; carries the status and metric reason."""

    def __init__(self, status: int, reason: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message  # the answer's text, for the client
        self.detail = detail  # for the log only (no bytes of the upstream's answer)


class _StaleConnection(Exception):
    """A pooled connection was closed by the upstream before any response byte."""


def tls_failed(exc: BaseException) -> UpstreamError:
    """The TLS handshake with an ``https://`` upstream failed (the cause is in ``exc``)."""
    return UpstreamError(502, "upstream_tls_error", "upstream TLS handshake failed", _cause(exc))


def _cause(exc: BaseException) -> str:
    """A short cause: the certificate check's message, an SSL error's reason, or the type."""
    if isinstance(exc, aiohttp.ClientSSLError):
        exc = exc.os_error if isinstance(exc.os_error, BaseException) else exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message
        return f"certificate verify failed: {why}" if why else "certificate verify failed"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return type(exc).__name__


def translate(exc: BaseException) -> UpstreamError:
    """Map an aiohttp/asyncio exception raised before response headers to an UpstreamError."""
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return tls_failed(exc)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return UpstreamError(502, "upstream_connect_error", "upstream connection failed")
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(504, "upstream_timeout", "upstream did not respond in time")
    if isinstance(exc, HttpProcessingError):
        return UpstreamError(502, "upstream_reset", "upstream sent an invalid response")
    return UpstreamError(502, "upstream_reset", "upstream closed the connection")


@dataclass(slots=True)
class UpstreamResponse:
    """A response whose head arrived; its body streams from ``content``."""

    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    content: StreamReader
    _pool: _Pool
    _protocol: _Connection
    _done: bool = False

    def release(self) -> None:
        """Body fully read: give the connection back to the pool (or close it)."""
        if not self._done:
            self._done = True
            self._pool.release(self._protocol)

    def close(self) -> None:
        """Abandon the response: close the connection, never reuse it."""
        if not self._done:
            self._done = True
            self._pool.discard(self._protocol)


class _Connection(ResponseHandler):
    """aiohttp's response protocol with cheaper timers and a reusable parser.

    Timers: aiohttp re-arms a timer for ``idle_timeout`` on every read (a cancel and a
    ``call_later``, ~2 µs each, several times a request), and ``asyncio.timeout`` for the
    response head costs ~5 µs more. Here each connection keeps deadlines as numbers and
    one timer at most, armed for the earliest of them: a request sets its head deadline,
    a read moves the read deadline, and the timer, when it fires, acts on what has passed
    or re-arms for what is left (so a busy connection re-arms about once a timeout
    period, not several times a request). A passed head deadline fails the pending read
    with `TimeoutError` (504); a passed read deadline is aiohttp's own read timeout.

    Parser: ``set_response_params`` builds a new (C) parser, ~5 µs; the parser of a
    completed response reads the next one as well (as on a pipelined connection), so a
    pooled connection keeps it unless the next request needs the other kind (``HEAD``).
    """

    parses_heads_only: bool | None = None  # None: no parser set yet
    _head_deadline = 0.0  # loop time by which the response head must arrive (0: none)
    _read_deadline = 0.0  # loop time by which the next bytes must arrive (0: none)
    _timer_at = 0.0  # when ``_read_timeout_handle`` (the one timer) fires

    def expect_head_by(self, deadline: float) -> None:
        """Fail the pending read with `TimeoutError` if no head has arrived by ``deadline``."""
        self._head_deadline = deadline
        if deadline:
            self._arm(deadline)

    def head_arrived(self) -> None:
        """The final response head arrived: its deadline no longer applies."""
        self._head_deadline = 0.0

    def _arm(self, due: float) -> None:
        handle = self._read_timeout_handle
        if handle is None or due < self._timer_at:
            if handle is not None:
                handle.cancel()
            self._timer_at = due
            self._read_timeout_handle = self._loop.call_at(due, self._on_timer)

    def _reschedule_timeout(self) -> None:
        """aiohttp's hook on each read (and when reading starts): move the read deadline."""
        timeout = self._read_timeout
        if timeout:
            self._read_deadline = self._loop.time() + timeout
            self._arm(self._read_deadline)
        else:
            self._read_deadline = 0.0

    def _drop_timeout(self) -> None:
        """aiohttp's hook when reading stops: no read deadline (the timer may stay)."""
        self._read_deadline = 0.0

    def _on_timer(self) -> None:
        self._read_timeout_handle = None
        now = self._loop.time() + TIMER_SLACK
        head, read = self._head_deadline, self._read_deadline
        if head and head <= now:
            self._head_deadline = 0.0
            self.set_exception(TimeoutError("no response head in time"))
        elif read and read <= now:
            self._read_deadline = 0.0
            self._on_read_timeout()
        elif head or read:
            self._arm(min(d for d in (head, read) if d))

    def connection_lost(self, exc: BaseException | None) -> None:
        """Cancel the timer with the connection; a reset fails an unfinished body.

        aiohttp ends a body delimited by the close (neither length nor chunks) at any
        close, so a reset would pass for its end: the body fails first instead.
        """
        handle = self._read_timeout_handle
        if handle is not None:
            handle.cancel()
            self._read_timeout_handle = None
        self._head_deadline = 0.0
        payload = self._payload
        if exc is not None and payload is not None and not payload.is_eof():
            payload.set_exception(
                aiohttp.ClientPayloadError(f"Response payload is not completed: {exc!r}")
            )
        super().connection_lost(exc)


class _Pool:
    """Keep-alive connections to one host:port, newest first, at most ``limit`` open."""

    def __init__(
        self,
        host: str,
        port: int,
        config: ProxyConfig,
        loop: asyncio.AbstractEventLoop,
        tls: UpstreamTls | None = None,
    ) -> None:
        self.loop = loop
        self._host = host
        self._port = port
        self._config = config
        self._tls = tls
        self._idle: list[tuple[_Connection, float]] = []
        self._slots = asyncio.Semaphore(config.max_connections)
        self._sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    async def acquire(self, fresh: bool, head_deadline: float) -> tuple[_Connection, bool]:
        """A connection (and whether it was pooled); the caller holds one slot.

        A new connection must be made within ``connect_timeout`` (502) and before
        ``head_deadline``, the response timeout's end in loop time (504; 0: none)."""
        if not fresh:
            keepalive = self._config.upstream_keepalive
            now = time.monotonic()
            while self._idle:
                protocol, since = self._idle.pop()
                # should_close: also bytes that came while idle, which answer no request
                if (
                    protocol.is_connected()
                    and now - since < keepalive
                    and not protocol.should_close
                ):
                    return protocol, True
                protocol.close()
        return await self._connect(head_deadline), False

    async def _connect(self, head_deadline: float) -> _Connection:
        loop = self.loop
        limit = self._config.connect_timeout
        connect_by = loop.time() + limit if limit else 0.0
        by = min((d for d in (connect_by, head_deadline) if d), default=None)
        tls = self._tls
        try:
            async with asyncio.timeout_at(by):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(loop),
                    self._host,
                    self._port,
                    ssl=None if tls is None else tls.context,
                    server_hostname=None if tls is None else tls.server_hostname,
                )
        except ssl.SSLError as exc:  # before OSError: an SSLError is one
            raise tls_failed(exc) from exc
        except (ConnectionResetError, ConnectionAbortedError) as exc:
            if tls is None:  # a TCP connect is refused, not reset: the handshake was cut
                raise UpstreamError(
                    502, "upstream_connect_error", "upstream connection failed"
                ) from exc
            raise tls_failed(exc) from exc
        except TimeoutError as exc:
            if by == head_deadline and by != connect_by:
                raise UpstreamError(
                    504, "upstream_timeout", "upstream did not respond in time"
                ) from exc
            raise UpstreamError(
                502, "upstream_connect_error", "upstream connection failed"
            ) from exc
        except OSError as exc:
            raise UpstreamError(
                502, "upstream_connect_error", "upstream connection failed"
            ) from exc
        return protocol

    def release(self, protocol: _Connection) -> None:
        """Pool a connection whose response ended cleanly; close any other."""
        self._slots.release()
        if self.closed or protocol.should_close or not protocol.is_connected():
            protocol.close()
            return
        self._idle.append((protocol, time.monotonic()))
        if self._sweeper is None:
            self._schedule_sweep()

    def discard(self, protocol: _Connection) -> None:
        """Close a connection that must not be reused."""
        self._slots.release()
        protocol.close()

    def _schedule_sweep(self) -> None:
        delay = max(self._config.upstream_keepalive / 2, SWEEP_EVERY_MIN)
        self._sweeper = self.loop.call_later(delay, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle longer than ``upstream_keepalive``."""
        self._sweeper = None
        deadline = time.monotonic() - self._config.upstream_keepalive
        keep = []
        for protocol, since in self._idle:
            if since > deadline and protocol.is_connected():
                keep.append((protocol, since))
            else:
                protocol.close()
        self._idle = keep
        if keep:
            self._schedule_sweep()

    @property
    def slots(self) -> asyncio.Semaphore:
        """One slot per connection in use (``proxy.max_connections``)."""
        return self._slots

    def close(self) -> None:
        """Close every idle connection and refuse to pool more."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for protocol, _ in self._idle:
            protocol.close()
        self._idle.clear()


class Upstream:
    """A pooled HTTP/1.1 client for one upstream base URL."""

    def __init__(self, config: ProxyConfig) -> None:
        self._config = config
        self.base = config.upstream.rstrip("/")
        parts = urlsplit(self.base)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._authority = parts.netloc.rpartition("@")[2]
        # the upstream as logs name it: scheme, host and port, never userinfo or a query
        self.display = f"{parts.scheme}://{self._authority}{self._prefix}"
        self._pool: _Pool | None = None
        self._session: aiohttp.ClientSession | None = None
        self.tls: UpstreamTls | None = None

    async def start(self) -> None:
        """Create the connection pool (and a session for WebSocket upgrades)."""
        self.tls = upstream_tls(self._config)
        self._pool = _Pool(
            self._host, self._port, self._config, asyncio.get_running_loop(), self.tls
        )
        c = self._config
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=c.connect_timeout, sock_read=c.idle_timeout or None
            ),
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session used for WebSocket upgrades."""
        assert self._session is not None, "Upstream.start() first"
        return self._session

    @property
    def address(self) -> tuple[str, int]:
        """The host and port connections go to (the scheme's default port when none)."""
        return self._host, self._port

    async def send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Body,
    ) -> UpstreamResponse:
        """Send one request; return the response once its head arrived.

        Raises:
            UpstreamError: connect failure, response timeout, or reset before the head.
        """
        pool = self._pool
        assert pool is not None, "Upstream.start() first"
        retry = body is None and method in RETRYABLE_METHODS
        limit = self._config.response_timeout
        head_by = pool.loop.time() + limit if limit else 0.0
        await pool.slots.acquire()
        try:
            try:
                return await self._attempt(pool, method, target, headers, body, head_by, False)
            except _StaleConnection as exc:
                if not retry:
                    raise UpstreamError(
                        502, "upstream_reset", "upstream closed the connection"
                    ) from exc
            return await self._attempt(pool, method, target, headers, body, head_by, True)
        except _StaleConnection as exc:
            pool.slots.release()
            raise UpstreamError(502, "upstream_reset", "upstream closed the connection") from exc
        except UpstreamError:
            pool.slots.release()
            raise
        except (
            aiohttp.ClientError,
            HttpProcessingError,
            EofStream,
            TimeoutError,
            OSError,
            ValueError,
        ) as exc:
            pool.slots.release()
            raise translate(exc) from exc
        except BaseException:
            pool.slots.release()
            raise

    async def _attempt(
        self,
        pool: _Pool,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Body,
        head_by: float,
        fresh: bool,
    ) -> UpstreamResponse:
        """One try on one connection; the connection is closed unless a response is returned.

        ``head_by``: the loop time by which the response head must have arrived (0: no limit).
        """
        protocol, reused = await pool.acquire(fresh, head_by)
        ok = False
        try:
            protocol.expect_head_by(head_by)
            response = await self._exchange(pool, protocol, method, target, headers, body, reused)
            ok = True
            return response
        finally:
            if not ok:
                protocol.close()

    async def _exchange(
        self,
        pool: _Pool,
        protocol: _Connection,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Body,
        reused: bool,
    ) -> UpstreamResponse:
        c = self._config
        head = method == "HEAD"
        if protocol.parses_heads_only is not head:
            protocol.set_response_params(
                skip_payload=head,
                auto_decompress=False,
                read_timeout=c.idle_timeout or None,
                read_bufsize=READ_BUFSIZE,
                read_until_eof=True,  # a body with neither length nor chunks ends at close
                max_line_size=c.max_header_bytes,
                max_field_size=c.max_header_bytes,
            )
            protocol.parses_heads_only = head
        loop = pool.loop
        framing = self._framing(headers, body)
        line = f"{method} {self._prefix}{target} HTTP/1.1"
        out = framing_headers(headers, framing)
        if "Host" not in out:  # an HTTP/1.0 client may send none; HTTP/1.1 requires one
            out["Host"] = self._authority
        if framing == "bytes":
            assert isinstance(body, bytes)
            out["Content-Length"] = str(len(body))
        expect = body is not None and headers.get("Expect", "").lower() == "100-continue"
        # Wait for the upstream's 100 before streaming a body; a body in hand goes at once.
        waits = expect and not isinstance(body, bytes)
        sending: asyncio.Task[None] | None = None
        if body is None or isinstance(body, bytes):
            # the head and the body in hand in one write, as aiohttp's `StreamWriter`
            # coalesces them, without making one and awaiting it twice per request
            sent = serialize_headers(line, out)  # (C; ValueError on control bytes)
            transport = protocol.transport
            if transport is None or transport.is_closing():
                raise ClientConnectionResetError("Cannot write to closing transport")
            transport.write(sent + body if body else sent)
            if protocol.writing_paused:
                await protocol._drain_helper()
        else:
            writer = StreamWriter(protocol, loop)
            if framing == "chunked":
                writer.enable_chunking()
            await writer.write_headers(line, out)
            if not waits:
                sending = loop.create_task(_send_body(writer, body))
            else:
                writer.send_headers()
        protocol.start_timeout()
        try:
            message, payload = await self._first_head(protocol, reused, sending)
            continued = False
            while 100 <= message.code < 200 and message.code != 101:
                if message.code == 100:
                    continued = True
                    if waits and sending is None:
                        assert not isinstance(body, bytes | None)
                        sending = loop.create_task(_send_body(writer, body))
                message, payload = await protocol.read()
            if message.code == 101:  # the client's Upgrade never went upstream (hop-by-hop)
                raise HttpProcessingError(message="a protocol switch nobody asked for")
        except BaseException:
            if sending is not None:
                sending.cancel()
            raise
        protocol.head_arrived()
        if sending is not None:
            sending.add_done_callback(_body_sent)
            if not sending.done() or sending.exception() is not None:
                protocol.force_close()  # the body may still be flowing: never reuse
        elif expect and not continued:
            # A final answer without 100: the body was never sent, or it was sent with the
            # head and the upstream may leave it unread (RFC 9110 §10.1.1): never reuse.
            protocol.force_close()
        return UpstreamResponse(
            message.code, message.reason, message.headers, payload, pool, protocol
        )

    @staticmethod
    def _framing(headers: Mapping[str, str], body: Body) -> str:
        if body is None:
            return "none"
        if "Content-Length" in headers:
            return "length"
        if isinstance(body, bytes):
            return "bytes"
        return "chunked"

    async def _first_head(
        self, protocol: _Connection, reused: bool, sending: asyncio.Task[None] | None
    ) -> tuple[Any, StreamReader]:
        """The first head; if the body upload fails first (e.g. too large), its error."""
        if sending is None:
            return await self._read_head(protocol, reused)
        # asyncio.wait(FIRST_COMPLETED) by hand: asyncio.wait and ensure_future look the loop
        # up, and CPython's lookup makes a getpid() system call each time (~5 µs here).
        loop = sending.get_loop()
        head = loop.create_task(self._read_head(protocol, reused))
        first: asyncio.Future[None] = loop.create_future()

        def wake(_: object) -> None:
            if not first.done():
                first.set_result(None)

        head.add_done_callback(wake)
        sending.add_done_callback(wake)
        try:
            await first
        except BaseException:
            head.cancel()
            raise
        finally:
            head.remove_done_callback(wake)
            sending.remove_done_callback(wake)
        if not head.done() and sending.exception() is not None:
            head.cancel()
            raise sending.exception()  # type: ignore[misc]
        return await head

    @staticmethod
    async def _read_head(protocol: _Connection, reused: bool) -> tuple[Any, StreamReader]:
        """The first response head; a pooled connection that died first is stale."""
        try:
            message, payload = await protocol.read()
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            if reused:
                raise _StaleConnection from exc
            raise
        return message, payload

    async def close(self) -> None:
        """Close the pool and the WebSocket session."""
        if self._pool is not None:
            self._pool.close()
        if self._session is not None:
            await self._session.close()


def framing_headers(headers: Mapping[str, str], framing: str) -> CIMultiDict[str]:
    """The headers to send, with the body framing the proxy chose."""
    out = headers if isinstance(headers, CIMultiDict) else CIMultiDict(headers)
    if framing == "chunked":
        out["Transfer-Encoding"] = "chunked"
    return out


async def _send_body(writer: StreamWriter, body: AsyncIterable[bytes]) -> None:
    """Stream the request body, then end it."""
    async for chunk in body:
        await writer.write(chunk)
    await writer.write_eof()


def _body_sent(task: asyncio.Task[None]) -> None:
    """Retrieve the body task's outcome so it is never reported as unhandled."""
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()
