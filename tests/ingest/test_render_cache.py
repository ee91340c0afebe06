"""The render cache (`sidecar.rendercache`): a scrape's answer equals a fresh render.

Every scrape here is rendered twice from the same store: by the collector with its cache
(pieces kept from earlier scrapes) and by one without a cache; both answers, inflated,
must be byte for byte the same, in every text format and in protobuf (whose uncached
answer is `sidecar.ingest.pbencode.encode_stored`'s whole-family encode).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Sequence
from typing import Any
from unittest import mock

from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sidecar.config import Config
from sidecar.exposition import Exposition
from sidecar.gen.io.prometheus.client import metrics_pb2 as prom_pb
from sidecar.ingest import create_ingest
from sidecar.ingest import store as store_module
from sidecar.ingest.collector import OtlpCollector
from sidecar.ingest.store import StoreLimits
from sidecar.observability import Module
from sidecar.protobuf import CONTENT_TYPE as PROTOBUF_TYPE
from sidecar.rendercache import RenderCache
from sidecar.unified import UnifiedCollector, metrics_handler
from tests.support.otlp import (
    DELTA,
    Harness,
    counter,
    epoint,
    exponential,
    gauge,
    histogram,
    hpoint,
    number,
    request,
    summary,
)
from tests.support.prometheus import (  # noqa: F401
    check_metrics,
    prometheus_factory,
    static_scrape_config,
)
from tests.support.protobuf import by_name, delimited

OPENMETRICS = "application/openmetrics-text;version=1.0.0"
TEXT = "text/plain;version=0.0.4"
# what Prometheus with native histograms on sends: protobuf first
PROTOBUF = f"{PROTOBUF_TYPE},{OPENMETRICS};q=0.5,*/*;q=0.1"
ACCEPTS = (OPENMETRICS, TEXT, "", PROTOBUF)
WORKERS = ("service.instance.id", "process.pid")
BOUNDS = (1.0, 5.0, 25.0)
NAMES = {  # family name by kind (as promtool likes them)
    "counter": "orders",
    "gauge": "queue.depth",
    "histogram": "latency",
    "delta": "bytes.sent",
    "summary": "rpc.latency",
    "exponential": "wait.time",  # native histograms in protobuf, classic in text
}
KINDS = tuple(NAMES)


def body(exposition: Exposition) -> bytes:
    """The answer's body, inflated when gzipped."""
    if exposition.content_encoding == "gzip":
        return gzip.decompress(exposition.body)
    assert exposition.content_encoding is None
    return exposition.body


class Merged:
    """A merge target's families: one collides with an ingested family (merged as
    prometheus_client objects, not from the cache), one is its own."""

    def collect(self) -> Iterable[Metric]:
        orders = CounterMetricFamily("orders", "from the target", labels=["i"])
        orders.add_metric(["1"], 5.0)
        orders.add_metric(["target"], 6.0)
        other = GaugeMetricFamily("target_gauge", "the target's own", labels=["x"])
        other.add_metric(["y"], 1.0)
        return [orders, other]


def metric(kind: str, ids: Sequence[int], value: int, t: int) -> pb.Metric:
    """One metric of the family `NAMES` gives ``kind``, with a point per id."""
    name, doc = NAMES[kind], f"A {kind}."
    if kind == "counter":
        return counter(name, [number(value + i, {"i": i}, time=t) for i in ids], description=doc)
    if kind == "delta":
        points = [number(value, {"i": i}, start=t - 1, time=t) for i in ids]
        return counter(name, points, temporality=DELTA, description=doc)
    if kind == "gauge":
        points = [number(float(value - i), {"i": i}, time=t) for i in ids]
        return gauge(name, points, description=doc)
    if kind == "histogram":
        hpoints = [hpoint(BOUNDS, [value, i, 1, 0], value * 2.5, {"i": i}, time=t) for i in ids]
        return histogram(name, hpoints, description=doc)
    if kind == "exponential":
        epoints = [
            epoint(
                i % 3, (-1, [value, i, 1]), zero_count=i, total=value + 0.5, labels={"i": i}, time=t
            )
            for i in ids
        ]
        return exponential(name, epoints, description=doc)
    quantiles = [(0.5, float(value)), (0.99, math.inf)]
    return summary(name, quantiles, value * 1.5, value, time=t, description=doc)


