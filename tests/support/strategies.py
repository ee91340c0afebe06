"""Hypothesis strategies: random valid OTLP metrics requests from the opentelemetry-proto classes."""

from __future__ import annotations

from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

# Valid UTF-8 only (what protobuf string fields hold); any code point but surrogates.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
NAMES = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=16)
KEYS = st.one_of(st.sampled_from(["k", "method", "route", "status.code", "x-y", "é"]), NAMES)
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
COUNTS = st.integers(min_value=0, max_value=2**40)
TEMPORALITY = st.sampled_from(
    [pb.AGGREGATION_TEMPORALITY_CUMULATIVE, pb.AGGREGATION_TEMPORALITY_DELTA]
)


def any_values(depth: int = 2) -> st.SearchStrategy[AnyValue]:
    """AnyValue of every kind, arrays nested ``depth`` levels."""
    scalars = st.one_of(
        TEXT.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: AnyValue(int_value=v)),
        FINITE.map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=8).map(lambda v: AnyValue(bytes_value=v)),
    )
    if depth == 0:
        return scalars
    return st.one_of(
        scalars,
        st.lists(any_values(depth - 1), max_size=3).map(
            lambda vs: AnyValue(array_value=ArrayValue(values=vs))
        ),
    )


ATTRIBUTES = st.lists(
    st.builds(lambda k, v: KeyValue(key=k, value=v), KEYS, any_values()), max_size=4
)


@st.composite
def number_points(draw: st.DrawFn, monotonic: bool = False) -> pb.NumberDataPoint:
    """A number point with int or double value."""
    point = pb.NumberDataPoint(
        attributes=draw(ATTRIBUTES), start_time_unix_nano=1, time_unix_nano=draw(st.integers(2, 10))
    )
    if draw(st.booleans()):
        point.as_int = draw(COUNTS if monotonic else st.integers(-(2**62), 2**62))
    else:
        point.as_double = draw(st.floats(0, 1e12) if monotonic else FINITE)
    return point


@st.composite
def histogram_points(draw: st.DrawFn) -> pb.HistogramDataPoint:
    """An explicit-bucket point with consistent bounds and counts."""
    bounds = sorted(draw(st.sets(st.floats(-1e6, 1e6, allow_nan=False), max_size=5)))
    counts = draw(st.lists(COUNTS, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    return pb.HistogramDataPoint(
        attributes=draw(ATTRIBUTES), start_time_unix_nano=1, time_unix_nano=2,
        explicit_bounds=bounds, bucket_counts=counts, count=sum(counts),
        sum=draw(st.floats(0, 1e12)),
    )  # fmt: skip


@st.composite
def exponential_points(draw: st.DrawFn) -> pb.ExponentialHistogramDataPoint:
    """An exponential histogram point with consistent counts."""
    Buckets = pb.ExponentialHistogramDataPoint.Buckets
    positive = draw(st.lists(st.integers(0, 1000), max_size=6))
    negative = draw(st.lists(st.integers(0, 1000), max_size=3))
    zero = draw(st.integers(0, 10))
    return pb.ExponentialHistogramDataPoint(
        attributes=draw(ATTRIBUTES), start_time_unix_nano=1, time_unix_nano=2,
        scale=draw(st.integers(-4, 8)), zero_count=zero,
        count=sum(positive) + sum(negative) + zero, sum=draw(st.floats(-1e6, 1e6)),
        positive=Buckets(offset=draw(st.integers(-20, 20)), bucket_counts=positive),
        negative=Buckets(offset=draw(st.integers(-20, 20)), bucket_counts=negative),
    )  # fmt: skip


@st.composite
def summary_points(draw: st.DrawFn) -> pb.SummaryDataPoint:
    """A summary point with quantiles in [0, 1] and non-negative values."""
    Q = pb.SummaryDataPoint.ValueAtQuantile
    quantiles = sorted(draw(st.sets(st.floats(0, 1), max_size=3)))
    return pb.SummaryDataPoint(
        attributes=draw(ATTRIBUTES), start_time_unix_nano=1, time_unix_nano=2,
        count=draw(COUNTS), sum=draw(st.floats(0, 1e9)),
        quantile_values=[Q(quantile=q, value=draw(st.floats(0, 1e9))) for q in quantiles],
    )  # fmt: skip


@st.composite
def metrics(draw: st.DrawFn) -> pb.Metric:
    """One metric of a random kind with 1-3 points."""
    metric = pb.Metric(name=draw(NAMES), unit=draw(st.sampled_from(["", "ms", "By", "1", "s"])),
                       description=draw(TEXT))  # fmt: skip
    kind = draw(st.sampled_from(["sum", "gauge", "histogram", "exponential", "summary"]))
    points = st.lists
    if kind == "sum":
        monotonic = draw(st.booleans())
        metric.sum.is_monotonic = monotonic
        metric.sum.aggregation_temporality = draw(TEMPORALITY)
        metric.sum.data_points.extend(
            draw(points(number_points(monotonic), min_size=1, max_size=3))
        )
    elif kind == "gauge":
        metric.gauge.data_points.extend(draw(points(number_points(), min_size=1, max_size=3)))
    elif kind == "histogram":
        metric.histogram.aggregation_temporality = draw(TEMPORALITY)
        metric.histogram.data_points.extend(
            draw(points(histogram_points(), min_size=1, max_size=3))
        )
    elif kind == "exponential":
        metric.exponential_histogram.aggregation_temporality = draw(TEMPORALITY)
        metric.exponential_histogram.data_points.extend(
            draw(points(exponential_points(), min_size=1, max_size=2))
        )
    else:
        metric.summary.data_points.extend(draw(points(summary_points(), min_size=1, max_size=2)))
    return metric


@st.composite
def requests(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    """A whole request: 1-2 resources, 1-2 scopes each, 1-3 metrics each."""
    request = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rm = request.resource_metrics.add()
        rm.resource.CopyFrom(Resource(attributes=draw(ATTRIBUTES)))
        if draw(st.booleans()):
            rm.resource.attributes.add(key="service.name", value=AnyValue(string_value=draw(TEXT)))
        for _ in range(draw(st.integers(1, 2))):
            sm = rm.scope_metrics.add()
            sm.scope.CopyFrom(InstrumentationScope(name=draw(TEXT), version=draw(TEXT)))
            sm.metrics.extend(draw(st.lists(metrics(), min_size=1, max_size=3)))
    return request


def point_count(request: ExportMetricsServiceRequest) -> int:
    """Data points in a request."""
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                total += len(getattr(m, kind).data_points) if kind else 0
    return total
