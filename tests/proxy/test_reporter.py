"""Issue 15 (7): the proxy's ``http_request_*`` and the app's own are never summed by accident.

The real sidecar proxies requests to an app, and the app pushes its own
``http.request.total`` (same attributes: method, path, status) through the OpenTelemetry
Python SDK's OTLP exporter to the sidecar's ingest. A real Prometheus scrapes the
sidecar: ``{reporter="sidecar"}`` gives exactly the proxied count, the app's series are
the rest, and before the label existed ``sum(http_request_total)`` counted every request
twice with no selector to tell the two apart.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Counter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client.parser import text_string_to_metric_families

from sidecar import __version__
from sidecar.batching import mergeable_aggregations
from sidecar.config import ProxyConfig
from sidecar.instruments import merge_conflicts
from sidecar.observability import Metrics, Module
from sidecar.proxy.metrics import ProxyMetrics, proxy_views
from sidecar.unified import UnifiedCollector
from tests.support.process import local_ports, run_sidecar
from tests.support.prometheus import (
    PrometheusFactory,
    PrometheusServer,
    poll,
    static_scrape_config,
)
from tests.support.prometheus import prometheus_factory as prometheus_factory  # the fixture

FIRST, SECOND = 7, 5  # requests per round
PATH = "/items/{id}"
SIDECAR = 'http_request_total{reporter="sidecar"}'
APP = 'http_request_total{reporter!="sidecar"}'


class _App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def app_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def one_round(proxy: str, provider: MeterProvider, count: int, requests: Counter) -> None:
    """``count`` requests through the proxy; the app counts them itself and pushes."""
    for i in range(count):
        with urllib.request.urlopen(f"{proxy}/items/{i}", timeout=5) as response:
            assert response.status == 200
            assert response.read() == b"ok"
        requests.add(1, {"method": "GET", "path": PATH, "status": 200})
    assert provider.force_flush(10_000)


def test_the_proxy_s_count_is_told_apart_from_the_app_s_own(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    ports = local_ports("proxy", "admin", "otlp")
    config = tmp_path / "config.yaml"
    config.write_text(f"proxy: {{routes: ['{PATH}']}}\n")
    admin = f"127.0.0.1:{ports['admin']}"
    with app_server() as upstream:
        args = ["run", "--config", str(config), "--upstream", upstream,
                "--listen", f"127.0.0.1:{ports['proxy']}", "--admin-listen", admin,
                "--otlp-listen", f"127.0.0.1:{ports['otlp']}"]  # fmt: skip
        with run_sidecar(args, admin=admin):
            exporter = OTLPMetricExporter(
                endpoint=f"http://127.0.0.1:{ports['otlp']}/v1/metrics", timeout=5
            )
            reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
            provider = MeterProvider(
                resource=Resource.create({"service.name": "shop"}), metric_readers=[reader]
            )
            requests = provider.get_meter("shop").create_counter("http.request.total")
            proxy = f"http://127.0.0.1:{ports['proxy']}"
            try:
                one_round(proxy, provider, FIRST, requests)
                prom = prometheus_factory([static_scrape_config("sidecar", admin)])
                prom.wait_for_targets_up()
                wait_for_value(prom, f"sum({SIDECAR})", FIRST)
                one_round(proxy, provider, SECOND, requests)
                total = FIRST + SECOND
                wait_for_value(prom, f"sum({SIDECAR})", total)
                wait_for_value(prom, f"sum({APP})", total)
                prom.wait_for_scrapes(2)
                assert value(prom, "sum(http_request_total)") == 2 * total  # both, on purpose
                # rates: equal up to the extrapolation of samples a scrape apart (~0.1%)
                proxied = value(prom, f"sum(rate({SIDECAR}[5m]))")
                assert proxied > 0
                assert value(prom, f"sum(rate({APP}[5m]))") == pytest.approx(proxied, rel=0.01)
                both = value(prom, "sum(rate(http_request_total[5m]))")
                assert both == pytest.approx(2 * proxied, rel=0.01)
                (app_series,) = prom.query(APP).series
                assert app_series["service_name"] == "shop"
                assert "reporter" not in app_series  # the app's data is left as it came
                conflicts = prom.query("sum(sidecar_merge_conflicts_total)").values()
                assert conflicts in ([], [0.0])  # the two no longer compete for one series
            finally:
                provider.shutdown()


def value(prom: PrometheusServer, expr: str) -> float:
    (found,) = prom.query(expr).values()
    return found


def wait_for_value(prom: PrometheusServer, expr: str, expected: float) -> None:
    def reached() -> bool | None:
        return prom.query(expr).values() == [expected] or None

    poll(reached, 30.0, lambda: f"{expr} == {expected}: {prom.query(expr).values()}")


def test_an_app_s_own_reporter_label_is_kept_and_only_an_identical_series_yields() -> None:
    """The app's series (here from a merged /metrics) keep their labels, a ``reporter`` of
    their own too; only a series identical to one of the proxy's, reporter="sidecar"
    included, loses to it (design §9's rule, counted as a series conflict)."""
    module = Module.new("reporter", views=proxy_views(ProxyConfig()))
    proxy = ProxyMetrics(
        module.meter,
        Metrics.create(module.meter),
        lambda: 0,
        aggregations=mergeable_aggregations(module),
    )
    proxy.exchange("GET", "/a", 200, 1.0, 0.5, 0, 2)
    app = CollectorRegistry()
    labels = ["method", "path", "status", "reporter", "otel_scope_name", "otel_scope_version"]
    requests = PromCounter("http_request", "The app's own", labels, registry=app)
    requests.labels("GET", "/a", "200", "sidecar", "causality-sidecar", __version__).inc(99)
    requests.labels("GET", "/a", "200", "destination", "app", "").inc(5)
    requests.labels("GET", "/a", "200", "", "app", "").inc(7)
    unified = UnifiedCollector([module.registry, app], merge_conflicts(module.meter))
    try:
        text = unified.render("text/plain", "").body.decode()
        found = {
            tuple(
                sorted((k, v) for k, v in s.labels.items() if v and (k == "reporter" or v == "app"))
            ): s.value
            for f in text_string_to_metric_families(text)
            if f.name == "http_request"
            for s in f.samples
            if s.name == "http_request_total"
        }
        assert found == {
            (("reporter", "sidecar"),): 1.0,  # the proxy's; the app's identical one dropped
            (("otel_scope_name", "app"), ("reporter", "destination")): 5.0,
            (("otel_scope_name", "app"),): 7.0,
        }
        conflicts = [
            s.value
            for f in module.registry.collect()
            for s in f.samples
            if s.name == "sidecar_merge_conflicts_total" and s.labels["kind"] == "series"
        ]
        assert conflicts == [1.0]
    finally:
        module.provider.shutdown()