PUSH = st.tuples(
    st.just("push"),
    st.sampled_from(KINDS),
    st.lists(st.integers(0, 11), min_size=1, max_size=6, unique=True),
    st.integers(0, 50),
    st.sampled_from((None, 1, 2)),  # no worker, or worker process 1 or 2
)
SCRAPE = st.tuples(st.just("scrape"), st.sampled_from(ACCEPTS), st.booleans(), st.booleans())
TICK = st.tuples(st.just("tick"), st.sampled_from((3.0, 6.0, 11.0)))  # idle 5, ttl 10
RARE = st.one_of(
    st.tuples(st.just("forget"), st.integers(0, 20), st.integers(0, 20)),
    st.tuples(st.just("retire")),
    st.tuples(st.just("clear")),
)
# mostly pushes and scrapes (one_of would pick among all seven evenly)
OPS = st.sampled_from((PUSH,) * 5 + (SCRAPE,) * 3 + (TICK,) * 2 + (RARE,)).flatmap(lambda o: o)


def harness() -> Harness:
    limits = StoreLimits(series_ttl=10.0, worker_idle=5.0, max_series_per_metric=9)
    return Harness(limits, target_info=True, workers=WORKERS)


def same_answers(h: Harness, accept: str, gzipped: bool, merged: bool) -> None:
    """The cached and a fresh render of ``h``'s store, inflated, are the same bytes."""
    fresh = OtlpCollector(h.store, cache=False)
    cached_view, fresh_view = UnifiedCollector([h.collector]), UnifiedCollector([fresh])
    if merged:
        cached_view, fresh_view = (v.with_sources([Merged()]) for v in (cached_view, fresh_view))
    encoding = "gzip" if gzipped else ""
    answer, reference = cached_view.render(accept, encoding), fresh_view.render(accept, encoding)
    assert answer.content_encoding == reference.content_encoding
    assert answer.content_type == reference.content_type
    assert body(answer) == body(reference)
    if accept == PROTOBUF:  # and it reads as MetricFamily messages, every one whole
        assert answer.content_type.startswith(PROTOBUF_TYPE)
        assert len(delimited(body(answer))) == len(delimited(body(reference)))


def run(h: Harness, op: tuple[Any, ...], t: int) -> None:
    match op:
        case ("push", kind, ids, value, worker):
            resource: dict[str, Any] = {"service.name": "shop"}
            if worker is not None:
                resource |= {"service.instance.id": f"u-{worker}", "process.pid": worker}
            h.push(request(metric(kind, ids, value, t), resource=resource))
        case ("tick", seconds):
            h.now += seconds
            h.store.expire()
        case ("retire",):
            h.store.retire_idle_workers()
        case ("forget", family, series):
            names = list(h.store.families)
            if names:
                name = names[family % len(names)]
                labels = list(h.store.families[name].series)
                if labels:
                    h.store.forget(name, labels[series % len(labels)])
        case ("clear",):
            h.store.clear_series()
        case ("scrape", accept, gzipped, merged):
            same_answers(h, accept, gzipped, merged)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, min_size=4, max_size=60))
def test_cached_answer_equals_a_fresh_render_under_any_interleaving(
    ops: list[tuple[Any, ...]],
) -> None:
    # chunks of 2 series (not 256): every push, expiry and forget crosses chunk borders
    with mock.patch.object(store_module, "CHUNK_SHIFT", 1):
        h = harness()
        for t, op in enumerate(ops, start=2):
            run(h, op, t)
        for accept in ACCEPTS:  # and once more at the end, every format
            same_answers(h, accept, True, False)
            same_answers(h, accept, False, True)


