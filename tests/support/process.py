"""Run the real `causality-sidecar` as a subprocess on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 20.0
# the proxy alone in its own process (its own RSS and fds), as the benchmarks run it
PROXY_ONLY = Path(__file__).resolve().parents[2] / "bench" / "proxy_only.py"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``; (status, headers, body) also for 4xx/5xx answers."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate()`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class SidecarProcess:
    """A running sidecar and where it listens."""

    proc: subprocess.Popen[bytes]
    admin: str
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        """A URL on the admin listener."""
        return f"http://{self.admin}{path}"

    final_logs: str | None = None

    def logs(self) -> str:
        """Everything the process wrote to stderr/stdout so far (kept after it ended)."""
        if self.final_logs is not None:
            return self.final_logs
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def _is_ready(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"sidecar exited early with code {proc.returncode}")
    try:
        return http_get(url, timeout=1.0)[0] == 200
    except OSError:
        return False


@contextlib.contextmanager
def run_sidecar(
    args: Sequence[str],
    *,
    admin: str | None = None,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> Iterator[SidecarProcess]:
    """Start ``causality-sidecar ARGS``; wait for ``/readyz``; kill it at the end."""
    full_env = {**os.environ, **(env or {})}
    with tempfile.NamedTemporaryFile("wb", suffix=".log", delete=False) as log_file:
        log_path = Path(log_file.name)
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    sidecar = SidecarProcess(proc, admin or "127.0.0.1:9464", log_path)
    try:
        if wait_ready:
            wait_until(
                lambda: _is_ready(sidecar.url("/readyz"), proc), START_TIMEOUT_S, "sidecar ready"
            )
        yield sidecar
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sidecar.final_logs = sidecar.logs()
        log_path.unlink(missing_ok=True)


def local_ports(*names: str) -> dict[str, int]:
    """One free port per name."""
    return {name: free_port() for name in names}
