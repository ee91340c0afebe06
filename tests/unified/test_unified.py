"""The unified /metrics: design §9 merge rules, fast path = generic path, promtool-clean."""

from __future__ import annotations

import gzip

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.exposition import generate_latest

from sidecar.exposition import WRITE_PIECE
from sidecar.instruments import merge_conflicts
from sidecar.observability import Metrics, Module
from sidecar.unified import UnifiedCollector, metrics_handler
from tests.support.otlp import Harness, gauge, histogram, hpoint, mixed_harness, number, request
from tests.support.prometheus import check_metrics
from tests.support.reference_render import render

TEXT = "text/plain"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.fixture
def module():
    module = Module.new("unified-test")
    yield module
    module.provider.shutdown()


def _own_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("shared", "own help", ["a"], registry=registry).labels("1").set(1)
    Counter("x", "own counter", registry=registry).inc(2)
    Gauge("only_own", "own only", registry=registry).set(5)
    return registry


def _ingested() -> Harness:
    harness = Harness()
    harness.push(
        request(
            gauge(
                "shared",
                [number(10, {"a": "1"}), number(20, {"a": "2"})],
                description="ingest help",
            ),
            gauge("x_total", [number(3)]),
            histogram("x", [hpoint([1.0], [1, 1], 1.0)]),
            gauge("only_ingested", [number(7)]),
            resource={},
        )
    )
    return harness


def _conflicts(module: Module) -> dict[str, float]:
    out = {}
    for family in module.registry.collect():
        for sample in family.samples:
            if sample.name == "sidecar_merge_conflicts_total":
                out[sample.labels["kind"]] = sample.value
    return out


def test_merge_rules(module):
    unified = UnifiedCollector(
        [_own_registry(), _ingested().collector], merge_conflicts(module.meter)
    )
    text = render(unified, TEXT, "").body.decode()
    assert text == (
        "# HELP shared own help\n# TYPE shared gauge\n"
        'shared{a="1"} 1.0\n'
        'shared{a="2"} 20.0\n'
        "# HELP x_total own counter\n# TYPE x_total counter\nx_total 2.0\n"
        "# HELP x_created own counter\n# TYPE x_created gauge\n"
        + next(line for line in text.splitlines(keepends=True) if line.startswith("x_created "))
        + "# HELP only_own own only\n# TYPE only_own gauge\nonly_own 5.0\n"
        "# HELP only_ingested \n# TYPE only_ingested gauge\nonly_ingested 7.0\n"
    )
    # one series dropped (shared{a="1"} from the lower source), two families (x_total gauge, x histogram)
    assert _conflicts(module) == {"series": 1.0, "type": 2.0}


@pytest.mark.parametrize("accept", [TEXT, OPENMETRICS], ids=["text", "openmetrics"])
@pytest.mark.parametrize("accept_encoding", ["", "gzip"], ids=["plain", "gzip"])
def test_fast_path_equals_generic_path(accept, accept_encoding):
    unified = UnifiedCollector([_own_registry(), mixed_harness(200).collector])
    fast = unified.render(accept, accept_encoding)
    generic = render(unified, accept, accept_encoding)
    assert (fast.content_type, fast.content_encoding) == (
        generic.content_type,
        generic.content_encoding,
    )
    body = gzip.decompress(fast.body) if accept_encoding else fast.body
    assert body == (gzip.decompress(generic.body) if accept_encoding else generic.body)
    if accept == OPENMETRICS:
        assert body.endswith(b"# EOF\n")


def test_with_sources_adds_lower_sources_per_scrape():
    unified = UnifiedCollector([_own_registry()])
    lower = CollectorRegistry()
    Gauge("shared", "lower help", ["a"], registry=lower).labels("3").set(3)
    text = unified.with_sources([lower]).render(TEXT, "").body.decode()
    assert 'shared{a="3"} 3.0' in text
    assert "lower help" not in text
    assert 'shared{a="3"}' not in unified.render(TEXT, "").body.decode()


