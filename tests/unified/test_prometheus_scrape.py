"""A real Prometheus scrapes the unified /metrics (it negotiates OpenMetrics) and reads it back."""

from __future__ import annotations

from aiohttp import web

from sidecar import exposition
from sidecar.observability import Metrics, Module
from sidecar.unified import UnifiedCollector, metrics_handler
from tests.support.otlp import mixed_harness
from tests.support.prometheus import prometheus_factory, static_scrape_config  # noqa: F401


async def test_prometheus_ingests_the_unified_exposition(aiohttp_server, prometheus_factory):  # noqa: F811
    module = Module.new("scrape-test")
    Metrics.create(module.meter).http_request_total.add(
        3, {"method": "GET", "path": "/", "status": 200}
    )
    harness = mixed_harness(50)
    handler = metrics_handler(UnifiedCollector([module.registry, harness.collector]))
    content_types: list[str] = []

    async def recording(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        content_types.append(response.headers["Content-Type"])
        return response

    app = web.Application()
    app.router.add_get("/metrics", recording)
    server = await aiohttp_server(app)
    prom = prometheus_factory([static_scrape_config("sidecar", f"127.0.0.1:{server.port}")])
    try:
        targets = await prom.await_targets_up()
        assert targets[0]["lastError"] == ""
        orders = await prom.await_result('orders_total{service_name="a",i="7"}')
        assert orders.values() == [7.0]
        p50 = await prom.await_result(
            'histogram_quantile(0.5, sum by (le) (rate(rt_milliseconds_bucket{service_name="b"}[1m])) or sum by (le) (rt_milliseconds_bucket{service_name="b"}))'
        )
        assert not p50.is_empty
        info = await prom.await_result('target_info{service_name="b"}')
        assert info.series[0]["host_name"] == "h-b"
        own = await prom.await_result('http_request_total{path="/"}')
        assert own.values() == [3.0]
        scraped = await prom.await_result('scrape_samples_scraped{job="sidecar"}')
        assert scraped.values()[0] > 1000
        # Prometheus asks for OpenMetrics first: that is the format it parsed
        assert content_types[0].startswith("application/openmetrics-text")
    finally:
        await module.shutdown()


async def test_prometheus_reads_an_exposition_sent_in_pieces(
    aiohttp_server,
    prometheus_factory,  # noqa: F811
    monkeypatch,
):
    """An exposition over `WRITE_PIECE` goes out a piece at a time (`exposition.send`);
    a real Prometheus reads it whole. The piece is made small so that this harness's
    gzipped answer takes the pieced path."""
    monkeypatch.setattr(exposition, "WRITE_PIECE", 1024)
    harness = mixed_harness(50)
    unified = UnifiedCollector([harness.collector])
    handler = metrics_handler(unified)
    pieced: list[bool] = []

    async def recording(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        pieced.append(type(response) is web.StreamResponse)  # (not a one-piece Response)
        return response

    app = web.Application()
    app.router.add_get("/metrics", recording)
    server = await aiohttp_server(app)
    prom = prometheus_factory([static_scrape_config("sidecar", f"127.0.0.1:{server.port}")])
    targets = await prom.await_targets_up()
    assert targets[0]["lastError"] == ""
    orders = await prom.await_result('orders_total{service_name="a",i="7"}')
    assert orders.values() == [7.0]
    samples = sum(len(m.samples) for m in unified.collect())
    scraped = await prom.await_result('scrape_samples_scraped{job="sidecar"}')
    assert scraped.values()[0] == samples
    assert pieced
    assert all(pieced)
