"""Debian's nginx run on loopback from a config the test writes, for as long as a test needs."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.prometheus import require_tool

START_TIMEOUT_S = 10.0


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited with {process.returncode}: {log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.02)
    raise AssertionError(f"nginx did not listen on {port} within {START_TIMEOUT_S}s")


@contextlib.contextmanager
def running_nginx(directory: Path, conf: str, ports: tuple[int, ...]) -> Iterator[None]:
    """nginx with config text ``conf`` (prefix ``directory``), once it listens on ``ports``."""
    nginx = require_tool("nginx", "nginx")
    conf_path = directory / "nginx.conf"
    conf_path.write_text(conf)
    log = directory / "startup.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [nginx, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for port in ports:
            _wait_port(port, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
