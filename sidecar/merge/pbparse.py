"""A merge target's protobuf reply (delimited ``io.prometheus.client.MetricFamily``).

A target asked for protobuf first (the scraper asked the sidecar for it: Prometheus with
native histograms on) may answer it, as every client_golang exporter does. Its families
become prometheus_client `Metric`\\ s with their classic parts (counters, gauges, untyped,
summaries, classic histogram buckets, created timestamps as ``_created``, exemplars), so
the merge rules treat them as any other family; a histogram series' native part (schema,
zero bucket, spans, deltas, its exemplars) is kept as the encoded fields and written back
into the protobuf answer by `sidecar.protobuf.encode_family` (`NativeParts`), intact. A
native-only series keeps its count and sum (a ``+Inf`` bucket), as client_golang writes
one in text. Float histograms (``sample_count_float``, ``zero_count_float``, float
``positive_count``/``negative_count``) are kept as they are, their count written back as a
float. When the reply was not asked for in protobuf (a text or OpenMetrics answer,
the OTLP export, the status pages), the native parts are left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from google.protobuf.message import DecodeError
from prometheus_client.core import Metric
from prometheus_client.samples import Exemplar, Sample

from sidecar.gen.io.prometheus.client import metrics_pb2 as pb
from sidecar.merge.rawtext import with_labels
from sidecar.protobuf import NativeParts, SeriesParts

__all__ = ["parse_protobuf"]

_TYPES = {
    pb.COUNTER: "counter",
    pb.GAUGE: "gauge",
    pb.SUMMARY: "summary",
    pb.UNTYPED: "unknown",
    pb.HISTOGRAM: "histogram",
    pb.GAUGE_HISTOGRAM: "gaugehistogram",
}
_NATIVE_FIELDS = ("schema", "zero_threshold", "zero_count", "zero_count_float")


def _messages(body: bytes) -> list[pb.MetricFamily]:
    families: list[pb.MetricFamily] = []
    at, end = 0, len(body)
    while at < end:
        size, shift = 0, 0
        while True:
            if at >= end or shift > 63:
                raise ValueError("truncated length prefix")
            byte = body[at]
            at += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if at + size > end:
            raise ValueError("truncated MetricFamily")
        family = pb.MetricFamily()
        try:
            family.ParseFromString(body[at : at + size])
        except DecodeError as exc:
            raise ValueError(f"bad MetricFamily: {exc}") from exc
        at += size
        families.append(family)
    return families


def _seconds(stamp: object) -> float:
    return stamp.seconds + stamp.nanos / 1e9  # type: ignore[attr-defined,no-any-return]


def _exemplar(exemplar: pb.Exemplar) -> Exemplar:
    labels = {pair.name: pair.value for pair in exemplar.label}
    stamp = _seconds(exemplar.timestamp) if exemplar.HasField("timestamp") else None
    return Exemplar(labels, exemplar.value, stamp)


def _fmt(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


def _is_native(h: pb.Histogram) -> bool:
    return any(h.HasField(f) for f in _NATIVE_FIELDS) or bool(h.positive_span or h.negative_span)


def _native_bytes(h: pb.Histogram) -> bytes:
    """The native fields of ``h`` alone, encoded (classic ones cleared)."""
    native = pb.Histogram()
    native.CopyFrom(h)
    for name in ("sample_count", "sample_count_float", "sample_sum", "created_timestamp"):
        native.ClearField(name)
    del native.bucket[:]
    return native.SerializeToString()


def parse_protobuf(
    body: bytes, labels: Mapping[str, str] | None, keep_native: bool
) -> tuple[tuple[Metric, ...], int]:
    """The reply's families (configured ``labels`` added) and how many native histogram
    series were left out (all of them unless ``keep_native``).

    Raises:
        ValueError: the body is not delimited MetricFamily messages.
    """
    extra = labels or {}
    out: list[Metric] = []
    dropped = 0
    for family in _messages(body):
        kind = _TYPES.get(family.type)
        if kind is None:
            raise ValueError(f"unknown metric type {family.type}")
        name = family.name
        if kind == "counter" and name.endswith("_total"):
            name = name.removesuffix("_total")
        metric = Metric(name, family.help, kind)
        parts: SeriesParts = {}
        names: set[str] = set()
        for m in family.metric:
            series = {pair.name: pair.value for pair in m.label}
            if extra:
                series = with_labels(series, extra)
            stamp = m.timestamp_ms / 1000 if m.HasField("timestamp_ms") else None
            samples = metric.samples
            if kind == "counter":
                c = m.counter
                ex = _exemplar(c.exemplar) if c.HasField("exemplar") else None
                samples.append(Sample(family.name, series, c.value, stamp, ex))
                if c.HasField("created_timestamp"):
                    created = _seconds(c.created_timestamp)
                    samples.append(Sample(name + "_created", series, created, stamp))
            elif kind == "gauge":
                samples.append(Sample(name, series, m.gauge.value, stamp))
            elif kind == "unknown":
                samples.append(Sample(name, series, m.untyped.value, stamp))
            elif kind == "summary":
                s = m.summary
                for q in s.quantile:
                    samples.append(
                        Sample(name, {**series, "quantile": _fmt(q.quantile)}, q.value, stamp)
                    )
                samples.append(Sample(name + "_count", series, float(s.sample_count), stamp))
                samples.append(Sample(name + "_sum", series, s.sample_sum, stamp))
                if s.HasField("created_timestamp"):
                    created = _seconds(s.created_timestamp)
                    samples.append(Sample(name + "_created", series, created, stamp))
            else:
                h = m.histogram
                count = h.sample_count_float if h.sample_count_float > 0 else h.sample_count
                for b in h.bucket:
                    if b.upper_bound == math.inf:  # implicit: the count below
                        continue
                    value = b.cumulative_count_float or float(b.cumulative_count)
                    ex = _exemplar(b.exemplar) if b.HasField("exemplar") else None
                    bucket = {**series, "le": _fmt(b.upper_bound)}
                    samples.append(Sample(name + "_bucket", bucket, value, stamp, ex))
                inf = {**series, "le": "+Inf"}
                samples.append(Sample(name + "_bucket", inf, float(count), stamp))
                total = "_gsum" if kind == "gaugehistogram" else "_sum"
                counted = "_gcount" if kind == "gaugehistogram" else "_count"
                samples.append(Sample(name + counted, series, float(count), stamp))
                samples.append(Sample(name + total, series, h.sample_sum, stamp))
                if h.HasField("created_timestamp"):
                    created = _seconds(h.created_timestamp)
                    samples.append(Sample(name + "_created", series, created, stamp))
                if _is_native(h):
                    if keep_native:
                        # a float histogram as Prometheus tells it (its counts are floats)
                        floats = h.sample_count_float > 0 or h.zero_count_float > 0
                        native_count = h.sample_count_float if floats else h.sample_count
                        parts[frozenset(series.items())] = (native_count, _native_bytes(h))
                        names.update(series)
                    else:
                        dropped += 1
        if parts:
            natives = NativeParts()
            natives.publish(name, tuple(sorted(names)), parts)
            metric.native_parts = natives  # type: ignore[attr-defined]
        out.append(metric)
    return tuple(out), dropped
