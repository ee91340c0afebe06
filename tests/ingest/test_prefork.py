"""The proof of issue 20: a real pre-fork server's workers become one pod-level series.

gunicorn runs `tests.ingest.prefork_app` with 4 workers recycled every 50 (±10) requests;
each worker pushes its own OTLP metrics with the OpenTelemetry SDK (its final values when
it exits). ``ab`` drives 10,000 requests through the real sidecar's proxy while a real
Prometheus scrapes the sidecar every second. With ``ingest.workers`` on, Prometheus sees
one ``app_requests_total`` series, never a reset, ending at exactly 10,000, which the
proxy's own ``http_request_total`` for the route agrees with; for cumulative and delta
temporality alike. Without it (the control), the same run gives one series per worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.process import free_port, http_get, local_ports, run_sidecar, wait_until
from tests.support.prometheus import (  # noqa: F401  (prometheus_factory: a fixture)
    PrometheusFactory,
    PrometheusServer,
    prometheus_factory,
    require_tool,
    static_scrape_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

REQUESTS = 10_000
CONCURRENCY = 8
ROUTE = "/hello"
ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def gunicorn(port: int, otlp_port: int, temporality: str, log: Path) -> Iterator[None]:
    """gunicorn with 4 sync workers recycled every 50 ± 10 requests, each pushing OTLP."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{otlp_port}/v1/metrics",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": temporality,
    }
    args = [
        sys.executable, "-m", "gunicorn", "--config", "python:tests.ingest.prefork_app",
        "--bind", f"127.0.0.1:{port}", "--workers", "4",
        "--max-requests", "50", "--max-requests-jitter", "10", "--preload",
        "tests.ingest.prefork_app:app",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _answers(port), 20, "gunicorn answering")
        yield
    finally:
        proc.terminate()  # graceful: every worker pushes its final values
        proc.wait(30)


def _answers(port: int) -> bool:
    try:
        return http_get(f"http://127.0.0.1:{port}/ready", timeout=1)[0] == 200
    except OSError:
        return False


def _drive(proxy_port: int, requests: int) -> str:
    ab = require_tool("ab", "apache2-utils")
    url = f"http://127.0.0.1:{proxy_port}{ROUTE}"
    done = subprocess.run(
        [ab, "-q", "-n", str(requests), "-c", str(CONCURRENCY), url],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(rf"Complete requests:\s+{requests}\b", done.stdout), done.stdout
    assert re.search(r"Failed requests:\s+0\b", done.stdout), done.stdout
    assert "Non-2xx" not in done.stdout, done.stdout
    return done.stdout


def _scalar(prom: PrometheusServer, expr: str) -> float | None:
    values = prom.query(expr).values()
    return values[0] if values else None


def _run(
    tmp_path: Path, factory: PrometheusFactory, temporality: str, workers: bool, requests: int
) -> tuple[Any, list[float], float | None, float | None, float | None, str]:
    ports = local_ports("proxy", "admin", "otlp")
    app_port = free_port()
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        "shutdown: {drain_delay: 0s, drain_timeout: 5s}\n"
        + (
            "ingest:\n  workers:\n    attributes: [service.instance.id, process.pid]\n"
            "    idle: 3s\n"
            if workers
            else ""
        )
    )
    admin = f"127.0.0.1:{ports['admin']}"
    args = [
        "run", "--config", str(config), "--upstream", f"http://127.0.0.1:{app_port}",
        "--listen", f"127.0.0.1:{ports['proxy']}", "--admin-listen", admin,
        "--otlp-listen", f"127.0.0.1:{ports['otlp']}", "--log-level", "warning",
    ]  # fmt: skip
    with (
        run_sidecar(args, admin=admin) as car,
        gunicorn(app_port, ports["otlp"], temporality, tmp_path / "gunicorn.log"),
    ):
        prom = factory([static_scrape_config("pod", admin)], scrape_interval="1s")
        prom.wait_for_targets_up()
        began = time.time()
        _drive(ports["proxy"], requests)
        # every worker alive at the end pushes within its export interval
        total = f'sum(app_requests_total{{route="{ROUTE}"}})'
        wait_until(lambda: _scalar(prom, total) == requests, 30, f"{total} == {requests}")
        prom.wait_for_scrapes(2)
        window = f"[{int(time.time() - began) + 5}s]"
        series = prom.api("series", {"match[]": "app_requests_total", "start": str(began - 5)})
        resets = prom.query(f'resets(app_requests_total{{route="{ROUTE}"}}{window})').values()
        proxied = _scalar(prom, f'sum(http_request_total{{path="{ROUTE}"}})')
        retired = _scalar(prom, "sidecar_ingest_workers_retired_total")
        live = _scalar(prom, "sidecar_ingest_workers")
        status = http_get(car.url("/"))[2].decode()
        return series, resets, proxied, retired, live, status


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_gunicorn_workers_are_one_pod_level_counter(
    tmp_path: Path,
    prometheus_factory: PrometheusFactory,  # noqa: F811
    temporality: str,
) -> None:
    series, resets, proxied, retired, live, status = _run(
        tmp_path, prometheus_factory, temporality, workers=True, requests=REQUESTS
    )
    # exactly one series per label set (the readiness probe's route is the other)
    assert sorted(s["route"] for s in series) == [ROUTE, "/ready"], series
    assert not [s for s in series if "process_pid" in s or "service_instance_id" in s]
    assert resets == [0.0]
    assert proxied == REQUESTS
    assert retired is not None
    assert retired > 0  # recycled workers were retired during the run
    assert live is not None
    assert live <= 20
    assert "<th>workers</th>" in status


def test_control_without_workers_every_worker_is_a_series(
    tmp_path: Path,
    prometheus_factory: PrometheusFactory,  # noqa: F811
) -> None:
    series, *_ = _run(tmp_path, prometheus_factory, "cumulative", workers=False, requests=1000)
    # 4 + ~1,000 / 55 recycles: one series per worker process (what issue 20 fixes)
    assert len(series) > 10