def test_a_retired_worker_changes_what_a_cached_chunk_shows() -> None:
    # (a sequence the random interleavings above seldom reach: a gauge two workers feed
    # drops one worker's value when that worker is retired)
    h = harness()
    for t, op in enumerate(
        (
            ("push", "gauge", [0, 1], 10, 1),
            ("push", "gauge", [0, 1], 20, 2),
            ("scrape", TEXT, True, False),
            ("tick", 3.0),
            ("push", "gauge", [0, 1], 30, 2),
            ("scrape", TEXT, True, False),
            ("tick", 3.0),  # worker 1 silent for 6 s > 5: retired
            ("scrape", TEXT, True, False),
        ),
        start=2,
    ):
        run(h, op, t)
    assert h.retired == 1
    shown = body(UnifiedCollector([h.collector]).render(TEXT, ""))
    assert b'queue_depth{i="0",service_name="shop"} 30.0\n' in shown  # not 40: worker 2 alone


def filled(series: int) -> Harness:
    """A store with ``series`` counter series in one family and as many histograms."""
    h = Harness(StoreLimits(max_series_per_metric=2 * series))
    ids = range(series)
    h.push(request(metric("counter", ids, 1, 2), metric("histogram", ids, 3, 2)))
    return h


def test_a_scrape_renders_only_the_chunks_that_changed() -> None:
    h = filled(1000)  # 4 chunks of 256 series in each family
    cache = h.collector.render_cache
    assert cache is not None
    view = UnifiedCollector([h.collector])

    def misses_of_one_scrape() -> int:
        before = cache.misses
        same_answers(h, OPENMETRICS, True, False)
        return cache.misses - before

    assert misses_of_one_scrape() == 8
    assert misses_of_one_scrape() == 0  # a second scrape compresses nothing again
    view.render(TEXT, "")  # another format, no gzip: the same pieces, inflated
    assert misses_of_one_scrape() == 0
    h.push(request(metric("counter", [300], 7, 3)))  # one series of chunk 1
    assert misses_of_one_scrape() == 1
    h.store.forget("latency", next(iter(h.store.families["latency"].series)))
    assert misses_of_one_scrape() == 1
    h.push(request(metric("counter", [1000], 1, 4)))  # a new series: a new chunk 3 member
    assert misses_of_one_scrape() == 1
    h.now += 1000.0
    h.store.expire()
    assert misses_of_one_scrape() == 0
    assert body(view.render(OPENMETRICS, "gzip")) == b"# EOF\n"


