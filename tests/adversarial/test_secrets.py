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
