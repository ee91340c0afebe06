"""The protobuf exposition: delimited MetricFamily, the same series as the text answer.

Decoded with the compiled ``io.prometheus.client`` proto and compared family by family
with prometheus_client's parse of the text answer; then a real Prometheus (Debian's 2.42
with ``--enable-feature=native-histograms``, which asks for protobuf first) scrapes the
sidecar beside one that scrapes text, and both store the same series with the same values.
"""

from __future__ import annotations

import asyncio
import gzip
import math

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, Summary
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.gen.io.prometheus.client import metrics_pb2 as pb
from sidecar.negotiation import negotiate
from sidecar.protobuf import CONTENT_TYPE, encode_family, to_family
from sidecar.unified import UnifiedCollector, metrics_handler
from tests.support.otlp import (
    Harness,
    counter,
    epoint,
    exponential,
    gauge,
    histogram,
    hpoint,
    mixed_harness,
    number,
    request,
    summary,
)
from tests.support.prometheus import prometheus_factory, static_scrape_config  # noqa: F401
from tests.support.protobuf import delimited
from tests.support.reference_render import render

PROTOBUF = f"{CONTENT_TYPE};q=0.7,application/openmetrics-text;version=1.0.0;q=0.6,*/*;q=0.1"
TEXT = "text/plain;version=0.0.4"
Sample = tuple[str, frozenset[tuple[str, str]], float | str]


def _value(value: float) -> float | str:
    return "NaN" if math.isnan(value) else value  # NaN equals nothing, not even NaN


def _bound(value: float) -> str:
    return "+Inf" if value == math.inf else repr(float(value))


def samples_of(family: pb.MetricFamily) -> set[Sample]:
    """The series a family holds, named as Prometheus names them from text."""
    out: set[Sample] = set()
    name = family.name
    for metric in family.metric:
        labels = {pair.name: pair.value for pair in metric.label}

        def add(sample: str, value: float, labels: dict[str, str] = labels, **extra: str) -> None:
            out.add((sample, frozenset({**labels, **extra}.items()), _value(value)))

        if family.type == pb.COUNTER:
            add(name, metric.counter.value)
        elif family.type == pb.GAUGE:
            add(name, metric.gauge.value)
        elif family.type == pb.UNTYPED:
            add(name, metric.untyped.value)
        elif family.type == pb.SUMMARY:
            for q in metric.summary.quantile:
                add(name, q.value, quantile=repr(q.quantile))
            add(name + "_count", metric.summary.sample_count)
            add(name + "_sum", metric.summary.sample_sum)
        else:
            histogram = metric.histogram
            for bucket in histogram.bucket:
                add(name + "_bucket", bucket.cumulative_count, le=_bound(bucket.upper_bound))
            add(name + "_bucket", histogram.sample_count, le="+Inf")
            add(name + "_count", histogram.sample_count)
            add(name + "_sum", histogram.sample_sum)
    return out


def text_samples(body: str) -> dict[str, set[Sample]]:
    """The text answer's series by family, ``le``/``quantile`` as floats; no ``_created``."""
    out: dict[str, set[Sample]] = {}
    for family in parse_text(body):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue  # protobuf: created_timestamp, not a series
            labels = dict(s.labels)
            for key in ("le", "quantile"):
                if key in labels:
                    labels[key] = _bound(float(labels[key]))
            sample = (s.name, frozenset(labels.items()), _value(s.value))
            out.setdefault(family.name, set()).add(sample)
    return out


def native_buckets(spans, deltas) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """Prometheus bucket index → count, from spans and delta-encoded counts (zeros left out)."""
    out, index, count, at = {}, 0, 0, 0
    for span in spans:  # the first offset is where it starts, the next ones gaps
        index += span.offset
        for _ in range(span.length):
            count += deltas[at]
            at += 1
            if count:
                out[index] = count
            index += 1
    assert at == len(deltas)
    return out


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("g", "a gauge", ["a"], registry=registry).labels("1").set(1.5)
    Counter("c", "a counter", ["path"], registry=registry).labels("/x").inc(3)
    Histogram("h_seconds", "a histogram", registry=registry, buckets=(0.1, 1.0)).observe(0.5)
    Summary("s", "a summary", registry=registry).observe(2.0)
    Info("build", "build info", registry=registry).info({"version": "1.2"})
    return registry