def test_promtool_accepts_thousands_of_mixed_series(module):
    metrics = Metrics.create(module.meter)
    for status in (200, 404, 500):
        attrs = {"method": "GET", "path": "/users/{id}", "status": status}
        metrics.http_request_duration.record(12.5, attrs)
        metrics.http_request_total.add(1, attrs)
    metrics.dlq_depth.add(3)
    merge_conflicts(module.meter).add(1, {"kind": "series"})
    ProcessCollector(registry=module.registry)
    harness = mixed_harness(600)
    unified = UnifiedCollector([module.registry, harness.collector])
    exposition = unified.render(TEXT, "")
    lines = [line for line in exposition.body.decode().splitlines() if not line.startswith("#")]
    assert len(lines) > 10_000
    assert len(harness.store) > 2 * 4 * 600
    check = check_metrics(exposition.body)
    assert check.passes, check.findings


def test_promtool_openmetrics_input_is_one_document():
    unified = UnifiedCollector([_own_registry(), mixed_harness(20).collector])
    body = unified.render(OPENMETRICS, "").body.decode()
    assert body.count("# EOF") == 1
    assert body.endswith("# EOF\n")
    names = [line.split()[2] for line in body.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))


def test_generate_latest_of_the_unified_collector_works():
    unified = UnifiedCollector([_own_registry(), _ingested().collector])
    assert b"only_ingested 7.0" in generate_latest(unified)


async def test_metrics_handler_serves_the_fast_path_with_extra_sources(aiohttp_client):
    lower = CollectorRegistry()
    Gauge("from_target", "target", registry=lower).set(9)
    calls = []

    async def extra(request: web.Request):
        calls.append(request.path)
        return [lower]

    app = web.Application()
    app.router.add_get(
        "/metrics",
        metrics_handler(UnifiedCollector([_own_registry(), _ingested().collector]), extra),
    )
    client = await aiohttp_client(app)
    response = await client.get(
        "/metrics", headers={"Accept": OPENMETRICS, "Accept-Encoding": "gzip"}
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    body = await response.text()  # aiohttp's client inflates gzip
    assert "from_target 9.0" in body
    assert "only_ingested 7.0" in body
    assert body.endswith("# EOF\n")
    assert calls == ["/metrics"]


def test_empty_label_values_do_not_make_a_series_distinct(module):
    own = CollectorRegistry()
    Gauge("g", "own", ["a", "pad"], registry=own).labels("1", "").set(1)
    lower = CollectorRegistry()
    Gauge("g", "lower", ["a"], registry=lower).labels("1").set(2)
    unified = UnifiedCollector([own, lower], merge_conflicts(module.meter))
    text = unified.render(TEXT, "").body.decode()
    assert 'g{a="1",pad=""} 1.0' in text
    assert "2.0" not in text
    assert _conflicts(module) == {"series": 1.0, "type": 0.0}  # known kinds start at 0


async def test_a_large_exposition_goes_in_pieces_and_arrives_whole(aiohttp_client, monkeypatch):
    """Over `WRITE_PIECE` bytes, /metrics is written a piece at a time (the loop runs
    between two sends); the scraper reads the same bytes a one-piece answer has."""
    registry = CollectorRegistry()
    wide = Gauge("wide", "many series", ["i"], registry=registry)
    for i in range(20_000):
        wide.labels(f"series-{i:05d}").set(i)
    unified = UnifiedCollector([registry])
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(unified))
    client = await aiohttp_client(app)
    writes: list[int] = []
    original = web.StreamResponse.write

    async def counted(self: web.StreamResponse, data: bytes) -> None:
        writes.append(len(data))
        await original(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", counted)
    plain = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "identity"}
    response = await client.get("/metrics", headers=plain)
    body = await response.read()
    expected = unified.render("text/plain;version=0.0.4", "").body
    assert len(expected) > 2 * WRITE_PIECE
    assert body == expected
    assert int(response.headers["Content-Length"]) == len(expected)
    assert writes == [WRITE_PIECE] * (len(expected) // WRITE_PIECE) + [len(expected) % WRITE_PIECE]
    head = await client.head("/metrics", headers=plain)
    assert head.status == 200
    assert await head.read() == b""
