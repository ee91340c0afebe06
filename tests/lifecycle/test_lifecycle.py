"""Design §10 against the real process: drain on SIGTERM, forced exit, SIGHUP reload.

The sidecar and the demo app run as real processes on free loopback ports; requests go
through real sockets from threads so the test can act while they are in flight.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.process import (
    SidecarProcess,
    http_get,
    local_ports,
    run_sidecar,
    wait_until,
)


@contextlib.contextmanager
def sidecar_for(app: str, tmp_path: Path, config: str) -> Iterator[tuple[SidecarProcess, str]]:
    ports = local_ports("proxy", "admin", "otlp")
    path = tmp_path / "config.yaml"
    path.write_text(config)
    args = [
        "run", "--config", str(path), "--upstream", f"http://{app}",
        "--listen", f"127.0.0.1:{ports['proxy']}",
        "--admin-listen", f"127.0.0.1:{ports['admin']}",
        "--otlp-listen", f"127.0.0.1:{ports['otlp']}",
    ]  # fmt: skip
    with run_sidecar(args, admin=f"127.0.0.1:{ports['admin']}") as car:
        yield car, f"http://127.0.0.1:{ports['proxy']}"


def _get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def _events(car: SidecarProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in car.logs().splitlines() if line.startswith("{")]


def _in_flight(car: SidecarProcess, count: int) -> bool:
    return "http_requests_in_flight{" in (
        text := http_get(car.url("/metrics"))[2].decode()
    ) and any(
        line.startswith("http_requests_in_flight") and float(line.rsplit(" ", 1)[1]) >= count
        for line in text.splitlines()
    )


def test_sigterm_drains_in_flight_requests(demo_app: str, tmp_path: Path) -> None:
    config = "shutdown: {drain_delay: 1s, drain_timeout: 10s}\n"
    with sidecar_for(demo_app, tmp_path, config) as (car, proxy), ThreadPoolExecutor(2) as pool:
        slow: Future[tuple[int, bytes]] = pool.submit(_get, f"{proxy}/slow?ms=2500")
        wait_until(lambda: _in_flight(car, 1), 10, "the slow request in flight")
        car.proc.send_signal(signal.SIGTERM)
        # readiness drops at once, the proxy still serves during the drain delay
        wait_until(lambda: http_get(car.url("/readyz"))[0] == 503, 5, "/readyz 503")
        assert _get(f"{proxy}/users/1")[0] == 200
        # the in-flight request completes in full, and the process exits 0
        assert slow.result(30) == (200, b"slept 2500 ms\n")
        assert car.proc.wait(20) == 0
    events = [e.get("event") for e in _events(car)]
    assert events.index("drain_start") < events.index("stopped")
    assert _events(car)[-1]["cut"] == 0


def test_listeners_close_after_the_drain_delay(demo_app: str, tmp_path: Path) -> None:
    config = "shutdown: {drain_delay: 0, drain_timeout: 10s}\n"
    with sidecar_for(demo_app, tmp_path, config) as (car, proxy), ThreadPoolExecutor(1) as pool:
        slow = pool.submit(_get, f"{proxy}/slow?ms=2000")
        wait_until(lambda: _in_flight(car, 1), 10, "the slow request in flight")
        car.proc.send_signal(signal.SIGTERM)
        port = int(proxy.rsplit(":", 1)[1])

        def refused() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) != 0

        wait_until(refused, 5, "the proxy listener to close")
        assert slow.result(30)[0] == 200  # still finished on its open connection
        assert car.proc.wait(20) == 0


def test_drain_timeout_cuts_what_is_left(demo_app: str, tmp_path: Path) -> None:
    config = "shutdown: {drain_delay: 0, drain_timeout: 500ms}\nproxy: {response_timeout: 30s}\n"
    with sidecar_for(demo_app, tmp_path, config) as (car, proxy), ThreadPoolExecutor(1) as pool:
        slow = pool.submit(_get, f"{proxy}/slow?ms=8000")
        wait_until(lambda: _in_flight(car, 1), 10, "the slow request in flight")
        car.proc.send_signal(signal.SIGTERM)
        assert car.proc.wait(10) == 0
        # the client sees the cut, never a short success
        with pytest.raises(OSError, match=r"Remote end closed|reset|IncompleteRead|closed"):
            slow.result(30)
    assert _events(car)[-1]["cut"] == 1


def test_sighup_reloads_a_good_file_and_keeps_the_old_on_a_bad_one(
    demo_app: str, tmp_path: Path
) -> None:
    with sidecar_for(demo_app, tmp_path, "logging: {level: info}\n") as (car, proxy):
        config = tmp_path / "config.yaml"
        config.write_text("logging: {level: debug}\nproxy: {connect_timeout: 1s}\n")
        car.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "config reloaded" in car.logs(), 5, "reload logged")
        assert "applied: logging.level; waiting for a restart: proxy.connect_timeout" in car.logs()
        config.write_text("logging: {level: loud}\n")
        car.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "config not reloaded" in car.logs(), 5, "bad reload logged")
        assert "logging.level: expected one of" in car.logs()
        # still serving, still ready
        assert _get(f"{proxy}/users/3")[0] == 200
        assert http_get(car.url("/readyz"))[0] == 200
        assert car.stop() == 0


def test_second_signal_during_drain_reports_the_cut(demo_app: str, tmp_path: Path) -> None:
    config = "shutdown: {drain_delay: 30s}\n"
    done = threading.Event()
    with sidecar_for(demo_app, tmp_path, config) as (car, proxy), ThreadPoolExecutor(1) as pool:
        slow = pool.submit(_get, f"{proxy}/slow?ms=8000")
        slow.add_done_callback(lambda _: done.set())
        wait_until(lambda: _in_flight(car, 1), 10, "the slow request in flight")
        car.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: http_get(car.url("/readyz"))[0] == 503, 5, "/readyz 503")
        car.proc.send_signal(signal.SIGTERM)
        assert car.proc.wait(5) == 128 + signal.SIGTERM
        assert "cutting 1 in-flight requests" in car.logs()
        assert done.wait(10)
        with pytest.raises(OSError, match=r"Remote end closed|reset|IncompleteRead|closed"):
            slow.result()


def test_sighup_in_the_demo_keeps_its_flags(tmp_path: Path) -> None:
    """The demo's own flags (listeners, the upstream from --app-listen) survive a reload."""
    ports = local_ports("proxy", "admin", "otlp", "app")
    config = tmp_path / "config.yaml"
    config.write_text("logging: {level: info}\n")
    args = [
        "demo", "--config", str(config), "--no-traffic",
        "--app-listen", f"127.0.0.1:{ports['app']}",
        "--listen", f"127.0.0.1:{ports['proxy']}",
        "--admin-listen", f"127.0.0.1:{ports['admin']}",
        "--otlp-listen", f"127.0.0.1:{ports['otlp']}",
    ]  # fmt: skip
    with run_sidecar(args, admin=f"127.0.0.1:{ports['admin']}") as car:
        config.write_text("logging: {level: debug}\n")
        car.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "config reloaded" in car.logs(), 5, "reload logged")
        assert "waiting for a restart: nothing" in car.logs()
        assert _get(f"http://127.0.0.1:{ports['proxy']}/users/1")[0] == 200
        assert car.stop() == 0