def test_the_prometheus_native_histograms_header_gets_protobuf():
    negotiated = negotiate(PROTOBUF)
    assert negotiated.content_type == CONTENT_TYPE + "; escaping=underscores"


def test_protobuf_equals_text_family_by_family():
    unified = UnifiedCollector([_registry(), mixed_harness(30).collector])
    answer = unified.render(PROTOBUF, "gzip")
    assert answer.content_type == CONTENT_TYPE + "; escaping=underscores"
    families = delimited(gzip.decompress(answer.body))
    text = text_samples(unified.render(TEXT, "").body.decode())
    by_family: dict[str, set[Sample]] = {}
    for family in families:
        samples = samples_of(family)
        key = family.name.removesuffix("_total") if family.type == pb.COUNTER else family.name
        by_family.setdefault(key, set()).update(samples)
    assert set(by_family) == set(text)
    for name, samples in text.items():
        assert by_family[name] == samples, name
    kinds = {f.type for f in families}
    assert kinds >= {pb.COUNTER, pb.GAUGE, pb.HISTOGRAM, pb.SUMMARY}


def test_the_generic_path_serves_protobuf_too():
    """``tests.support.reference_render.render`` (a registry's /metrics) negotiates protobuf as well."""
    registry = _registry()
    answer = render(registry, PROTOBUF, "")
    assert answer.content_type == CONTENT_TYPE + "; escaping=underscores"
    names = {f.name for f in delimited(answer.body)}
    assert names == {"g", "c_total", "h_seconds", "s", "build_info"}


def test_created_timestamps_and_exemplars():
    registry = CollectorRegistry()
    Counter("c", "a counter", registry=registry).inc(1, exemplar={"trace_id": "abc"})
    body = UnifiedCollector([registry]).render(PROTOBUF, "").body
    (family,) = delimited(body)
    counter = family.metric[0].counter
    assert family.name == "c_total"
    assert counter.created_timestamp.seconds > 1_700_000_000
    assert {p.name: p.value for p in counter.exemplar.label} == {"trace_id": "abc"}


def test_the_hand_written_encoder_equals_the_protobuf_runtime():
    """`encode_family` (the scrape path) parses into exactly `to_family`'s message."""
    registry = _registry()
    Counter("e", "exemplars", registry=registry).inc(2, exemplar={"trace_id": "t"})
    Histogram("eh", "bucket exemplars", registry=registry, buckets=(1.0,)).observe(
        0.5, exemplar={"span_id": "s"}
    )
    families = [*registry.collect(), *mixed_harness(10).collector.collect()]
    assert len(families) > 8
    for metric in families:
        assert pb.MetricFamily.FromString(encode_family(metric)) == to_family(metric), metric.name


def test_odd_values_from_a_target_do_not_break_the_scrape():
    """NaN, negative or fractional counts (a target may write them) go into the float
    count fields or, where there is none, as 0; a NaN created time is left out."""
    histogram = Metric("h", "", "histogram")
    histogram.add_sample("h_bucket", {"le": "1.0"}, math.nan)
    histogram.add_sample("h_bucket", {"le": "+Inf"}, 2.5)
    histogram.add_sample("h_count", {}, 2.5)
    histogram.add_sample("h_sum", {}, 1.0)
    histogram.add_sample("h_created", {}, math.nan)
    summary_ = Metric("s", "", "summary")
    summary_.add_sample("s_count", {}, -1.0)
    summary_.add_sample("s_sum", {}, 2.0)
    counter_ = Metric("c", "", "counter")
    counter_.add_sample("c_total", {}, 1.0)
    counter_.add_sample("c_created", {}, math.nan)
    metrics = [histogram, summary_, counter_]
    for metric in metrics:
        assert pb.MetricFamily.FromString(encode_family(metric)) == to_family(metric)
    h = to_family(metrics[0]).metric[0].histogram
    assert math.isnan(h.bucket[0].cumulative_count_float)
    assert (h.sample_count_float, h.HasField("created_timestamp")) == (2.5, False)
    assert to_family(metrics[1]).metric[0].summary.sample_count == 0


