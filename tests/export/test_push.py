"""The OTLP push against real servers on loopback.

End to end: sidecar A (own instruments, an OTLP-ingested app, a merged app /metrics)
pushes to sidecar B's real ingest; B's /metrics must carry every series A pushed, with
the same value. Then the SDK exporter's retry behaviour (429/503 with Retry-After)
against a real aiohttp server, headers and gzip on the wire, and the shutdown flush.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient, AiohttpServer
from multidict import CIMultiDict
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric

from sidecar import __version__
from sidecar.admin import Readiness, create_admin_app
from sidecar.config import (
    Address,
    AdminConfig,
    Config,
    ExportConfig,
    IngestConfig,
    MergeConfig,
    MergeTarget,
    OtlpExportConfig,
)
from sidecar.export import create_export, metrics_url, resource_rules, unified_view
from sidecar.export.convert import ResourceRules
from sidecar.export.pusher import OtlpPusher, create_exporter, export_counter
from sidecar.ingest import create_ingest
from sidecar.instruments import merge_conflicts
from sidecar.lifecycle import Component
from sidecar.merge import create_merge
from sidecar.merge.fetch import parse_exposition
from sidecar.merge.rawtext import RawFamily
from sidecar.observability import Metrics, Module
from sidecar.unified import UnifiedCollector
from tests.support.merge import samples, value

APP_METRICS = b"""\
# HELP app_jobs_total Jobs done
# TYPE app_jobs_total counter
app_jobs_total{queue="a"} 3
# HELP app_latency_seconds Latency
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le="0.1"} 1
app_latency_seconds_bucket{le="+Inf"} 2
app_latency_seconds_count 2
app_latency_seconds_sum 0.7
"""
OPENMETRICS = "application/openmetrics-text;version=1.0.0"
RESOURCE_LABELS = {"service_name", "service_namespace", "service_instance_id"}
SCOPE_LABELS = {"otel_scope_name", "otel_scope_version"}


@dataclass
class Ingesting:
    """A sidecar's ingest listener and its unified view."""

    module: Module
    component: Component
    unified: UnifiedCollector

    @property
    def url(self) -> str:
        address = self.component.addresses[0]
        return f"http://{address.host}:{address.port}/v1/metrics"


@pytest.fixture
async def ingesting() -> AsyncIterator[list[Ingesting]]:
    started: list[Ingesting] = []
    yield started
    for one in started:
        await one.component.stop(1.0)
        await one.module.shutdown()


async def start_ingesting(name: str, started: list[Ingesting]) -> Ingesting:
    module = Module.new(name)
    config = Config(ingest=IngestConfig(listen=Address("127.0.0.1", 0)))
    component, collector = create_ingest(config, module)
    await component.start()
    unified = UnifiedCollector([module.registry, collector], merge_conflicts(module.meter))
    one = Ingesting(module, component, unified)
    started.append(one)
    return one


def push_app_metrics(url: str) -> None:
    """An app's own OpenTelemetry SDK exporting to ``url`` (blocking: run in a thread)."""
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=url), export_interval_millis=3_600_000
    )
    provider = MeterProvider(
        resource=Resource.create({"service.name": "app", "service.namespace": "shop"}),
        metric_readers=[reader],
    )
    meter = provider.get_meter("app.lib", "2.1")
    meter.create_counter("orders", description="Orders").add(5, {"shop": "x"})
    meter.create_histogram("order.value", unit="By").record(300, {"shop": "x"})
    meter.create_up_down_counter("queue.depth").add(-2)
    provider.shutdown()  # flushes the reader


def comparable(
    name: str, labels: frozenset[tuple[str, str]]
) -> tuple[str, frozenset[tuple[str, str]]]:
    """A series as B shows it minus what the resource round trip adds; empty values dropped."""
    drop = RESOURCE_LABELS | SCOPE_LABELS
    kept = {(k, v) for k, v in labels if v and k not in drop}
    if name.endswith("_bucket"):
        kept = {(k, str(float(v)) if k == "le" else v) for k, v in kept}
    return name, frozenset(kept)


