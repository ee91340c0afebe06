"""What the proxy writes to the log: upstream failures (rate-limited) and the access log.

Neither ever writes a header value, a raw path or a query string: a request is named by
its method label and route template (the metrics' labels), the upstream by its scheme,
host and port. The one value taken from a request header is ``X-Request-Id``, and only
when it looks like an id (letters, digits and ``._:-``, at most 128 characters).

Failures: the first of each reason is logged at once (warning), then at most one line a
window (`FAILURE_WINDOW_SECONDS`) per reason, counting what it stood for:
``upstream_connect_error on GET /users/{id} (37 more in the last 10s)``.

Access log (``logging.access_log``): one JSON line per proxied request, on the logger
``sidecar.access`` at info level (written whatever ``logging.level`` is).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from sidecar.config import format_duration
from sidecar.logs import ACCESS_LOGGER

if TYPE_CHECKING:
    from sidecar.proxy.lean import LeanRequest
    from sidecar.proxy.server import Exchange

__all__ = ["ACCESS_LOGGER", "FAILURE_WINDOW_SECONDS", "AccessLog", "FailureLog"]

FAILURE_WINDOW_SECONDS = 10.0
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

failure_log = logging.getLogger("sidecar.proxy.upstream")


@dataclass(slots=True)
class _Window:
    """Failures of one reason since its last line, and the timer ending the window."""

    timer: asyncio.TimerHandle | None = None
    suppressed: int = 0
    method: str = ""
    route: str = ""
    status: int = 0


class FailureLog:
    """Warnings for upstream failures, at most one line per reason per window."""

    def __init__(self, upstream: str, window: float = FAILURE_WINDOW_SECONDS) -> None:
        self.upstream = upstream
        self.window = window
        self._windows: dict[str, _Window] = {}

    def failed(self, reason: str, method: str, route: str, status: int, detail: str = "") -> None:
        """One failure: logged now when its reason has no open window, else counted."""
        window = self._windows.get(reason)
        if window is not None:
            window.suppressed += 1
            window.method, window.route, window.status = method, route, status
            return
        failure_log.warning(
            "%s on %s %s: answered %d, upstream %s%s",
            reason,
            method,
            route,
            status,
            self.upstream,
            f" ({detail})" if detail else "",
            extra=self._fields(reason, method, route, status, 0),
        )
        self._open(reason)

    def _fields(
        self, reason: str, method: str, route: str, status: int, suppressed: int
    ) -> dict[str, object]:
        return {
            "event": "upstream_failure",
            "reason": reason,
            "method": method,
            "route": route,
            "status": status,
            "upstream": self.upstream,
            "suppressed": suppressed,
        }

    def _open(self, reason: str) -> None:
        loop = asyncio.get_running_loop()
        self._windows[reason] = _Window(loop.call_later(self.window, self._close, reason))

    def _close(self, reason: str, reopen: bool = True) -> None:
        """The window ends: one line for the failures it counted (then a new window)."""
        window = self._windows.pop(reason)
        if not window.suppressed:
            return
        failure_log.warning(
            "%s on %s %s (%d more in the last %s), upstream %s",
            reason,
            window.method,
            window.route,
            window.suppressed,
            format_duration(self.window),
            self.upstream,
            extra=self._fields(
                reason, window.method, window.route, window.status, window.suppressed
            ),
        )
        if reopen:  # failures going on: still one line a window
            self._open(reason)

    def close(self) -> None:
        """Write the counts of open windows now (at shutdown) and stop their timers."""
        for reason, window in list(self._windows.items()):
            if window.timer is not None:
                window.timer.cancel()
            self._close(reason, reopen=False)


# Every standard attribute of a record, as the access log's lines all have them, but the
# per-line ones (set by `_AccessRecord`).
_RECORD_CONSTANTS = {
    k: v
    for k, v in logging.LogRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 0, "", None, None, "write"
    ).__dict__.items()
    if k not in ("created", "msecs", "relativeCreated", "msg", "args")
}
_LOGGING_START = float(getattr(logging, "_startTime", time.time()))  # for relativeCreated


class _AccessRecord(logging.LogRecord):
    """A log record made for the access log's line a request, at a third of the cost.

    `logging.LogRecord` finds the caller's frame, the thread, the process and the source
    file for every record (~10 µs of an access line's ~25): here those are constants set
    once, and only the time, the message and the request's fields are per line. Handlers
    and formatters see an ordinary record (every standard attribute is present)."""

    def __init__(self, msg: str, args: tuple[object, ...], fields: dict[str, object]) -> None:
        now = time.time()
        self.__dict__.update(_RECORD_CONSTANTS)
        self.created = now
        self.msecs = int((now - int(now)) * 1000) + 0.0
        self.relativeCreated = (now - _LOGGING_START) * 1000.0
        self.msg = msg
        self.args = args
        self.__dict__.update(fields)  # as ``extra=`` would
        self._fields = fields  # the JSON formatter takes them from here, not the whole dict


class AccessLog:
    """One line per proxied request (``logging.access_log: true``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._log = logging.getLogger(ACCESS_LOGGER)

    def write(self, request: web.BaseRequest | LeanRequest, ex: Exchange) -> None:
        """Log a finished request: labels, status, timings, sizes, never header values."""
        logger = self._log
        if not logger.isEnabledFor(logging.INFO):
            return
        duration = (time.perf_counter() - ex.start) * 1000.0
        ttfb = None if ex.ttfb is None else round((ex.ttfb - ex.start) * 1000.0, 3)
        version = request.version
        fields: dict[str, object] = {
            "event": "access",
            "method": ex.method,
            "route": ex.path,
            "status": ex.status,
            "duration_ms": round(duration, 3),
            "ttfb_ms": ttfb,
            "request_bytes": ex.request_bytes,
            "response_bytes": ex.response_bytes,
            "upstream": self.upstream,
            "protocol": f"HTTP/{version.major}.{version.minor}",
        }
        request_id = request.headers.get("X-Request-Id")
        if request_id is not None and _REQUEST_ID_RE.fullmatch(request_id):
            fields["request_id"] = request_id
        logger.handle(_AccessRecord("%s %s %d", (ex.method, ex.path, ex.status), fields))
