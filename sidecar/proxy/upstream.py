"""The upstream side: one pooled connector, and aiohttp errors translated at one boundary.

Exception tree raised to the handler::

    UpstreamError (status, reason, message)
      reason upstream_connect_error -> 502  refused, unreachable, connect timeout
      reason upstream_timeout       -> 504  no response headers within response_timeout,
                                            or silence longer than idle_timeout
      reason upstream_reset         -> 502  connection closed or reset, invalid response

Retries (RFC 9112 §9.3.1): aiohttp retries a request once on a fresh connection when a
pooled keep-alive connection turns out closed. Only an idempotent request without a body
goes through the session that does that; every other request goes through a twin session
on the same connector with that retry switched off, so it is sent at most once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Mapping

import aiohttp
from yarl import URL

from sidecar.config import ProxyConfig

__all__ = ["RETRYABLE_METHODS", "Upstream", "UpstreamError"]

RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# aiohttp adds these unless told not to; a transparent proxy sends only what it received.
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")

Body = bytes | AsyncIterable[bytes] | None


class UpstreamError(Exception):
    """The upstream could not produce a response; carries the status and metric reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def translate(exc: BaseException) -> UpstreamError:
    """Map an aiohttp/asyncio exception raised before response headers to an UpstreamError."""
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return UpstreamError(502, "upstream_connect_error", "upstream connection failed")
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(504, "upstream_timeout", "upstream did not respond in time")
    return UpstreamError(502, "upstream_reset", "upstream closed the connection")


class Upstream:
    """A pooled HTTP/1.1 client for one upstream base URL."""

    def __init__(self, config: ProxyConfig) -> None:
        self._config = config
        self.base = config.upstream.rstrip("/")
        self._connector: aiohttp.TCPConnector | None = None
        self._retrying: aiohttp.ClientSession | None = None
        self._once: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Create the connection pool and its two sessions."""
        c = self._config
        self._connector = aiohttp.TCPConnector(
            limit=c.max_connections,
            limit_per_host=0,
            keepalive_timeout=c.upstream_keepalive,
            ttl_dns_cache=60,
        )
        self._retrying = self._session(self._connector)
        self._once = self._session(self._connector)
        # aiohttp has no public switch for its one retry of idempotent requests.
        self._once._retry_connection = False

    def _session(self, connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        c = self._config
        return aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,
            auto_decompress=False,
            skip_auto_headers=SKIP_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=c.connect_timeout, sock_read=c.idle_timeout or None
            ),
            read_bufsize=2**18,
            max_line_size=c.max_header_bytes,
            max_field_size=c.max_header_bytes,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """The retrying session (also used for WebSocket upgrades)."""
        assert self._retrying is not None, "Upstream.start() first"
        return self._retrying

    async def send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Body,
    ) -> aiohttp.ClientResponse:
        """Send one request; return the response once its headers arrived.

        Raises:
            UpstreamError: connect failure, response timeout, or reset before headers.
        """
        retry = body is None and method in RETRYABLE_METHODS
        session = self._retrying if retry else self._once
        assert session is not None, "Upstream.start() first"
        try:
            async with asyncio.timeout(self._config.response_timeout):
                return await session.request(
                    method,
                    URL(self.base + target, encoded=True),
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    compress=None,
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        """Close both sessions and the pool."""
        for session in (self._retrying, self._once):
            if session is not None:
                await session.close()
        if self._connector is not None:
            await self._connector.close()
