"""``causality-sidecar demo --workers N``: recycled worker processes, one pod-level series."""

from __future__ import annotations

import signal

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.process import http_get, local_ports, run_sidecar, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def _sample_objects(text: str, name: str) -> list[Sample]:
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def _samples(text: str, name: str) -> list[dict[str, str]]:
    return [s.labels for s in _sample_objects(text, name)]


def test_demo_workers_are_one_series_per_label_set() -> None:
    ports = local_ports("proxy", "admin", "otlp", "app")
    admin = f"127.0.0.1:{ports['admin']}"
    args = [
        "demo", "--workers", "3", "--no-traffic",
        "--listen", f"127.0.0.1:{ports['proxy']}", "--admin-listen", admin,
        "--otlp-listen", f"127.0.0.1:{ports['otlp']}", "--app-listen", f"127.0.0.1:{ports['app']}",
    ]  # fmt: skip
    with run_sidecar(args, admin=admin) as car:

        def metrics() -> str:
            return http_get(car.url("/metrics"))[2].decode()

        def every_kind_counted() -> bool:
            kinds = {s.get("kind") for s in _samples(metrics(), "demo_worker_jobs_total")}
            return kinds == {"email", "report", "thumbnail"}

        def live_workers() -> float:
            values = [s.value for s in _sample_objects(metrics(), "sidecar_ingest_workers")]
            return float(values[0]) if values else 0.0

        wait_until(every_kind_counted, 30, "the three job kinds counted")
        # the three workers (and the demo pipeline, a one-process source)
        wait_until(lambda: live_workers() >= 3, 30, "three live workers")
        jobs = _samples(metrics(), "demo_worker_jobs_total")
        assert len(jobs) == 3, jobs  # one per kind, not one per worker process
        assert not [s for s in jobs if "process_pid" in s or "service_instance_id" in s]
        page = http_get(car.url("/"))[2].decode()
        assert "<th>workers</th>" in page
        assert "causality-demo-workers" in page
        assert car.stop(signal.SIGTERM) == 0, car.logs()