def test_the_cache_holds_compressed_pieces_within_its_bound() -> None:
    h = filled(2000)
    fresh = UnifiedCollector([OtlpCollector(h.store, cache=False)]).render(TEXT, "gzip")
    cache = h.collector.render_cache
    assert cache is not None
    same_answers(h, TEXT, True, False)
    assert len(cache) == 16
    # about what the gzipped answer weighs (each piece compressed alone), not the text's
    assert 0 < cache.bytes < 1.25 * len(fresh.body) < len(body(fresh)) / 8

    small = RenderCache(max_bytes=cache.bytes // 2)
    bounded = OtlpCollector(h.store, cache=False)
    bounded.render_cache = small
    held = []
    for _ in range(3):  # every scrape right, with what fits
        assert body(UnifiedCollector([bounded]).render(TEXT, "gzip")) == body(fresh)
        assert small.bytes <= small.max_bytes
        held.append(len(small))
    assert 0 < held[0] == held[1] == held[2] < 16  # the same share stays, not evicted
    assert small.hits == 2 * held[0]


def test_pieces_of_series_that_are_gone_are_dropped() -> None:
    h = filled(600)  # 3 chunks in each of 2 families
    cache = h.collector.render_cache
    assert cache is not None
    same_answers(h, TEXT, True, False)
    assert len(cache) == 6
    same_answers(h, PROTOBUF, True, False)
    assert len(cache) == 12  # each chunk's text piece and protobuf piece
    histograms = h.store.families["latency"]
    for labels in list(histograms.series)[256:512]:  # chunk 1, all of it
        h.store.forget("latency", labels)
    same_answers(h, TEXT, True, False)
    assert len(cache) == 10  # both of its pieces dropped, whichever format renders
    h.store.clear_series()
    same_answers(h, TEXT, True, False)
    assert (len(cache), cache.bytes) == (0, 0)


def test_the_cached_answer_passes_promtool() -> None:
    h = filled(600)
    h.push(request(metric("counter", [5, 400], 9, 3), metric("summary", [], 4, 3)))
    view = UnifiedCollector([h.collector])
    view.render(TEXT, "gzip")  # warm: the next answer is mostly pieces from the cache
    h.push(request(metric("gauge", [1, 2], 3, 4)))
    answer = view.render(TEXT, "gzip")
    assert h.collector.render_cache is not None
    assert h.collector.render_cache.hits >= 6
    check = check_metrics(gzip.decompress(answer.body))
    assert check.passes, check.findings


async def test_prometheus_reads_cached_answers_and_sees_each_change(
    aiohttp_server,
    prometheus_factory,  # noqa: F811
):
    h = filled(600)
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(UnifiedCollector([h.collector])))
    server = await aiohttp_server(app)
    prom = prometheus_factory([static_scrape_config("sidecar", f"127.0.0.1:{server.port}")])
    assert (await prom.await_targets_up())[0]["lastError"] == ""
    assert (await prom.await_result('orders_total{i="300"} == 301')).values() == [301.0]
    await prom.await_scrapes(2)  # at least one answer from the cache
    assert h.collector.render_cache is not None
    assert h.collector.render_cache.hits > 0
    h.push(request(metric("counter", [300], 1000, 3)))
    assert (await prom.await_result('orders_total{i="300"} == 1300')).values() == [1300.0]
    count = await prom.await_result('count({__name__=~"orders_total|latency_count"})')
    assert count.values() == [1200.0]


def test_a_protobuf_scrape_encodes_only_the_chunks_that_changed() -> None:
    h = filled(1000)  # 4 chunks of 256 series in each family
    cache = h.collector.render_cache
    assert cache is not None

    def misses_of_one_scrape(accept: str) -> int:
        before = cache.misses
        same_answers(h, accept, True, False)
        return cache.misses - before

    assert misses_of_one_scrape(PROTOBUF) == 8
    assert misses_of_one_scrape(PROTOBUF) == 0
    assert misses_of_one_scrape(TEXT) == 8  # text pieces are kept apart from protobuf's
    assert (len(cache), misses_of_one_scrape(PROTOBUF), misses_of_one_scrape(TEXT)) == (16, 0, 0)
    h.push(request(metric("counter", [300], 7, 3)))  # one series of chunk 1
    assert misses_of_one_scrape(PROTOBUF) == 1
    assert misses_of_one_scrape(TEXT) == 1
    # no gzip: the pieces inflated, one message a family that parses as the proto says
    plain = UnifiedCollector([h.collector]).render(PROTOBUF, "")
    assert plain.content_encoding is None
    families = by_name(plain.body)
    assert [len(families[name].metric) for name in ("orders_total", "latency")] == [1000, 1000]
    assert families["orders_total"].type == prom_pb.COUNTER
    assert families["orders_total"].metric[300].counter.value == 307.0


def test_cached_protobuf_keeps_native_histograms_whole() -> None:
    h = Harness(StoreLimits(max_series_per_metric=2000))
    h.push(request(metric("exponential", range(600), 4, 2)))
    view = UnifiedCollector([h.collector])
    view.render(PROTOBUF, "gzip")  # warm
    h.push(request(metric("exponential", [7], 9, 3)))
    answer = view.render(PROTOBUF, "gzip")
    assert h.collector.render_cache is not None
    assert h.collector.render_cache.hits >= 2  # chunks 1 and 2 from the cache
    same_answers(h, PROTOBUF, True, False)
    (family,) = delimited(gzip.decompress(answer.body))
    seven = family.metric[7].histogram
    # scale 7 % 3 = 1; offset -1 is Prometheus bucket 0: deltas 9, 7 - 9, 1 - 7
    assert (seven.schema, seven.zero_count, seven.sample_count) == (1, 7, 9 + 7 + 1 + 7)
    assert list(seven.positive_delta) == [9, -2, -6]
    assert [(s.offset, s.length) for s in seven.positive_span] == [(0, 3)]
    assert seven.sample_sum == 9.5


