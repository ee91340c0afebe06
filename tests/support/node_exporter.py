"""A real Prometheus node_exporter for tests and benchmarks (Debian ``prometheus-node-exporter``).

A Go exporter as merge targets meet them: client_golang's text exposition, gzip when
asked, the Go collector's gauge ``go_memstats_alloc_bytes`` beside the counter
``go_memstats_alloc_bytes_total``, a summary, ~550 series::

    with running_node_exporter(tmp_path) as exporter:
        body = urllib.request.urlopen(exporter.url).read()

or ask for the ``node_exporter`` fixture. It listens on a free 127.0.0.1 port and is
stopped afterwards. The tool rule of `tests.support.prometheus.require_tool` applies.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.process import free_port
from tests.support.prometheus import require_tool

__all__ = ["NodeExporter", "node_exporter", "running_node_exporter"]

PACKAGE = "prometheus-node-exporter"
BINARY = "prometheus-node-exporter"
READY_TIMEOUT_S = 20.0
START_ATTEMPTS = 3  # a freshly picked free port can be taken before we bind it


@dataclass(slots=True)
class NodeExporter:
    """A running node_exporter."""

    url: str  # its /metrics
    address: str  # host:port
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """What it logged so far (for assertion messages)."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_node_exporter(workdir: Path, *args: str) -> NodeExporter:
    """Start node_exporter (its default collectors, plus ``args``) on a free loopback
    port and wait until /metrics answers."""
    binary = require_tool(BINARY, PACKAGE)
    workdir.mkdir(parents=True, exist_ok=True)
    failures = []
    for attempt in range(START_ATTEMPTS):
        address = f"127.0.0.1:{free_port()}"
        log_path = workdir / f"node-exporter-{attempt}.log"
        command = [binary, f"--web.listen-address={address}", *args]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        exporter = NodeExporter(f"http://{address}/metrics", address, process, log_path)
        if _wait_ready(exporter):
            return exporter
        exporter.stop()
        failures.append(exporter.log()[-2000:])
    raise RuntimeError("node_exporter did not start:\n" + "\n---\n".join(failures))


def _wait_ready(exporter: NodeExporter) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if exporter.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(exporter.url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def running_node_exporter(workdir: Path, *args: str) -> Iterator[NodeExporter]:
    """`start_node_exporter` as a context manager that always stops it."""
    exporter = start_node_exporter(workdir, *args)
    try:
        yield exporter
    finally:
        exporter.stop()


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[NodeExporter]:
    """A running node_exporter (free loopback port), stopped after the test."""
    with running_node_exporter(tmp_path / "node-exporter") as exporter:
        yield exporter
