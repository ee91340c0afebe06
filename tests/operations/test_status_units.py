"""sidecar/status: quantiles, sampling, series counts, sparklines, redaction (pure parts)."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge

from sidecar.config import MergeTarget
from sidecar.ingest import store as store_module
from sidecar.ingest.store import StoreLimits
from sidecar.merge import fetch
from sidecar.merge.fetch import Result, Scrape, parse_exposition
from sidecar.merge.rawtext import Unsupported
from sidecar.observability import Metrics, Module
from sidecar.status.inventory import (
    StoreSources,
    count_series,
    ingest_sources,
    merge_counts,
    series_report,
)
from sidecar.status.page import sparkline
from sidecar.status.sampler import TrafficSampler, histogram_quantile, route_totals
from tests.support.otlp import Harness, gauge, number, request

# the same histogram as the recording-rule test in deploy/prometheus/rules.test.yaml
BUCKETS = ((10.0, 300.0), (100.0, 540.0), (1000.0, 600.0), (math.inf, 600.0))


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        pytest.param(0.5, BUCKETS, 10.0, id="p50-top-of-first"),
        pytest.param(0.9, BUCKETS, 100.0, id="p90"),
        pytest.param(0.99, BUCKETS, 910.0, id="p99-interpolated"),
        pytest.param(0.25, BUCKETS, 5.0, id="first-bucket-from-zero"),
        pytest.param(0.99, ((1.0, 0.0), (math.inf, 10.0)), 1.0, id="inf-bucket-highest-bound"),
        pytest.param(0.5, ((1.0, 0.0), (math.inf, 0.0)), math.nan, id="no-observations"),
        pytest.param(0.5, (), math.nan, id="no-buckets"),
    ],
)
def test_histogram_quantile_like_prometheus(
    q: float, buckets: tuple[tuple[float, float], ...], expected: float
) -> None:
    got = histogram_quantile(q, buckets)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


def _record(metrics: Metrics, path: str, status: str, ms: float, n: int = 1) -> None:
    attrs = {"method": "GET", "path": path, "status": status}
    for _ in range(n):
        metrics.http_request_total.add(1, attrs)
        metrics.http_request_duration.record(ms, attrs)


def test_route_totals_read_the_real_exporter_output() -> None:
    module = Module.new("status-test")
    metrics = Metrics.create(module.meter)
    _record(metrics, "/users/{id}", "200", 3.0, n=9)
    _record(metrics, "/users/{id}", "503", 40.0)
    _record(metrics, "/", "200", 1.0)
    totals = route_totals(module.registry)
    assert set(totals) == {"/users/{id}", "/"}
    users = totals["/users/{id}"]
    assert (users.requests, users.server_errors) == (10.0, 1.0)
    assert users.buckets[-1] == (math.inf, 10.0)


def test_sampler_window_and_history() -> None:
    module = Module.new("status-test")
    metrics = Metrics.create(module.meter)
    now = [100.0]
    sampler = TrafficSampler(module.registry, interval=5.0, history=60.0, clock=lambda: now[0])
    assert sampler.window() == {}
    for _ in range(20):  # more snapshots than the ring holds
        _record(metrics, "/a", "200", 3.0, n=10)
        _record(metrics, "/a", "500", 3.0, n=10)
        sampler.sample()
        now[0] += 5.0
    assert len(sampler.ring) == 13  # 60 s / 5 s + 1
    stats = sampler.window(60.0)["/a"]
    assert stats.rate == pytest.approx(4.0)  # 20 requests per 5 s
    assert stats.error_ratio == pytest.approx(0.5)
    assert 0 < stats.p50 <= stats.p99 <= 5.0  # the OTel default bucket holding 3 ms is (0, 5]
    history = sampler.series("/a")
    assert len(history) == 12
    assert all(s.rate == pytest.approx(4.0) for s in history)
    traffic = sampler.traffic(60.0)
    assert traffic.routes["/a"] == stats
    assert traffic.rate_history["/a"] == [s.rate for s in history]
    assert sampler.traffic(60.0) is traffic  # the ring did not change: kept
    _record(metrics, "/a", "200", 3.0, n=60)  # 60 in the next 5 s
    sampler.sample()  # a full ring: one in, one out
    again = sampler.series("/a")
    assert len(again) == 12
    assert again[:-1] == history[1:]
    assert again[-1].rate == pytest.approx(12.0)
    changed = sampler.traffic(60.0)
    assert changed is not traffic
    assert changed.rate_history["/a"] == [s.rate for s in again]
    assert len(sampler._pairs) == 12  # the pair that left the ring is forgotten


def test_sampler_traffic_is_what_a_fresh_sampler_computes() -> None:
    """The kept pairs (computed once each, as the ring moves) give what computing every
    pair of the same ring again gives, for routes that come and go."""
    module = Module.new("status-test")
    metrics = Metrics.create(module.meter)
    now = [0.0]
    sampler = TrafficSampler(module.registry, interval=5.0, history=30.0, clock=lambda: now[0])
    for step in range(25):
        for route in range(step % 4 + 1):
            _record(metrics, f"/r{route}", "200" if step % 3 else "503", 2.0 + route, n=step + 1)
        sampler.sample()
        now[0] += 5.0
        kept = sampler.traffic()
        fresh = TrafficSampler(module.registry, interval=5.0, history=30.0)
        fresh.ring.extend(sampler.ring)
        expected = fresh.traffic()
        assert kept.routes == expected.routes
        assert kept.rate_history == expected.rate_history
        assert _same_floats(kept.p99_history, expected.p99_history)
        assert asyncio.run(sampler.traffic_off_loop()) is kept  # the ring did not change


def _same_floats(a: dict[str, list[float]], b: dict[str, list[float]]) -> bool:
    """Equal, NaN equal to NaN (no observations between two snapshots)."""
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k])
        and all(
            x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a[k], b[k], strict=True)
        )
        for k in a
    )


def test_series_counts_per_metric_and_source() -> None:
    own = CollectorRegistry()
    Counter("jobs", "Jobs.", ["queue"], registry=own).labels("a").inc()
    Gauge("temp", "Temp.", registry=own).set(1)
    ingested = CollectorRegistry()
    jobs = Counter("jobs", "Jobs.", ["queue"], registry=ingested)
    for queue in "bcd":
        jobs.labels(queue).inc()
    counts = count_series({"sidecar": own, "ingest": ingested})
    assert [(c.metric, c.source) for c in counts][:1] == [("jobs_total", "ingest")]
    report = series_report({"sidecar": own, "ingest": ingested}, limit=1)
    # prometheus_client counters also expose a *_created sample per series: same label set
    assert report["sources"] == {"ingest": 3, "sidecar": 2}
    assert report["total"] == 5
    assert report["metrics"] == [{"metric": "jobs_total", "series": 4}]


MERGED_TEXT = """\
# HELP jobs_total Jobs.
# TYPE jobs_total counter
jobs_total{queue="a"} 1
jobs_total{queue="b"} 2
# HELP temp Temp.
# TYPE temp gauge
temp 1
# HELP lat Latency.
# TYPE lat histogram
lat_bucket{le="1",route="/a"} 1
lat_bucket{le="+Inf",route="/a"} 1
lat_count{route="/a"} 1
lat_sum{route="/a"} 0.5
"""
MERGED_OPENMETRICS = """\
# HELP jobs Jobs.
# TYPE jobs counter
jobs_total{queue="a"} 1
jobs_created{queue="a"} 1.7e+09
jobs_total{queue="b"} 2
jobs_created{queue="b"} 1.7e+09
jobs_total{queue="c"} 3
jobs_created{queue="c"} 1.7e+09
# EOF
"""


@pytest.mark.parametrize("fast", [True, False], ids=["raw-families", "prometheus-client"])
def test_merge_target_series_per_metric(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not fast:  # every body through prometheus_client's parsers
        monkeypatch.setattr(fetch, "parse_fast", _refuse)
    target = MergeTarget(name="app", url="http://127.0.0.1:1/metrics")
    scrapes = {
        "app": Scrape(target, Result.SUCCESS, parse_exposition(MERGED_TEXT, False)),
        "om": Scrape(target, Result.SUCCESS, parse_exposition(MERGED_OPENMETRICS, True)),
    }
    counts = merge_counts(scrapes)
    assert sorted((c.source, c.metric, c.series) for c in counts) == [
        ("merge:app", "jobs_total", 2),
        ("merge:app", "lat", 1),  # buckets, count and sum of one label set: one series
        ("merge:app", "temp", 1),
        ("merge:om", "jobs_total", 3),  # _created lines are not series of their own
    ]
    report = series_report({}, limit=2, extra=counts)
    assert report["sources"] == {"merge:app": 4, "merge:om": 3}
    assert report["metrics"] == [
        {"metric": "jobs_total", "series": 5},
        {"metric": "lat", "series": 1},
    ]


def _refuse(*_: object) -> None:
    raise Unsupported("prometheus_client's parsers, on purpose")


def test_ingest_sources_from_store_shapes() -> None:
    targets = {
        'service_name="reactor",service_instance_id="r-1",host_name="h"': 90.0,
        'service_name="ingest",service_instance_id="i-1"': 99.0,
    }
    series = [
        'service_name="reactor",service_instance_id="r-1",queue="a"',
        'service_name="reactor",service_instance_id="r-1",queue="b"',
        'service_name="ingest",service_instance_id="i-1"',
    ]
    sources = ingest_sources(targets, series, clock=lambda: 100.0)
    assert [(s.service_name, s.service_instance_id, s.series) for s in sources] == [
        ("ingest", "i-1", 1),
        ("reactor", "r-1", 2),
    ]
    assert [s.last_push_age_s for s in sources] == [1.0, 10.0]


def test_sparkline_scales_and_leaves_gaps() -> None:
    svg = sparkline([1.0, 2.0, math.nan, 4.0, 4.0], "p99", "p99 of /a <x>")
    assert svg.startswith("<svg")
    assert svg.count("<polyline") == 2
    assert "&lt;x&gt;" in svg
    assert sparkline([3.0], "rate", "one").count("<circle") == 1
    assert sparkline([1.0, math.nan, 2.0, 3.0], "rate", "dot+line").count("<circle") == 1
    assert sparkline([], "rate", "empty").count("<polyline") == 0


def test_store_sources_reads_a_real_store() -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    from sidecar.ingest.store import MetricStore, StoreLimits
    from sidecar.ingest.translate import TranslationRules, Translator
    from sidecar.status.inventory import store_sources

    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    for key, value in (("service.name", "reactor"), ("service.instance.id", "r-1")):
        attr = rm.resource.attributes.add()
        attr.key, attr.value.string_value = key, value
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = "jobs"
    metric.gauge.data_points.add(as_int=3, time_unix_nano=1)
    translator = Translator(
        TranslationRules(promote_resource_attributes=("service.name", "service.instance.id"))
    )
    store = MetricStore(StoreLimits())
    store.apply(translator.translate(request))
    [source] = store_sources(store)
    assert (source.service_name, source.service_instance_id, source.series) == ("reactor", "r-1", 1)
    assert source.last_push_age_s is not None
    assert 0 <= source.last_push_age_s < 60


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        pytest.param('a="1",service_name="x"', "service_name", "x", id="last"),
        pytest.param('service_name="x",a="1"', "service_name", "x", id="first"),
        pytest.param('my_service_name="y",service_name="x"', "service_name", "x", id="suffix-name"),
        pytest.param('a="1"', "service_name", "", id="absent"),
        pytest.param('service_name="say \\"hi\\"",b="2"', "service_name", 'say \\"hi\\"', id="esc"),
        pytest.param('service_name="ends\\\\",b="2"', "service_name", "ends\\\\", id="backslash"),
    ],
)
def test_label_value(text: str, name: str, expected: str) -> None:
    from sidecar.status.inventory import label_value

    assert label_value(text, name) == expected


def test_ingest_sources_without_target_info_and_with_many_sources() -> None:
    from sidecar.status.inventory import MAX_COUNTED_SOURCES

    series = [
        'service_name="a",service_instance_id="1"',
        'service_name="a",service_instance_id="1"',
    ]
    [only] = ingest_sources({}, series, clock=lambda: 0.0)
    assert (only.service_name, only.series, only.last_push_age_s) == ("a", 2, None)
    many = {
        f'service_name="s",service_instance_id="{i}"': 0.0 for i in range(MAX_COUNTED_SOURCES + 1)
    }
    sources = ingest_sources(many, series, clock=lambda: 1.0)
    assert len(sources) == MAX_COUNTED_SOURCES + 1
    assert {s.series for s in sources} == {None}


def test_memo_of_computes_again_for_another_key_only() -> None:
    from sidecar.status.routes import Memo

    memo, calls = Memo(), []
    first, second = ["config 1"], ["config 1"]  # equal, not the same object
    for key in (first, first, second, second, first):
        memo.of("config", key, lambda k=key: calls.append(k) or len(calls))
    assert [c is first for c in calls] == [True, False, True]


def test_memo_reuses_a_value_for_a_time_proportional_to_its_cost() -> None:
    from sidecar.status.routes import Memo

    now = [0.0]
    calls: list[int] = []
    memo = Memo(cost_factor=50, max_age=30, clock=lambda: now[0])

    def costly(seconds: float) -> int:
        now[0] += seconds  # the computation "takes" this long on the fake clock
        calls.append(1)
        return len(calls)

    assert memo.get("x", lambda: costly(0.1)) == 1  # took 0.1 s: reused for 5 s
    now[0] += 4.9
    assert memo.get("x", lambda: costly(0.1)) == 1
    now[0] += 0.2
    assert memo.get("x", lambda: costly(1.0)) == 2  # took 1 s: 50 s, capped at 30 s
    now[0] += 29.9
    assert memo.get("x", lambda: costly(0.0)) == 2
    now[0] += 0.2
    assert memo.get("x", lambda: costly(0.0)) == 3  # took no time: never reused
    assert memo.get("x", lambda: costly(0.0)) == 4


def test_store_counts_match_rendered_counts() -> None:
    """The ingest fast path counts what the collector would render, family by family."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

    from sidecar.ingest.collector import OtlpCollector
    from sidecar.ingest.store import MetricStore, StoreLimits
    from sidecar.ingest.translate import TranslationRules, Translator

    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    attr = rm.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "svc"
    scope = rm.scope_metrics.add()
    gauge = scope.metrics.add()
    gauge.name = "queue_depth"
    counter = scope.metrics.add()
    counter.name = "jobs"
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    histogram = scope.metrics.add()
    histogram.name = "latency"
    histogram.histogram.aggregation_temporality = (
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    for i in range(3):
        point = gauge.gauge.data_points.add(as_int=i, time_unix_nano=1)
        a = point.attributes.add()
        a.key, a.value.string_value = "queue", str(i)
        c = counter.sum.data_points.add(as_int=i, time_unix_nano=1, start_time_unix_nano=1)
        a = c.attributes.add()
        a.key, a.value.string_value = "queue", str(i)
    h = histogram.histogram.data_points.add(
        count=2, sum=3.0, time_unix_nano=1, start_time_unix_nano=1
    )
    h.explicit_bounds.extend([1.0, 5.0])
    h.bucket_counts.extend([1, 1, 0])
    store = MetricStore(StoreLimits())
    store.apply(Translator(TranslationRules(("service.name",))).translate(request))
    collector = OtlpCollector(store)

    class Plain:  # the same collector without its store: counted by rendering it
        def collect(self):  # type: ignore[no-untyped-def]
            return collector.collect()

    fast = {(c.metric, c.series) for c in count_series({"ingest": collector})}
    rendered = {(c.metric, c.series) for c in count_series({"ingest": Plain()})}
    assert fast == rendered
    assert ("jobs_total", 3) in fast
    assert ("latency", 1) in fast


def test_page_sections_for_merge_export_and_trouble() -> None:
    from sidecar.status.inventory import SourceInfo
    from sidecar.status.page import StatusView, render_page
    from sidecar.status.sampler import RouteStats

    view = StatusView(
        version="9.9.9",
        uptime_s=3725,
        ready=False,
        readiness="draining",
        listeners={"proxy": ["0.0.0.0:8000"], "admin": ["0.0.0.0:9464"]},
        upstream="http://127.0.0.1:8080",
        upstream_state="does not answer (Connection refused)",
        upstream_ok=False,
        config_yaml="proxy:\n  upstream: <b>\n",
        routes={"/a": RouteStats(rate=2.5, error_ratio=0.25, p50=1.0, p99=math.nan)},
        sources=(SourceInfo("svc", "i-1", 4.0, 12, accepted=100, rejected=3),),
        merge={"app ok": 10.0, "app timeout": 2.0},
        merge_series={"merge:app": 1234},
        export={"success": 4.0},
    )
    page = render_page(view)
    assert '<span class="bad">not ready</span> (draining)' in page
    assert '<span class="bad">does not answer (Connection refused)</span>' in page
    assert "up 1h 2m" in page
    assert "&lt;b&gt;" in page  # config is escaped
    assert '<span class="bad">25.0%</span>' in page
    assert "Merge targets (scrapes)" in page
    assert "<td>app timeout</td>" in page
    assert "Merge targets (series in the last scrape)" in page
    assert '<td>merge:app</td><td class="num">1,234</td>' in page
    assert "OTLP export" in page
    assert '<td class="num">100</td><td class="num">3</td>' in page


# `StoreSources` counts again only the chunks whose stamp moved: after any sequence of
# pushes (new series, new values, new sources), expiry, forgets and clears, a long-lived
# one says what a count from nothing says.
SOURCE_OPS = st.one_of(
    st.tuples(
        st.just("push"),
        st.sampled_from(("a", "b")),  # service
        st.sampled_from(("", "1", "2")),  # its instance id ("" = none)
        st.sampled_from(("jobs", "temp")),  # family
        st.lists(st.integers(0, 9), min_size=1, max_size=5, unique=True),  # series
    ),
    st.tuples(st.just("tick"), st.sampled_from((4.0, 11.0))),  # ttl 10 s
    st.tuples(st.just("forget"), st.integers(0, 20)),
    st.tuples(st.just("clear")),
    st.tuples(st.just("check")),
)


@settings(max_examples=150, deadline=None)
@given(st.booleans(), st.lists(SOURCE_OPS, min_size=1, max_size=40))
def test_store_sources_recount_only_what_changed(
    target_info: bool, ops: list[tuple[Any, ...]]
) -> None:
    # chunks of 2 series (not 256): pushes, expiry and forgets cross chunk borders
    with mock.patch.object(store_module, "CHUNK_SHIFT", 1):
        h = Harness(StoreLimits(series_ttl=10.0), target_info=target_info)
        sources = StoreSources(h.store, clock=lambda: h.now)
        for t, op in enumerate([*ops, ("check",)], start=2):
            match op:
                case ("push", service, instance, family, ids):
                    resource = {"service.name": service}
                    if instance:
                        resource["service.instance.id"] = instance
                    points = [number(t, {"i": i}, time=t) for i in ids]
                    h.push(request(gauge(family, points), resource=resource))
                case ("tick", seconds):
                    h.now += seconds
                    h.store.expire()
                case ("forget", pick):
                    series = [(n, s) for n, f in h.store.families.items() for s in f.series]
                    if series:
                        h.store.forget(*series[pick % len(series)])
                case ("clear",):
                    h.store.clear_series()
                case ("check",):
                    fresh = StoreSources(h.store, clock=lambda: h.now)()  # from nothing
                    assert sources() == fresh
                    assert sources() == fresh
                    assert sources.recounted == 0  # nothing changed since the last call


def test_an_unchanged_store_s_sources_are_not_counted_again() -> None:
    h = Harness(StoreLimits(), target_info=True)
    for service in ("a", "b"):
        points = [number(1, {"i": i}) for i in range(600)]  # 3 chunks of 256
        h.push(request(gauge("jobs", points), resource={"service.name": service}))
    sources = StoreSources(h.store, clock=lambda: h.now)
    assert [s.series for s in sources()] == [600, 600]
    assert sources.recounted == 5  # (1,200 series: chunks of 256)
    assert [s.series for s in sources()] == [600, 600]
    assert sources.recounted == 0
    h.push(request(gauge("jobs", [number(2, {"i": 0})]), resource={"service.name": "b"}))
    assert [s.series for s in sources()] == [600, 600]
    assert sources.recounted == 1  # the chunk of b's i=0 changed


def test_the_own_histograms_series_are_counted_from_their_points() -> None:
    from sidecar.status.inventory import _family_series, exposed_name
    from tests.support.observability import proxy_module

    module, metrics = proxy_module("status-test")
    for path in ("/a", "/b", "/c"):
        for status in (200, 500):
            metrics.exchange("GET", path, status, 3.0, 1.0, 0, 10)
    for _ in range(2):  # the second collection reuses the first one's points
        counts = {c.metric: c.series for c in count_series({"sidecar": module.registry})}
        assert counts["http_request_duration_milliseconds"] == 6
        assert counts["http_request_time_to_first_byte_milliseconds"] == 3
        for family in module.registry.collect():
            name = exposed_name(family.name, family.type)
            assert counts.get(name, 0) == _family_series(family.samples), name


class _Counted:
    """Counts the collections of a `SnapshotRegistry` (the own registry)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, registry: Any) -> None:
        self.count = 0
        collect = registry.collect

        def counted() -> Any:
            self.count += 1
            return collect()

        monkeypatch.setattr(registry, "collect", counted)


def _scraped(monkeypatch: pytest.MonkeyPatch, requests: int) -> tuple[Metrics, Any, _Counted]:
    """The own registry after ``requests`` to ``/a`` and a ``/metrics`` scrape's
    collection of it; its collections from then on counted."""
    module = Module.new("status-test")
    metrics = Metrics.create(module.meter)
    _record(metrics, "/a", "200", 3.0, n=requests)
    list(module.registry.collect())  # the scrape's collection
    return metrics, module.registry, _Counted(monkeypatch, module.registry)


async def test_sampler_reads_a_scrapes_fresh_collection_instead_of_collecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics, registry, collections = _scraped(monkeypatch, 4)
    sampler = TrafficSampler(registry, interval=5.0)
    _record(metrics, "/a", "200", 3.0, n=6)  # after the scrape: not in its collection
    before = time.monotonic()
    first = await sampler.sample_off_loop()
    assert collections.count == 0  # the scrape's collection was read
    assert first.routes["/a"].requests == 4.0
    assert first.at <= before  # dated when the scrape collected
    second = await sampler.sample_off_loop()  # nothing newer than the first snapshot
    assert collections.count == 1
    assert second.routes["/a"].requests == 10.0
    assert second.at > first.at
    third = await sampler.sample_off_loop()  # its own last collection is not read again
    assert collections.count == 2
    assert third.at > second.at


async def test_sampler_collects_when_the_last_collection_is_older_than_its_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics, registry, collections = _scraped(monkeypatch, 2)
    sampler = TrafficSampler(registry, interval=5.0)
    monkeypatch.setattr(time, "monotonic", lambda real=time.monotonic: real() + 6.0)
    _record(metrics, "/a", "200", 3.0, n=1)
    snapshot = await sampler.sample_off_loop()
    assert collections.count == 1
    assert snapshot.routes["/a"].requests == 3.0