def test_stored_families_encode_as_their_metrics_do():
    """The ingest fast path (`IngestedFamily.protobuf`) equals `to_family(to_metric())`,
    for every kind the store holds, twice (the second time from the label cache)."""
    harness = Harness(target_info=True)
    harness.push(
        request(
            counter("c", [number(3, {"a": "x"}), number(4, {"a": 'q"\\'})], description="c"),
            gauge("g", [number(1.5, {"b": "1"})]),
            histogram("h", [hpoint([0.5, 1.0], [1, 2, 3], 7.5, {"h": "1"})], unit="s"),
            exponential(
                "e", [epoint(1, (-2, [1, 0, 3]), negative=(0, [2]), zero_count=1, total=4.0)]
            ),
            summary("s", [(0.5, 1.0), (0.99, 2.0)], 10.0, 4, {"s": "1"}),
        )
    )
    families = harness.collector.families()
    assert len(families) == 6  # target_info too (through its Metric)
    for _ in range(2):
        for family in families:
            encode = getattr(family, "protobuf", None)
            if encode is None:
                continue
            fast, expected = pb.MetricFamily.FromString(encode()), to_family(family.to_metric())
            if family.name == "e":  # a negative first bound: text (so to_metric) has no
                # _count/_sum (prometheus_client's rule); protobuf keeps the sum
                got = fast.metric[0].histogram
                assert got.sample_sum == 4.0
                expected.metric[0].histogram.sample_sum = 4.0
                # and the native part: OTLP bucket k is Prometheus bucket k+1
                assert (got.schema, got.zero_count) == (1, 1)
                assert native_buckets(got.positive_span, got.positive_delta) == {-1: 1, 1: 3}
                assert native_buckets(got.negative_span, got.negative_delta) == {1: 2}
            # (its Metric carries the native part too: merged or relabelled, it stays)
            assert fast == expected, family.name


async def test_prometheus_stores_the_same_series_from_protobuf_as_from_text(
    aiohttp_server,
    prometheus_factory,  # noqa: F811
):
    handler = metrics_handler(UnifiedCollector([_registry(), mixed_harness(20).collector]))
    content_types: list[str] = []

    async def recording(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        content_types.append(response.headers["Content-Type"])
        return response

    app = web.Application()
    app.router.add_get("/metrics", recording)
    server = await aiohttp_server(app)
    config = [static_scrape_config("sidecar", f"127.0.0.1:{server.port}")]
    native = prometheus_factory(config, extra_args=["--enable-feature=native-histograms"])
    classic = prometheus_factory(config)
    await asyncio.gather(native.await_targets_up(), classic.await_targets_up())
    await asyncio.gather(native.await_scrapes(2), classic.await_scrapes(2))
    assert any(t.startswith("application/vnd.google.protobuf") for t in content_types)
    assert any(t.startswith("application/openmetrics-text") for t in content_types)

    def stored(prom, native_names=frozenset()):  # type: ignore[no-untyped-def]
        """Every float series of the job but the scrape's own, the _created ones and the
        classic series of the histograms the other side stores as native ones."""
        query = '{job="sidecar",__name__!~"scrape_.*|up|.*_created"}'
        out = set()
        for item in prom.query(query).result:
            name = item["metric"]["__name__"]
            if "value" in item and name.rpartition("_")[0] not in native_names:
                out.add((frozenset(item["metric"].items()), _value(float(item["value"][1]))))
        return out

    natives = {
        item["metric"]["__name__"]
        for item in native.query('{job="sidecar"}').result
        if "histogram" in item
    }
    assert natives  # the harness's exponential histograms, stored as native ones
    from_protobuf, from_text = stored(native), stored(classic, natives)
    assert len(from_text) > 100
    assert from_protobuf == from_text