def exported_samples(
    families: Iterable[Metric],
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in families:
        if family.name in ("target", "target_info"):
            continue
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[comparable(s.name, frozenset(s.labels.items()))] = s.value
    return out


async def test_one_sidecars_push_shows_in_anothers_metrics(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, ingesting: list[Ingesting]
) -> None:
    b = await start_ingesting("sidecar-b", ingesting)
    a = await start_ingesting("sidecar-a", ingesting)
    ProcessCollector(registry=a.module.registry)
    metrics = Metrics.create(a.module.meter)
    metrics.http_request_total.add(4, {"method": "GET", "path": "/x", "status": 200})
    metrics.http_request_duration.record(12.5, {"method": "GET", "path": "/x", "status": 200})
    metrics.dlq_depth.add(3)
    await asyncio.to_thread(push_app_metrics, a.url)

    async def app_metrics(_: web.Request) -> web.Response:
        return web.Response(body=APP_METRICS, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", app_metrics)
    app_server = await aiohttp_server(app, host="127.0.0.1")
    target = MergeTarget(
        name="app", url=str(app_server.make_url("/metrics")), labels={"source": "app"}
    )
    config = Config(
        merge=MergeConfig((target,)),
        export=ExportConfig(OtlpExportConfig(endpoint=b.url, interval=3600.0)),
    )
    scraper = create_merge(config.merge, a.module.meter)
    pushed: list[str] = []
    view = unified_view(a.unified, scraper)

    async def recording_view() -> str:
        text = await view()
        pushed.append(text)
        return text

    # `create_export`'s pusher, with its view recording exactly what was pushed (for B)
    pusher = OtlpPusher(
        create_exporter(config.export.otlp),
        recording_view,
        resource_rules(config, a.module),
        config.export.otlp.interval,
        export_counter(a.module.meter),
    )
    try:
        assert await pusher.push()
    finally:
        await scraper.close()
        await asyncio.to_thread(pusher.exporter.shutdown)

    readiness = Readiness()
    readiness.set_ready()
    client = await aiohttp_client(create_admin_app(AdminConfig(), b.unified, readiness))
    b_text = await (await client.get("/metrics")).text()

    (text,) = pushed
    sent = exported_samples(
        f.to_metric() if isinstance(f, RawFamily) else f for f in parse_exposition(text, True)
    )
    assert len(sent) > 40
    # the three parts are all there: own instruments, the ingested app, the merged app
    assert (
        "http_request_total",
        frozenset({("method", "GET"), ("path", "/x"), ("status", "200")}),
    ) in sent
    assert ("orders_total", frozenset({("shop", "x")})) in sent
    assert ("app_jobs_total", frozenset({("queue", "a"), ("source", "app")})) in sent
    received: dict[tuple[str, frozenset[tuple[str, str]]], list[float]] = {}
    for (name, labels), v in samples(b_text).items():
        received.setdefault(comparable(name, labels), []).append(v)
    missing = [k for k in sent if k not in received]
    assert not missing, missing
    wrong = {k: (v, received[k]) for k, v in sent.items() if v not in received[k]}
    assert not wrong, wrong

    # the ingested app keeps its own resource and scope on the way through
    assert value(b_text, "orders_total", shop="x") == 5
    assert (
        value(
            b_text,
            "orders_total",
            service_name="app",
            service_namespace="shop",
            otel_scope_name="app.lib",
        )
        == 5
    )
    assert value(b_text, "http_request_total", service_name="sidecar-a", path="/x") == 4
    assert value(b_text, "app_jobs_total", source="app", service_name="sidecar-a") == 3


@dataclass
class Collector:
    """A fake OTLP collector on loopback: answers from a script, records every request."""

    script: list[tuple[int, dict[str, str]]]
    requests: list[tuple[float, CIMultiDict[str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((time.monotonic(), request.headers.copy(), await request.read()))
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(status=status, headers=headers)


async def start_collector(aiohttp_server: AiohttpServer, collector: Collector) -> str:
    app = web.Application()
    app.router.add_post("/v1/metrics", collector.handle)
    # auto_decompress off: the test sees the body exactly as it was sent (gzipped)
    server = await aiohttp_server(app, host="127.0.0.1", auto_decompress=False)
    return str(server.make_url("/"))


class Families:
    """A fixed view: one gauge, its value the number of reads."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        family = GaugeMetricFamily("depth", "Depth", value=self.calls)
        return UnifiedCollector([_Fixed(family)]).render(OPENMETRICS, "").body.decode()


class _Fixed:
    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return [self.family]


def make_pusher(
    endpoint: str, interval: float = 10.0, headers: dict[str, str] | None = None
) -> tuple[OtlpPusher, Module]:
    module = Module.new("pusher-test")
    config = OtlpExportConfig(endpoint=endpoint, interval=interval, headers=headers or {})
    rules = ResourceRules(
        Resource({"service.name": "s"}),
        default_scope=InstrumentationScope("t"),
    )
    pusher = OtlpPusher(
        create_exporter(config), Families(), rules, interval, export_counter(module.meter)
    )
    return pusher, module


def export_count(module: Module, result: str) -> float | None:
    return module.registry.get_sample_value(
        "sidecar_export_total",
        {
            "result": result,
            "otel_scope_name": "causality-sidecar",
            "otel_scope_version": __version__,
        },
    )


async def test_headers_gzip_and_protobuf_on_the_wire(aiohttp_server: AiohttpServer) -> None:
    collector = Collector([])
    url = await start_collector(aiohttp_server, collector)
    pusher, module = make_pusher(
        url, headers={"X-Scope-OrgID": "tenant-1", "Authorization": "Bearer t0k"}
    )
    try:
        assert await pusher.push()
    finally:
        await asyncio.to_thread(pusher.exporter.shutdown)
    ((_, headers, body),) = collector.requests
    assert headers["X-Scope-OrgID"] == "tenant-1"
    assert headers["Authorization"] == "Bearer t0k"
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "application/x-protobuf"
    request = ExportMetricsServiceRequest.FromString(gzip.decompress(body))
    metric = request.resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.name == "depth"
    assert metric.gauge.data_points[0].as_double == 1
    assert export_count(module, "success") == 1
    await module.shutdown()


@pytest.mark.parametrize(
    ("status", "retry_after", "min_gap", "max_gap"),
    [
        # without Retry-After the SDK's first backoff is 0.8-1.2 s: both gaps rule it out
        pytest.param(429, "0", 0.0, 0.7, id="429-retry-after-0"),
        pytest.param(503, "2", 1.9, 4.0, id="503-retry-after-2"),
    ],
)  # fmt: skip
async def test_retry_honours_retry_after(
    aiohttp_server: AiohttpServer, status: int, retry_after: str, min_gap: float, max_gap: float
) -> None:
    collector = Collector([(status, {"Retry-After": retry_after})])
    url = await start_collector(aiohttp_server, collector)
    pusher, module = make_pusher(url)
    try:
        assert await pusher.push()
    finally:
        await asyncio.to_thread(pusher.exporter.shutdown)
    assert len(collector.requests) == 2
    gap = collector.requests[1][0] - collector.requests[0][0]
    assert min_gap <= gap <= max_gap
    assert collector.requests[0][2] == collector.requests[1][2]  # the same payload again
    assert export_count(module, "success") == 1
    await module.shutdown()


async def test_gives_up_within_the_interval_and_counts_a_failure(
    aiohttp_server: AiohttpServer,
) -> None:
    collector = Collector([(503, {})] * 10)
    url = await start_collector(aiohttp_server, collector)
    pusher, module = make_pusher(url, interval=1.0)  # timeout 1 s: no room for a 1 s backoff
    start = time.monotonic()
    try:
        assert not await pusher.push()
    finally:
        await asyncio.to_thread(pusher.exporter.shutdown)
    assert time.monotonic() - start < 3.0
    assert 1 <= len(collector.requests) <= 2
    assert export_count(module, "failure") == 1
    await module.shutdown()


async def test_400_is_not_retried(aiohttp_server: AiohttpServer) -> None:
    collector = Collector([(400, {})])
    url = await start_collector(aiohttp_server, collector)
    pusher, module = make_pusher(url)
    try:
        assert not await pusher.push()
    finally:
        await asyncio.to_thread(pusher.exporter.shutdown)
    assert len(collector.requests) == 1
    assert export_count(module, "failure") == 1
    await module.shutdown()


async def test_schedule_and_final_flush_on_stop(aiohttp_server: AiohttpServer) -> None:
    collector = Collector([])
    url = await start_collector(aiohttp_server, collector)
    pusher, module = make_pusher(url, interval=0.2)
    pusher.start()
    assert pusher.running
    deadline = time.monotonic() + 10
    while len(collector.requests) < 2:  # two scheduled pushes
        assert time.monotonic() < deadline, "no scheduled pushes"
        await asyncio.sleep(0.02)
    assert await pusher.stop()
    count = len(collector.requests)
    final = ExportMetricsServiceRequest.FromString(gzip.decompress(collector.requests[-1][2]))
    assert (
        final.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double
        == count
    )
    assert not pusher.running  # the schedule is over: nothing more can arrive
    await module.shutdown()


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/metrics"),
        ("http://collector:4318/", "http://collector:4318/v1/metrics"),
        ("https://otlp.example/otlp/v1/metrics", "https://otlp.example/otlp/v1/metrics"),
    ],
)
def test_metrics_url(endpoint: str, url: str) -> None:
    assert metrics_url(endpoint) == url


def test_no_endpoint_no_pusher() -> None:
    module = Module.new("x")
    assert create_export(Config(), module, UnifiedCollector([module.registry])) is None
    assert unified_view(UnifiedCollector([])) is not None


def test_a_zero_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        make_pusher("http://127.0.0.1:1", interval=0.0)
