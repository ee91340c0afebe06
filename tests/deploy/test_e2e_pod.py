"""The pod, on loopback: what `helm install` of the chart gives, scraped by a real Prometheus.

Started as the pod would be, every part real:
- the demo app (`python -m sidecar.demo`) on the app port of the render;
- the sidecar (`causality-sidecar run --config FILE`, the container's own args) with the
  ConfigMap config the chart rendered and the container's env; the listen ports are the
  render's, the hosts are moved from 0.0.0.0 to 127.0.0.1 (this sandbox is loopback-only);
- a pipeline pushing OTLP/HTTP to the ingest port with the real OpenTelemetry SDK exporter
  and the catalogue's instruments (sidecar.observability.Metrics), recording the demo
  pipeline's round (sidecar.demo.pipeline.record_round) plus one exactly known count;
- Prometheus (Debian package) with deploy/prometheus/scrape-kubernetes.yaml, every second.
  Debian's build has no Kubernetes service discovery, so the same job reads
  ``file_sd_configs`` holding what Kubernetes SD would report for the rendered pod: one
  target per container port with the pod's annotations, labels, IP (127.0.0.1), phase.
  Prometheus's own relabelling then has to find the admin port and path from the
  ``prometheus.io/*`` annotations.

Then: traffic through the proxy, the Prometheus HTTP API checked, and SIGTERM with a
request in flight.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client.parser import text_string_to_metric_families

from sidecar.demo.pipeline import record_round
from sidecar.observability import Metrics
from tests.support.chart import NAMESPACE, Render, kubernetes_sd_targets, port_of, render
from tests.support.demo_app import demo_app
from tests.support.kubernetes import kubernetes_config_with_file_sd
from tests.support.process import SidecarProcess, free_port, http_get, run_sidecar, wait_until
from tests.support.prometheus import PrometheusServer, poll, start_prometheus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.xdist_group("e2e-pod")]

REQUESTS = 25
PIPELINE_SERVICE = "causality-pipeline"
POD_NAME = "demo-causality-sidecar-7d9f8b6c5-x2x4q"
SLOW_MS = 2500


@dataclass
class Pod:
    """The rendered pod, running on loopback."""

    rendered: Render
    config: dict[str, Any]
    sidecar: SidecarProcess
    prometheus: PrometheusServer
    app_port: int
    proxy_port: int
    admin_port: int
    ingest_port: int
    metrics_path: str
    pipeline: Metrics
    provider: MeterProvider
    notes: list[str] = field(default_factory=list)

    def proxy(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET through the sidecar's proxy port."""
        status, _, body = http_get(f"http://127.0.0.1:{self.proxy_port}{path}", timeout=timeout)
        return status, body

    def scrape(self) -> str:
        """The sidecar's /metrics, read directly."""
        return http_get(f"http://127.0.0.1:{self.admin_port}{self.metrics_path}")[2].decode()


def _rendered_pod(ports: dict[str, int]) -> Render:
    values = {
        "app": {"port": ports["app"]},
        "terminationGracePeriodSeconds": 15,
        "sidecar": {
            "config": {
                "proxy": {
                    "listen": f"0.0.0.0:{ports['proxy']}",
                    "upstream": f"http://127.0.0.1:{ports['app']}",
                    "routes": ["/users/{id}", "/slow"],
                },
                "admin": {"listen": f"0.0.0.0:{ports['admin']}"},
                "ingest": {"listen": f"127.0.0.1:{ports['ingest']}"},
                "shutdown": {"drain_delay": "1s", "drain_timeout": "10s"},
            }
        },
    }
    return render(values)


def _on_loopback(config: dict[str, Any]) -> dict[str, Any]:
    """The rendered config with 0.0.0.0 listeners moved to 127.0.0.1 (same ports)."""
    moved = json.loads(json.dumps(config))
    for section in ("proxy", "admin", "ingest"):
        listen = moved[section]["listen"]
        moved[section]["listen"] = f"127.0.0.1:{port_of(listen)}"
    return moved


@contextlib.contextmanager
def _pipeline(ingest_port: int) -> Iterator[tuple[Metrics, MeterProvider]]:
    """A pipeline service pushing the catalogue's instruments over OTLP/HTTP protobuf."""
    # a short export timeout bounds the retries once the SIGTERM test has stopped the sidecar
    exporter = OTLPMetricExporter(endpoint=f"http://127.0.0.1:{ingest_port}/v1/metrics", timeout=2)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=500)
    resource = Resource.create(
        {"service.name": PIPELINE_SERVICE, "service.instance.id": "pipeline-0"}
    )
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    try:
        yield Metrics.create(provider.get_meter("causality.pipeline")), provider
    finally:
        provider.shutdown(timeout_millis=3000)


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """The whole pod plus Prometheus, started once for the module."""
    workdir = tmp_path_factory.mktemp("pod")
    ports = {name: free_port() for name in ("app", "proxy", "admin", "ingest")}
    rendered = _rendered_pod(ports)
    config = _on_loopback(rendered.sidecar_config)
    config_file = workdir / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    sidecar_container = rendered.sidecar
    args = sidecar_container["args"]
    assert args[:2] == ["run", "--config"]
    env = {e["name"]: e["value"] for e in sidecar_container.get("env", []) if "value" in e}
    admin = port_of(config["admin"]["listen"])
    sd_file = workdir / "pods.json"
    sd_file.write_text(json.dumps(kubernetes_sd_targets(rendered, POD_NAME)))
    scrape = kubernetes_config_with_file_sd(sd_file)["scrape_configs"]
    with (
        demo_app(ports["app"]),
        run_sidecar(
            ["run", "--config", str(config_file)], admin=f"127.0.0.1:{admin}", env=env
        ) as sidecar,
        _pipeline(port_of(config["ingest"]["listen"])) as (pipeline, provider),
    ):
        prometheus = start_prometheus(workdir / "prometheus", scrape, scrape_interval="1s")
        try:
            yield Pod(
                rendered=rendered,
                config=config,
                sidecar=sidecar,
                prometheus=prometheus,
                app_port=ports["app"],
                proxy_port=port_of(config["proxy"]["listen"]),
                admin_port=admin,
                ingest_port=port_of(config["ingest"]["listen"]),
                metrics_path=config["admin"]["metrics_path"],
                pipeline=pipeline,
                provider=provider,
            )
        finally:
            prometheus.stop()


