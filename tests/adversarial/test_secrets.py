"""Case 12: Authorization, Cookie and X-API-Key values never show up anywhere.

Input: requests carrying all three secrets through the real sidecar process, at log level
debug (every line any level would write), in JSON and text log formats, along every path
that logs or answers by itself: success, upstream reset before headers, upstream reset
mid-body, a malformed head with the secret in the bad line, an oversized head, a bad
upstream status line. The OTLP receiver, not yet wired into the process, is driven
in-process with logging at DEBUG. Expected: the secret values are in no log line, no
error body the sidecar wrote, and no /metrics label.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import http_get, local_ports, run_sidecar, wait_until

SECRETS = {
    "Authorization": "Bearer tok-4f1c9e2a8b7d",
    "Cookie": "session=ck-9a8b7c6d5e; theme=dark",
    "X-API-Key": "key-0c1d2e3f4a5b",
}
NEEDLES = ("tok-4f1c9e2a8b7d", "ck-9a8b7c6d5e", "key-0c1d2e3f4a5b")


class _Upstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Behaviour(socketserver.BaseRequestHandler):
    """Per path: /ok 200, /reset RST before headers, /mid RST mid-body, /badstatus."""

    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            data += chunk
        path = data.split(b" ", 2)[1]
        if path.startswith(b"/reset"):
            self._rst()
        elif path.startswith(b"/mid"):
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            self._rst()
        elif path.startswith(b"/badstatus"):
            self.request.sendall(b"HTTP/1.1 2x0 Nope\r\nContent-Length: 0\r\n\r\n")
        else:
            self.request.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            )

    def _rst(self) -> None:
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.request.close()


@pytest.fixture
def upstream() -> Iterator[str]:
    server = _Upstream(("127.0.0.1", 0), _Behaviour)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _secret_head(path: str, extra: bytes = b"") -> bytes:
    lines = b"".join(f"{k}: {v}\r\n".encode() for k, v in SECRETS.items())
    return (
        f"GET {path} HTTP/1.1\r\nHost: a\r\n".encode()
        + lines
        + extra
        + b"Connection: close\r\n\r\n"
    )


REQUESTS = {
    "ok": _secret_head("/ok"),
    "reset-before-headers": _secret_head("/reset"),
    "reset-mid-body": _secret_head("/mid"),
    "bad-upstream-status": _secret_head("/badstatus"),
    "malformed-secret-line": b"GET /ok HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer tok-4f1c9e2a8b7d\x01\r\n\r\n",
    "malformed-cookie-line": b"GET /ok HTTP/1.1\r\nHost: a\r\nCookie: session=ck-9a8b7c6d5e\x00\r\n\r\n",
    "oversized-with-secrets": _secret_head("/ok", b"X-Pad: " + b"p" * 70_000 + b"\r\n"),
    "secret-in-bad-te": _secret_head("/ok", b"Transfer-Encoding: key-0c1d2e3f4a5b\r\n"),
}


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(raw)
        out = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                out += chunk
        return out


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_never_reach_logs_bodies_or_metrics(
    upstream: str, tmp_path: Path, fmt: str
) -> None:
    ports = local_ports("proxy", "admin", "otlp")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"logging: {{level: debug, format: {fmt}}}\nproxy: {{response_timeout: 5s}}\n"
    )
    args = [
        "run", "--config", str(config), "--upstream", upstream,
        "--listen", f"127.0.0.1:{ports['proxy']}", "--admin-listen", f"127.0.0.1:{ports['admin']}",
        "--otlp-listen", f"127.0.0.1:{ports['otlp']}", "--log-level", "debug",
    ]  # fmt: skip
    answers: dict[str, bytes] = {}
    with run_sidecar(args, admin=f"127.0.0.1:{ports['admin']}") as car:
        for name, raw in REQUESTS.items():
            answers[name] = _exchange(ports["proxy"], raw)
        assert answers["ok"].startswith(b"HTTP/1.1 200")
        assert answers["reset-before-headers"].startswith(b"HTTP/1.1 502")
        assert answers["malformed-secret-line"].split(b" ")[1] == b"400"
        metrics = http_get(car.url("/metrics"))[2].decode()
        wait_until(lambda: "upstream" in car.logs(), 5, "the upstream failures logged")
        assert car.stop() == 0
    logs = car.logs()
    assert logs.strip(), "the sidecar logged nothing at debug level"
    leaks = [f"{n} in the logs" for n in NEEDLES if n in logs]
    leaks += [f"{n} in /metrics" for n in NEEDLES if n in metrics]
    leaks += [
        f"{n} in the answer to {name}"
        for n in NEEDLES
        for name, answer in answers.items()
        if n.encode() in answer
    ]
    assert leaks == []


async def test_ingest_never_logs_or_echoes_secrets(ingest_factory, caplog) -> None:
    ingest = await ingest_factory()
    caplog.set_level(logging.DEBUG)
    for body in (b"\xff not protobuf", b"", b"\x0a\x02\x0a"):
        response = await ingest.client.post(
            "/v1/metrics", data=body, headers={**SECRETS, "Content-Type": "application/x-protobuf"}
        )
        answer = await response.read()
        for needle in NEEDLES:
            assert needle.encode() not in answer
    for needle in NEEDLES:
        assert needle not in caplog.text


# ------------------------------------------------- secrets in the configuration itself
# Issue 15 item 3: every output of the config (check-config, /debug/config, the status
# page, the logs) hides the values at the places a credential sits: every header value,
# and in every URL the userinfo and the query values. These needles sit at each place.
CONFIG_NEEDLES = (
    "up-user-pw-71a2", "up-query-tok-83b4",          # proxy.upstream
    "merge-pw-95c6", "merge-query-tok-a7d8",          # merge.targets[].url
    "export-pw-b9e0", "export-query-tok-c1f2",        # export.otlp.endpoint
    "hc-team-d3a4", "bearer-tok-e5b6",                # export.otlp.headers
)  # fmt: skip


def _secret_config(upstream_port: int, dead_port: int, export_port: int | None = None) -> str:
    return f"""
