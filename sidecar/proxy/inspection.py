"""The event-inspection hook the proxy calls (implemented in `sidecar.events`).

Typed with a local Protocol so the proxy does not import the events package. Any
exception an inspector raises is logged and swallowed: inspection never changes
what is forwarded.
"""

from __future__ import annotations

import logging
from typing import Protocol

__all__ = ["EventInspector", "ResponseTee"]

log = logging.getLogger(__name__)


class EventInspector(Protocol):
    """Sees selected request and response bodies on their way through."""

    def wants_request(self, method: str, path: str) -> bool:
        """Whether this request's body should be read whole and inspected."""
        ...

    def inspect_request(self, path: str, content_type: str | None, body: bytes) -> None:
        """Inspect a request body (at most ``events.max_body_bytes``)."""
        ...

    def request_skipped(self, path: str) -> None:
        """A wanted body was larger than the limit and went through uninspected."""
        ...

    def wants_response(self, path: str) -> bool:
        """Whether this response's body should be teed for inspection."""
        ...

    def inspect_response(
        self, path: str, status: int, content_type: str | None, body: bytes
    ) -> None:
        """Inspect a complete response body (at most the same limit)."""
        ...


class ResponseTee:
    """Collects a copy of a streamed response body up to a limit (``path``: its request's
    path, query excluded, as the inspector is told)."""

    __slots__ = ("_limit", "_parts", "_size", "overflowed", "path")

    def __init__(self, limit: int, path: str) -> None:
        self._limit = limit
        self.path = path
        self._parts: list[bytes] = []
        self._size = 0
        self.overflowed = False

    def add(self, chunk: bytes) -> None:
        """Keep a reference to ``chunk`` unless the limit was passed."""
        if self.overflowed:
            return
        self._size += len(chunk)
        if self._size > self._limit:
            self.overflowed = True
            self._parts.clear()
        else:
            self._parts.append(chunk)

    def body(self) -> bytes:
        """The collected body."""
        return b"".join(self._parts)


def call_safely(name: str, func: object, *args: object) -> None:
    """Call an inspector method; log and swallow whatever it raises."""
    try:
        func(*args)  # type: ignore[operator]
    except Exception:
        log.exception("event inspector %s failed", name)
