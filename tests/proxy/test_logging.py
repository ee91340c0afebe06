"""Upstream failures are logged (rate-limited), and the access log (``logging.access_log``).

Neither ever writes a header value, a raw path or a query string. The process tests run
the real ``causality-sidecar`` and read its stderr JSON lines; requests come from curl.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.proxy.proxylog import FailureLog
from tests.support.process import (
    SidecarProcess,
    free_port,
    http_get,
    local_ports,
    run_sidecar,
    wait_until,
)
from tests.support.proxy import ProxyFactory, wait_for
from tests.support.tls_upstream import TlsUpstream, running_nginx

SECRET_HEADER = "Bearer s3cr3t-h3ad3r-value"
SECRET_QUERY = "s3cr3t-qu3ry-value"
STATIC = b"static body over tls\n" * 50
MERGED = "# HELP tls_merged_total Merged over https.\n# TYPE tls_merged_total counter\n"
MERGED += "tls_merged_total 7\n"


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _curl(*args: str) -> tuple[int, bytes]:
    done = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True,
        timeout=30,
        check=True,
    )
    body, _, code = done.stdout.rpartition(b"\n")
    return int(code), body


@pytest.fixture
def tls_nginx(tmp_path: Path) -> Iterator[TlsUpstream]:
    """nginx serving a static file and a /metrics text over TLS (nothing behind it)."""
    with running_nginx(tmp_path, free_port(), STATIC, MERGED) as upstream:
        yield upstream


def _config(tmp_path: Path, ports: dict[str, int], upstream: str, extra: str = "") -> Path:
    path = tmp_path / "sidecar.yaml"
    path.write_text(
        f"proxy:\n  listen: 127.0.0.1:{ports['proxy']}\n  upstream: '{upstream}'\n"
        "  routes: ['/users/{id}', /static]\n"
        f"admin: {{listen: '127.0.0.1:{ports['admin']}'}}\n"
        f"ingest: {{listen: '127.0.0.1:{ports['ingest']}'}}\n"
        "shutdown: {drain_delay: 0s}\n" + extra
    )
    return path


def _sidecar(path: Path, ports: dict[str, int], **env: str) -> Any:
    return run_sidecar(["run", "--config", str(path)], admin=f"127.0.0.1:{ports['admin']}", env=env)


def _lines_where(sidecar: SidecarProcess, **fields: Any) -> list[dict[str, Any]]:
    return [
        entry
        for entry in _json_lines(sidecar.logs())
        if all(entry.get(k) == v for k, v in fields.items())
    ]


# ----------------------------------------------------------------- upstream failures


def test_refused_upstream_is_logged_without_secrets(tmp_path: Path) -> None:
    ports = local_ports("proxy", "admin", "ingest")
    refused = f"http://127.0.0.1:{free_port()}"
    with _sidecar(_config(tmp_path, ports, refused), ports) as sidecar:
        url = f"http://127.0.0.1:{ports['proxy']}/users/42?token={SECRET_QUERY}"
        status, _ = _curl("-H", f"Authorization: {SECRET_HEADER}", url)
        assert status == 502
        wait_until(
            lambda: _lines_where(sidecar, event="upstream_failure"), 10, "the failure's log line"
        )
        [line] = _lines_where(sidecar, event="upstream_failure")
        logs = sidecar.logs()
    assert line["level"] == "warning"
    assert line["reason"] == "upstream_connect_error"
    assert line["method"] == "GET"
    assert line["route"] == "/users/{id}"
    assert line["status"] == 502
    assert line["upstream"] == refused
    assert line["msg"].startswith("upstream_connect_error on GET /users/{id}: answered 502")
    assert "ConnectionRefusedError" in line["msg"]
    assert SECRET_QUERY not in logs
    assert "s3cr3t-h3ad3r" not in logs
    assert "/users/42" not in logs


async def test_failures_are_rate_limited_per_reason(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.proxy.upstream")
    p = await make_proxy(upstream=f"http://127.0.0.1:{free_port()}", routes=("/users/{id}",))
    p.component.handler.failures.window = 5.0  # the default 10 s, shortened for the test
    for n in range(20):
        async with p.session.get(f"{p.url}/users/{n}") as r:
            assert r.status == 502
    lines = [r for r in caplog.records if r.name == "sidecar.proxy.upstream"]
    assert len(lines) == 1  # 20 failures: one line now
    assert lines[0].getMessage().startswith("upstream_connect_error on GET /users/{id}: ")
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_connect_error") == 20

    def summaries() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "sidecar.proxy.upstream"][1:]

    await wait_for(lambda: bool(summaries()), timeout=10)  # the window's end: the count
    [summary] = summaries()
    assert summary.getMessage() == (
        f"upstream_connect_error on GET /users/{{id}} (19 more in the last 5s), "
        f"upstream {p.component.handler.failures.upstream}"
    )
    assert summary.__dict__["suppressed"] == 19


async def test_failure_log_windows_are_per_reason_and_flushed_at_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.proxy.upstream")
    failures = FailureLog("http://127.0.0.1:1", window=60.0)
    for _ in range(3):
        failures.failed("upstream_connect_error", "GET", "/a", 502)
        failures.failed("upstream_timeout", "POST", "/b", 504)
    assert [r.__dict__["reason"] for r in caplog.records] == [
        "upstream_connect_error",
        "upstream_timeout",
    ]
    failures.close()  # shutdown: the counts are written, not lost
    messages = [r.getMessage() for r in caplog.records[2:]]
    assert messages == [
        "upstream_connect_error on GET /a (2 more in the last 1m), upstream http://127.0.0.1:1",
        "upstream_timeout on POST /b (2 more in the last 1m), upstream http://127.0.0.1:1",
    ]
    failures.close()
    assert len(caplog.records) == 4


# ----------------------------------------------------------------------- access log


def test_access_log_lines_over_tls_without_header_values(
    tmp_path: Path, tls_nginx: TlsUpstream
) -> None:
    """``SSL_CERT_FILE`` makes the test CA the system store: default verification, for the
    proxy and for a merge target over https (aiohttp's client verifies by default)."""
    ports = local_ports("proxy", "admin", "ingest")
    extra = (
        "logging: {access_log: true, level: warning}\n"
        f"merge: {{targets: [{{name: tls, url: '{tls_nginx.https_url}/metrics.txt'}}]}}\n"
    )
    path = _config(tmp_path, ports, tls_nginx.https_url, extra)
    body = tmp_path / "upload.bin"
    body.write_bytes(b"x" * 1000)
    env = {"SSL_CERT_FILE": str(tls_nginx.certificates.ca)}
    with _sidecar(path, ports, **env) as sidecar:
        proxy = f"http://127.0.0.1:{ports['proxy']}"
        secret = ("-H", f"Authorization: {SECRET_HEADER}", "-H", f"X-Api-Key: {SECRET_QUERY}")
        status, got = _curl(
            *secret, "-H", "X-Request-Id: req-42", f"{proxy}/static?t={SECRET_QUERY}"
        )
        assert (status, got) == (200, STATIC)
        status, _ = _curl(*secret, "--data-binary", f"@{body}", f"{proxy}/static?a=b")
        assert status == 405  # nginx: no POST to a static file
        _, _, metrics = http_get(sidecar.url("/metrics"))
        assert b"tls_merged_total 7" in metrics  # merged over https, verified
        wait_until(lambda: len(_lines_where(sidecar, event="access")) == 2, 10, "two lines")
        get, post = _lines_where(sidecar, event="access")
        logs = sidecar.logs()
    assert get["level"] == "info"  # written though logging.level is warning
    assert get["logger"] == "sidecar.access"
    assert {k: get[k] for k in ("method", "route", "status", "request_bytes")} == {
        "method": "GET",
        "route": "/static",
        "status": 200,
        "request_bytes": 0,
    }
    assert get["response_bytes"] == len(STATIC)
    assert get["upstream"] == tls_nginx.https_url
    assert get["protocol"] == "HTTP/1.1"
    assert get["request_id"] == "req-42"
    assert 0 < get["ttfb_ms"] <= get["duration_ms"] < 10_000
    assert (post["method"], post["status"], post["request_bytes"]) == ("POST", 405, 1000)
    assert "request_id" not in post
    assert post["response_bytes"] > 0
    for secret_value in (SECRET_QUERY, "s3cr3t-h3ad3r", "a=b", "?"):
        assert secret_value not in json.dumps([get, post])
    assert SECRET_QUERY not in logs
    assert "s3cr3t-h3ad3r" not in logs


async def test_access_log_is_off_by_default(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    p = await make_proxy()
    assert p.component.handler.access_log is None
    async with p.session.get(p.url + "/status/200") as r:
        assert r.status == 200
    assert not [r for r in caplog.records if r.name == "sidecar.access"]


async def test_access_log_request_id_only_when_it_looks_like_one(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from sidecar.proxy.proxylog import AccessLog

    caplog.set_level(logging.INFO, logger="sidecar.access")
    p = await make_proxy()
    p.component.handler.access_log = AccessLog("http://upstream")
    for request_id in ("ok-1.2:3_4", "has space", "x" * 129, "Bearer abc"):
        async with p.session.get(p.url + "/status/204", headers={"X-Request-Id": request_id}):
            pass
    lines = [r.__dict__ for r in caplog.records if r.name == "sidecar.access"]
    assert [line.get("request_id") for line in lines] == ["ok-1.2:3_4", None, None, None]
    assert {line["status"] for line in lines} == {204}


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_access_records_suit_every_formatter(fmt: str) -> None:
    """The access log's cheap record has every standard attribute a formatter may use."""
    import io
    import time
    from types import SimpleNamespace

    from multidict import CIMultiDict

    from sidecar.logs import configure_logging
    from sidecar.proxy.proxylog import AccessLog
    from sidecar.proxy.server import Exchange

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure_logging("error", fmt, stream)
        extra = logging.StreamHandler(stream)  # every standard field, by name
        extra.setFormatter(
            logging.Formatter(
                "%(asctime)s %(name)s %(levelname)s %(filename)s:%(lineno)d %(funcName)s "
                "%(module)s %(process)d %(threadName)s %(relativeCreated)d %(message)s"
            )
        )
        root.addHandler(extra)
        request = SimpleNamespace(
            version=SimpleNamespace(major=1, minor=0), headers=CIMultiDict({"X-Request-Id": "r1"})
        )
        start = time.perf_counter()
        ex = Exchange("PUT", "/users/{id}", start, 201, start, 3, 4)
        AccessLog("http://127.0.0.1:8080").write(request, ex)  # type: ignore[arg-type]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    first, second = stream.getvalue().splitlines()
    if fmt == "json":
        line = json.loads(first)
        assert line["msg"] == "PUT /users/{id} 201"
        assert (line["protocol"], line["request_id"], line["request_bytes"]) == (
            "HTTP/1.0",
            "r1",
            3,
        )
        assert line["ts"].endswith("Z")
    else:
        assert first.endswith("INFO    sidecar.access: PUT /users/{id} 201")
    assert "sidecar.access INFO proxylog.py:0 write proxylog" in second
    assert second.endswith("PUT /users/{id} 201")


async def test_access_log_writes_a_websocket_session_at_its_end(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from sidecar.proxy.proxylog import AccessLog

    caplog.set_level(logging.INFO, logger="sidecar.access")
    p = await make_proxy()
    p.component.handler.access_log = AccessLog("http://upstream")
    async with p.session.ws_connect(p.url.replace("http", "ws") + "/ws") as ws:
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=10) == "hi"
        assert not [r for r in caplog.records if r.name == "sidecar.access"]  # not yet
    await wait_for(lambda: any(r.name == "sidecar.access" for r in caplog.records))
    [line] = [r.__dict__ for r in caplog.records if r.name == "sidecar.access"]
    assert (line["method"], line["route"], line["status"]) == ("GET", "/ws", 101)