proxy:
  upstream: http://app:up-user-pw-71a2@127.0.0.1:{upstream_port}/?access_token=up-query-tok-83b4
merge:
  targets:
    - name: app
      url: http://scraper:merge-pw-95c6@127.0.0.1:{dead_port}/metrics?token=merge-query-tok-a7d8
export:
  otlp:
    endpoint: http://u:export-pw-b9e0@127.0.0.1:{export_port or dead_port}/v1/metrics?api_key=export-query-tok-c1f2
    interval: 200ms
    headers: {{x-honeycomb-team: hc-team-d3a4, Authorization: Bearer bearer-tok-e5b6}}
logging: {{level: debug, access_log: true}}
shutdown: {{drain_delay: 0}}
"""


def _leaks(where: str, text: str) -> list[str]:
    return [f"{needle} in {where}" for needle in CONFIG_NEEDLES if needle in text]


def test_check_config_prints_no_secret(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "secrets.yaml"
    path.write_text(_secret_config(8080, 9))
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _leaks("stdout", done.stdout) + _leaks("stderr", done.stderr) == []
    # what is set stays visible: the header names and the query keys
    assert "x-honeycomb-team: <redacted>" in done.stdout
    assert "?access_token=<redacted>" in done.stdout
    assert "http://<redacted>@127.0.0.1:9/metrics?token=<redacted>" in done.stdout


def test_running_sidecar_shows_no_secret(upstream: str, tmp_path: Path) -> None:
    """/debug/config, the status page and the logs (at debug, with pushes that succeed,
    to this sidecar's own OTLP port, and merge scrapes that fail) hold none of the
    secrets."""
    ports = local_ports("proxy", "admin", "otlp", "dead")
    config = tmp_path / "secrets.yaml"
    upstream_port = int(upstream.rsplit(":", 1)[1])
    config.write_text(_secret_config(upstream_port, ports["dead"], ports["otlp"]))
    args = [
        "run", "--config", str(config),
        "--listen", f"127.0.0.1:{ports['proxy']}", "--admin-listen", f"127.0.0.1:{ports['admin']}",
        "--otlp-listen", f"127.0.0.1:{ports['otlp']}",
    ]  # fmt: skip
    with run_sidecar(args, admin=f"127.0.0.1:{ports['admin']}") as car:
        status, _, debug_config = http_get(car.url("/debug/config"))
        assert status == 200
        status, _, page = http_get(car.url("/?refresh=0"))
        assert status == 200
        assert http_get(car.url("/metrics"))[0] == 200  # a merge scrape that fails
        # a request through the proxy and one the upstream fails: access and failure logs
        assert _exchange(ports["proxy"], REQUESTS["ok"]).startswith(b"HTTP/1.1 200")
        assert _exchange(ports["proxy"], REQUESTS["reset-before-headers"]).startswith(
            b"HTTP/1.1 502"
        )
        wait_until(
            lambda: '"upstream_failure"' in car.logs() and '"access"' in car.logs(),
            10,
            "the failure and access log lines",
        )
        wait_until(
            lambda: 'result="success"' in http_get(car.url("/metrics"))[2].decode(),
            10,
            "a push that reached the OTLP port",
        )
        assert car.stop() == 0
    leaks = _leaks("/debug/config", debug_config.decode())
    leaks += _leaks("the status page", page.decode())
    leaks += _leaks("the logs", car.logs())
    assert leaks == []
    assert b'"x-honeycomb-team": "<redacted>"' in debug_config
    assert b"access_token=&lt;redacted&gt;" in page or b"access_token=<redacted>" in page
