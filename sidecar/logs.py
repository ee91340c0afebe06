"""Logging: JSON lines by default, plain text for humans, secrets never written.

One line per lifecycle event. The redaction filter is a second line of defence: the code
never passes header values of ``Authorization``, ``Cookie``, ``Set-Cookie`` or
``X-API-Key`` to a log call, and if any such ``name: value`` pair reaches a record anyway
its value is replaced before the line is formatted.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

__all__ = ["ACCESS_LOGGER", "SECRET_HEADERS", "configure_logging", "redact"]

ACCESS_LOGGER = "sidecar.access"  # the proxy's access log (logging.access_log)

SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key")
REDACTED = "<redacted>"
_SECRET_RE = re.compile(
    r"(?i)\b(" + "|".join(re.escape(h) for h in SECRET_HEADERS) + r")"
    r"""(["']?\s*[:=]\s*["']?)((?:Bearer\s+|Basic\s+)?[^"',;\s\}\]]+)"""
)
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)  # one, not one per line


def redact(text: str) -> str:
    """Replace the value of every secret header named in ``text``."""
    return _SECRET_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Renders the message once, redacted, so no formatter sees the raw arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Freeze the redacted message into the record."""
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extra fields, exception.

    Cheap enough for an access log's line per request: the timestamp's seconds are
    formatted once a second, one encoder serves every line, and a record that carries its
    extra fields ready in ``_fields`` (the access log's) is not searched for them."""

    _second = -1
    _second_text = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record."""
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__.get("_fields")
        if fields is not None:
            entry.update(fields)
        else:
            for key, value in record.__dict__.items():
                if key not in _STANDARD_ATTRS and not key.startswith("_"):
                    entry[key] = value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return _ENCODER.encode(entry)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        """Exceptions are redacted too."""
        return redact(super().formatException(ei))


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Point the root logger at ``stream`` (stderr) with the chosen format and level."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log would write one line per proxied request: off by default.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # urllib3 (under the OTLP exporter) logs each request line with its query at debug:
    # the query of export.otlp.endpoint may hold a credential (?api_key=...).
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # The proxy's own (logging.access_log) writes only when turned on, then whatever the
    # level: its lines are info, and an access log hidden by `level: warning` would be none.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
