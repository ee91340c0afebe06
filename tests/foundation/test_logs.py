"""Logging: JSON lines by default, text on request, secret header values never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sidecar.logs import ACCESS_LOGGER, configure_logging, redact


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("line", "secret"),
    [("Authorization: Bearer abc.def", "abc.def"), ("cookie=session=xyz", "session=xyz"),
     ("{'X-API-Key': 'k-123'}", "k-123"), ('"set-cookie": "id=42; Path=/"', "id=42"),
     ("proxy-authorization: Basic dXNlcjpw", "dXNlcjpw")],
    ids=["authorization", "cookie", "api-key-dict", "set-cookie-json", "proxy-auth"],
)  # fmt: skip
def test_redact_table(line: str, secret: str) -> None:
    assert secret not in redact(line)
    assert "<redacted>" in redact(line)


def test_redact_leaves_other_text_alone() -> None:
    line = "GET /users/42 status=200 x-request-id: abc"
    assert redact(line) == line


@pytest.mark.usefixtures("restore_root")
@pytest.mark.parametrize("level", ["debug", "info", "error"])
def test_json_lines_without_secrets_at_any_level(level: str) -> None:
    stream = io.StringIO()
    configure_logging(level, "json", stream)
    log = logging.getLogger("sidecar.test")
    log.error("upstream said %s", {"Authorization": "Bearer t0ken", "Cookie": "c00kie"},
              extra={"event": "x"})  # fmt: skip
    try:
        raise ValueError("X-API-Key: k3y")
    except ValueError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["level"] == "error"
    assert first["event"] == "x"
    assert first["logger"] == "sidecar.test"
    text = stream.getvalue()
    for secret in ("t0ken", "c00kie", "k3y"):
        assert secret not in text


@pytest.mark.usefixtures("restore_root")
def test_text_format_and_level() -> None:
    stream = io.StringIO()
    configure_logging("warning", "text", stream)
    logging.getLogger("sidecar.t").info("hidden")
    logging.getLogger("sidecar.t").warning("shown %d", 1)
    out = stream.getvalue()
    assert "hidden" not in out
    assert "WARNING sidecar.t: shown 1" in out


@pytest.mark.usefixtures("restore_root")
def test_access_log_lines_pass_whatever_the_level() -> None:
    """``logging.access_log`` lines are info; ``level: error`` must not hide them (the
    proxy writes them only when the access log is on), and other info lines stay hidden."""
    stream = io.StringIO()
    configure_logging("error", "json", stream)
    logging.getLogger(ACCESS_LOGGER).info("GET /users/{id} 200", extra={"status": 200})
    logging.getLogger("sidecar.proxy").info("not at level error")
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert (line["logger"], line["level"], line["status"]) == (ACCESS_LOGGER, "info", 200)