def _value(prom: PrometheusServer, expr: str) -> float | None:
    values = prom.query(expr).values()
    return values[0] if values else None


# The tests run in file order on one worker (one module fixture); the SIGTERM test is last.


def test_prometheus_finds_the_sidecar_through_the_annotations(pod: Pod) -> None:
    [target] = pod.prometheus.wait_for_targets_up(1, timeout=30)
    assert target["scrapeUrl"] == f"http://127.0.0.1:{pod.admin_port}{pod.metrics_path}"
    assert target["labels"]["namespace"] == NAMESPACE
    assert target["labels"]["pod"] == POD_NAME
    # app, proxy and metrics container ports collapse into one target after relabelling
    assert len(pod.prometheus.targets()) == 1
    assert _value(pod.prometheus, f'up{{pod="{POD_NAME}"}}') == 1.0


def test_request_total_grows_by_exactly_the_requests_sent(pod: Pod) -> None:
    prom = pod.prometheus
    route = 'sum(http_request_total{path="/users/{id}", status="200"}) or vector(0)'
    every = "sum(http_request_total) or vector(0)"
    prom.wait_for_scrapes(1)
    before = {expr: _value(prom, expr) or 0.0 for expr in (route, every)}
    for user in range(REQUESTS):
        status, body = pod.proxy(f"/users/{user + 1}")
        assert status == 200, pod.sidecar.logs()
        assert json.loads(body)["id"] == user + 1
    poll(
        lambda: True if _value(prom, route) == before[route] + REQUESTS else None,
        30,
        lambda: f"{route} == {before[route] + REQUESTS}; now {_value(prom, route)}",
    )
    prom.wait_for_scrapes(2)  # and it stays exact: nothing counted twice, nothing else counted
    for expr, was in before.items():
        assert _value(prom, expr) == was + REQUESTS, expr


def test_otlp_pipeline_metrics_and_target_info(pod: Pod) -> None:
    record_round(pod.pipeline, random.Random(7))  # the demo pipeline's round: every instrument
    pod.pipeline.nats_messages_processed.add(42, {"stream": "events"})
    assert pod.provider.force_flush(10_000)
    prom = pod.prometheus
    selector = f'service_name="{PIPELINE_SERVICE}"'
    processed = prom.wait_for_result(
        f'nats_messages_processed_total{{{selector}, stream="events"}}', timeout=30
    )
    assert processed.values() == [42.0]
    assert processed.series[0]["pod"] == POD_NAME
    target_info = prom.wait_for_result(f"target_info{{{selector}}}", timeout=30)
    assert target_info.series[0]["service_instance_id"] == "pipeline-0"
    names = {s["__name__"] for s in prom.query(f"count by (__name__) ({{{selector}}})").series}
    expected = {"dlq_depth", "webhook_success_total", "rules_evaluated_total", "target_info"}
    assert expected <= names, sorted(names)


def test_no_scrape_errors(pod: Pod) -> None:
    prom = pod.prometheus
    prom.wait_for_scrapes(2)
    [target] = prom.targets()
    assert target["health"] == "up"
    assert target["lastError"] == ""
    scrapes = _value(prom, "count_over_time(up[1h])")
    successes = _value(prom, "sum_over_time(up[1h])")
    assert scrapes is not None
    assert scrapes >= 3
    assert successes == scrapes
    samples = _value(prom, "min_over_time(scrape_samples_scraped[1h])")
    assert samples is not None
    assert samples > 0


def _in_flight(pod: Pod) -> float:
    for family in text_string_to_metric_families(pod.scrape()):
        for sample in family.samples:
            if sample.name == "http_requests_in_flight":
                return sample.value
    return 0.0


def test_sigterm_turns_unready_first_and_finishes_the_request_in_flight(pod: Pod) -> None:
    result: dict[str, Any] = {}

    def slow_request() -> None:
        result["status"], result["body"] = pod.proxy(f"/slow?ms={SLOW_MS}", timeout=30)
        result["done_at"] = time.monotonic()

    worker = threading.Thread(target=slow_request)
    worker.start()
    wait_until(lambda: _in_flight(pod) >= 1, 10, "the slow request in flight")
    pod.sidecar.proc.send_signal(signal.SIGTERM)
    ready_url = f"http://127.0.0.1:{pod.admin_port}/readyz"
    wait_until(lambda: http_get(ready_url, timeout=1)[0] == 503, 5, "/readyz 503")
    unready_at = time.monotonic()
    worker.join(30)
    assert not worker.is_alive()
    assert result["status"] == 200, pod.sidecar.logs()
    assert result["body"] == f"slept {SLOW_MS} ms\n".encode()
    assert unready_at < result["done_at"]
    assert pod.sidecar.proc.wait(20) == 0, pod.sidecar.logs()