async def test_prometheus_reads_cached_native_histograms_and_sees_each_change(
    aiohttp_server,
    prometheus_factory,  # noqa: F811
):
    h = Harness(StoreLimits(max_series_per_metric=2000))
    h.push(request(metric("exponential", range(600), 4, 2)))
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(UnifiedCollector([h.collector])))
    server = await aiohttp_server(app)
    prom = prometheus_factory(
        [static_scrape_config("sidecar", f"127.0.0.1:{server.port}")],
        extra_args=["--enable-feature=native-histograms"],  # asks for protobuf first
    )
    assert (await prom.await_targets_up())[0]["lastError"] == ""
    # series i: 4 + i + 1 observations in buckets, i zeros
    assert (await prom.await_result('histogram_count(wait_time{i="300"})')).values() == [605.0]
    await prom.await_scrapes(2)  # at least one answer from the cache
    cache = h.collector.render_cache
    assert cache is not None
    assert cache.hits > 0
    h.push(request(metric("exponential", [300], 1000, 3)))
    assert (await prom.await_result('histogram_count(wait_time{i="300"}) == 1601')).values() == [
        1601.0
    ]
    assert (await prom.aquery('histogram_sum(wait_time{i="300"})')).values() == [1000.5]
    count = await prom.await_result("count(histogram_count(wait_time))")
    assert count.values() == [600.0]
    assert (await prom.aquery("wait_time_bucket")).is_empty  # stored as native


def test_the_cache_reports_its_size_hits_and_misses_as_self_metrics() -> None:
    module = Module.new("render-cache-metrics")
    try:
        _, collector = create_ingest(Config(), module)
        h = filled(600)  # 3 chunks in each of 2 families, pushed into the sidecar's store
        collector.store.apply(h.translator.translate(request(metric("counter", range(600), 1, 2))))
        collector.store.apply(
            h.translator.translate(request(metric("histogram", range(600), 3, 2)))
        )
        cache = collector.render_cache
        assert cache is not None
        own = UnifiedCollector([SelfOnly(module)])

        def reported() -> dict[str, str]:
            text = body(own.render(TEXT, "")).decode()
            lines = [line for line in text.splitlines() if line.startswith("sidecar_render_cache")]
            return {line.split("{")[0]: line.rsplit(" ", 1)[1] for line in lines}

        names = {
            "sidecar_render_cache_bytes",
            "sidecar_render_cache_hits_total",
            "sidecar_render_cache_misses_total",
        }
        assert reported() == dict.fromkeys(names, "0.0")
        view = UnifiedCollector([collector])
        for accept in (TEXT, PROTOBUF, TEXT):
            view.render(accept, "gzip")
        assert (cache.hits, cache.misses) == (6, 12)
        assert cache.bytes > 0
        assert reported() == {
            "sidecar_render_cache_bytes": f"{float(cache.bytes)}",
            "sidecar_render_cache_hits_total": "6.0",
            "sidecar_render_cache_misses_total": "12.0",
        }
        text = body(own.render(TEXT, "")).decode()
        for name, kind in (("sidecar_render_cache_bytes", "gauge"),
                           ("sidecar_render_cache_hits_total", "counter"),
                           ("sidecar_render_cache_misses_total", "counter")):  # fmt: skip
            assert f"# TYPE {name} {kind}\n" in text, text
            assert f"# HELP {name} " in text
    finally:
        module.provider.shutdown()


class SelfOnly:
    """The sidecar's own registry as the unified view's only source."""

    def __init__(self, module: Module) -> None:
        self._registry = module.registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()
