"""The observability module: catalogue names, types, HELP; the HTTP middleware."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient
from prometheus_client.parser import text_string_to_metric_families

from sidecar import observability
from sidecar.escaping import Escaping, escaped, metric_is_legacy
from sidecar.observability import Metrics, Module, SnapshotRegistry, http_metrics
from sidecar.unified import UnifiedCollector, metrics_handler
from tests.support.observability import EXPOSED_NAMES, record_everything
from tests.support.reference_render import render

# (Prometheus family name as exposed, type, HELP) for every design §6 catalogue instrument.
CATALOGUE = [
    ("http_request_duration_milliseconds", "histogram", "HTTP request duration"),
    ("http_request", "counter", "Total HTTP requests"),
    ("http_request_errors", "counter", "HTTP request errors (4xx, 5xx)"),
    ("nats_messages_processed", "counter", "NATS messages processed"),
    ("nats_batch_size", "histogram", "NATS messages per fetched batch"),
    ("nats_flush_latency_milliseconds", "histogram", "NATS batch flush latency"),
    ("nats_ack_latency_milliseconds", "histogram", "NATS message acknowledgement latency"),
    ("s3_files_written", "counter", "Parquet files written to S3"),
    ("s3_file_size_bytes", "histogram", "Size of Parquet files written to S3"),
    ("dedup_dropped", "counter", "Events dropped as duplicates"),
    ("dlq_depth", "gauge", "Messages waiting in the dead-letter queue"),
    ("rules_evaluated", "counter", "Reaction-engine rules evaluated"),
    ("alerts_fired", "counter", "Alerts fired"),
    ("webhook_success", "counter", "Webhook deliveries that succeeded"),
    ("webhook_failure", "counter", "Webhook deliveries that failed"),
]


@pytest.fixture
def module() -> Iterator[Module]:
    mod = Module.new("observability-test")
    yield mod
    mod.provider.shutdown()


def test_every_catalogue_instrument_has_its_name_type_and_help(module: Module) -> None:
    record_everything(Metrics.create(module.meter))
    text = render(module.registry, "", "").body.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind, help_text in CATALOGUE:
        assert name in families, f"{name} missing from:\n{text}"
        assert families[name].type == kind, name
        assert families[name].documentation == help_text, name
    for name in EXPOSED_NAMES:
        assert f"\n# TYPE {name} " in text, name
    assert "dlq_depth{" in text
    assert "} 2.0" in text.split("dlq_depth{", 1)[1].split("\n")[0]


def test_two_modules_never_see_each_others_series() -> None:
    a, b = Module.new("a"), Module.new("b")
    try:
        Metrics.create(a.meter).alerts_fired.add(5)
        text_b = render(b.registry, "", "").body.decode()
        text_a = render(a.registry, "", "").body.decode()
        assert "alerts_fired_total" in text_a
        assert "alerts_fired_total" not in text_b
    finally:
        a.provider.shutdown()
        b.provider.shutdown()


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


async def _broken(request: web.Request) -> web.Response:
    return web.Response(status=503)


async def test_middleware_records_method_path_status(
    module: Module, aiohttp_client: AiohttpClient
) -> None:
    metrics = Metrics.create(module.meter)
    app = web.Application(middlewares=[http_metrics(metrics)])
    app.router.add_get("/users/{id}", _ok)
    app.router.add_get("/missing", _missing)
    app.router.add_post("/broken", _broken)
    client = await aiohttp_client(app)
    for path in ("/users/1", "/users/2", "/missing", "/unrouted"):
        await (await client.get(path)).read()
    await (await client.post("/broken")).read()

    text = render(module.registry, "", "").body.decode()
    samples = {
        (s.name, s.labels.get("method"), s.labels.get("path"), s.labels.get("status")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("http_request_total", "GET", "/users/{id}", "200")] == 2
    assert samples[("http_request_total", "GET", "/missing", "404")] == 1
    assert samples[("http_request_total", "GET", "/unrouted", "404")] == 1
    assert samples[("http_request_total", "POST", "/broken", "503")] == 1
    assert samples[("http_request_duration_milliseconds_count", "GET", "/users/{id}", "200")] == 2
    # errors only for status >= 400
    assert ("http_request_errors_total", "GET", "/users/{id}", "200") not in samples
    assert samples[("http_request_errors_total", "GET", "/missing", "404")] == 1
    assert samples[("http_request_errors_total", "POST", "/broken", "503")] == 1


async def test_metrics_handler_serves_a_module_registry(
    module: Module, aiohttp_client: AiohttpClient
) -> None:
    Metrics.create(module.meter).alerts_fired.add(3)
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(UnifiedCollector([module.registry])))
    client = await aiohttp_client(app)
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "\nalerts_fired_total{" in await response.text()


def test_recent_is_the_last_collection_while_young(module: Module) -> None:
    """The status page reads a scrape's collection rather than collect again."""
    registry = module.registry
    assert isinstance(registry, SnapshotRegistry)
    assert registry.recent(3600.0) is None  # nothing collected yet
    module.meter.create_counter("recent.events").add(3)
    collected = list(registry.collect())
    kept = registry.recent(3600.0)
    assert kept is not None
    assert list(kept.collect()) == collected
    assert [f.name for f in kept.collect()] == [f.name for f in collected]
    assert registry.recent(-1.0) is None  # older than asked for


def test_own_families_say_whether_their_names_need_escaping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`metric_is_legacy` takes the own collector's word, which must be right: should
    the exporter's sanitising ever make a label name outside the legacy set (it maps
    to ASCII today; an empty attribute key stays empty), the family says so and is
    escaped for a legacy scraper as any other."""
    mod = Module.new("legacy-hint-test")
    counter = mod.meter.create_counter("hint.requests")
    counter.add(1, {"route": "/a"})
    (plain,) = [f for f in mod.registry.collect() if f.name == "hint_requests"]
    assert plain.legacy_names is True  # type: ignore[attr-defined]
    assert metric_is_legacy(plain)
    monkeypatch.setattr(observability, "sanitize_attribute", lambda key: key)
    counter.add(1, {"café": "x"})
    (odd,) = [f for f in mod.registry.collect() if f.name == "hint_requests"]
    assert odd.legacy_names is False  # type: ignore[attr-defined]
    assert not metric_is_legacy(odd)
    names = {label for s in escaped(odd, Escaping.UNDERSCORES).samples for label in s.labels}
    assert "caf_" in names
    del odd.legacy_names  # type: ignore[attr-defined]
    assert not metric_is_legacy(odd)  # the samples say the same
