"""Builders of OTLP requests (opentelemetry-proto classes) and a store/translator harness."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from sidecar.ingest.codec import Encoding, decode_request
from sidecar.ingest.collector import OtlpCollector
from sidecar.ingest.model import Batch
from sidecar.ingest.naming import TranslationStrategy
from sidecar.ingest.store import MetricStore, Outcome, StoreLimits
from sidecar.ingest.translate import TranslationRules, Translator

CUMULATIVE = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = pb.AGGREGATION_TEMPORALITY_DELTA
PROMOTE = ("service.name", "service.namespace", "service.instance.id")
RESOURCE = {"service.name": "shop"}


def any_value(value: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def attrs(values: Mapping[str, Any] | None) -> list[KeyValue]:
    """Attributes as KeyValues (order kept)."""
    return [KeyValue(key=k, value=any_value(v)) for k, v in (values or {}).items()]


def number(
    value: float, labels: Mapping[str, Any] | None = None, *, start: int = 1, time: int = 2
) -> pb.NumberDataPoint:
    """A number point (int values as as_int)."""
    point = pb.NumberDataPoint(
        attributes=attrs(labels), start_time_unix_nano=start, time_unix_nano=time
    )
    if isinstance(value, int):
        point.as_int = value
    else:
        point.as_double = value
    return point


def counter(
    name: str,
    points: Sequence[pb.NumberDataPoint],
    *,
    temporality: int = CUMULATIVE,
    monotonic: bool = True,
    unit: str = "",
    description: str = "",
) -> pb.Metric:
    """A sum metric."""
    return pb.Metric(
        name=name, unit=unit, description=description,
        sum=pb.Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=monotonic),
    )  # fmt: skip


def gauge(
    name: str, points: Sequence[pb.NumberDataPoint], *, unit: str = "", description: str = ""
) -> pb.Metric:
    """A gauge metric."""
    return pb.Metric(
        name=name, unit=unit, description=description, gauge=pb.Gauge(data_points=points)
    )


def hpoint(
    bounds: Sequence[float],
    counts: Sequence[int],
    total: float,
    labels: Mapping[str, Any] | None = None,
    *,
    start: int = 1,
    time: int = 2,
) -> pb.HistogramDataPoint:
    """An explicit-bucket histogram point."""
    return pb.HistogramDataPoint(
        attributes=attrs(labels), start_time_unix_nano=start, time_unix_nano=time,
        explicit_bounds=bounds, bucket_counts=counts, sum=total, count=sum(counts),
    )  # fmt: skip


def histogram(
    name: str,
    points: Sequence[pb.HistogramDataPoint],
    *,
    temporality: int = CUMULATIVE,
    unit: str = "",
    description: str = "",
) -> pb.Metric:
    """A histogram metric."""
    return pb.Metric(
        name=name, unit=unit, description=description,
        histogram=pb.Histogram(data_points=points, aggregation_temporality=temporality),
    )  # fmt: skip


def epoint(
    scale: int,
    positive: tuple[int, Sequence[int]],
    *,
    negative: tuple[int, Sequence[int]] = (0, ()),
    zero_count: int = 0,
    total: float = 0.0,
    labels: Mapping[str, Any] | None = None,
    start: int = 1,
    time: int = 2,
) -> pb.ExponentialHistogramDataPoint:
    """An exponential histogram point: buckets as (offset, counts)."""
    Buckets = pb.ExponentialHistogramDataPoint.Buckets
    count = sum(positive[1]) + sum(negative[1]) + zero_count
    return pb.ExponentialHistogramDataPoint(
        attributes=attrs(labels), start_time_unix_nano=start, time_unix_nano=time, scale=scale,
        zero_count=zero_count, sum=total, count=count,
        positive=Buckets(offset=positive[0], bucket_counts=positive[1]),
        negative=Buckets(offset=negative[0], bucket_counts=negative[1]),
    )  # fmt: skip


def exponential(
    name: str,
    points: Sequence[pb.ExponentialHistogramDataPoint],
    *,
    temporality: int = CUMULATIVE,
    description: str = "",
) -> pb.Metric:
    """An exponential histogram metric."""
    return pb.Metric(
        name=name,
        description=description,
        exponential_histogram=pb.ExponentialHistogram(
            data_points=points, aggregation_temporality=temporality
        ),
    )


def summary(
    name: str,
    quantiles: Sequence[tuple[float, float]],
    total: float,
    count: int,
    labels: Mapping[str, Any] | None = None,
    *,
    time: int = 2,
    description: str = "",
) -> pb.Metric:
    """A summary metric with one point."""
    Q = pb.SummaryDataPoint.ValueAtQuantile
    point = pb.SummaryDataPoint(
        attributes=attrs(labels), start_time_unix_nano=1, time_unix_nano=time, sum=total, count=count,
        quantile_values=[Q(quantile=q, value=v) for q, v in quantiles],
    )  # fmt: skip
    return pb.Metric(name=name, description=description, summary=pb.Summary(data_points=[point]))


def request(
    *metrics: pb.Metric,
    resource: Mapping[str, Any] | None = None,
    scope: tuple[str, str] = ("app", "1.0"),
) -> ExportMetricsServiceRequest:
    """One resource, one scope, these metrics."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(attrs(RESOURCE if resource is None else resource))
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = scope
    sm.metrics.extend(metrics)
    return req


class Harness:
    """A translator and a store with a controllable clock; renders text like /metrics."""

    def __init__(
        self,
        limits: StoreLimits | None = None,
        *,
        scope_labels: bool = False,
        target_info: bool = False,
        workers: tuple[str, ...] = (),
        strategy: TranslationStrategy = TranslationStrategy.UNDERSCORE_ESCAPING_WITH_SUFFIXES,
    ) -> None:
        self.now = 0.0
        self.retired = 0
        self.expired: list[int] = []  # what each expiry reported (``on_expired``)
        self.store = MetricStore(
            limits or StoreLimits(),
            clock=lambda: self.now,
            on_expired=self.expired.append,
            on_retired=self._count_retired,
        )
        self.translator = Translator(
            TranslationRules(
                PROMOTE,
                scope_labels=scope_labels,
                target_info=target_info,
                worker_attributes=workers,
                strategy=strategy,
            )
        )
        self.collector = OtlpCollector(self.store, utf8_labels=not strategy.escapes)

    def _count_retired(self, count: int) -> None:
        self.retired += count

    def push(
        self, req: ExportMetricsServiceRequest, encoding: Encoding | None = None
    ) -> tuple[Batch, Outcome]:
        """Translate and apply one request (decoded from its encoding when one is given)."""
        message: Any = req
        if encoding is Encoding.PROTOBUF:
            message = decode_request(req.SerializeToString(), encoding)
        elif encoding is Encoding.JSON:
            message = decode_request(json_format.MessageToJson(req).encode(), encoding)
        batch = self.translator.translate(message)
        return batch, self.store.apply(batch)

    def text(self, openmetrics: bool = False) -> str:
        """The ingested families as exposition text."""
        out: list[str] = []
        for family in self.collector.families():
            family.render(openmetrics, out)
        return "".join(out)


def mixed_harness(n: int) -> Harness:
    """``n`` series of every kind, with awkward label values, NaN and infinities."""
    harness = Harness(StoreLimits(max_series_per_metric=2 * n), scope_labels=True, target_info=True)
    for service in ("a", "b"):
        harness.push(
            request(
                counter(
                    "orders",
                    [number(i, {"i": i, "q": 'x"y\\z\n'}) for i in range(n)],
                    unit="{orders}",
                    description="Orders",
                ),
                counter(
                    "bytes.sent",
                    [number(i * 1.5, {"i": i}, start=1, time=2) for i in range(n)],
                    unit="By",
                    temporality=DELTA,
                    description="Bytes sent",
                ),
                gauge(
                    "temp",
                    [number(math.nan if i % 7 == 0 else i, {"i": i}) for i in range(n)],
                    unit="Cel",
                    description="Temperature",
                ),
                histogram(
                    "rt",
                    [
                        hpoint([0.5, 1, 2.5, 5, 10], [i, 1, 2, 3, 4, 5], 10.0 + i, {"i": i})
                        for i in range(n)
                    ],
                    unit="ms",
                    description="Response time",
                ),
                exponential(
                    "size",
                    [
                        epoint(2, (i % 5 - 2, [1, 2, 3]), zero_count=1, total=9.0, labels={"i": i})
                        for i in range(n // 10)
                    ],
                    description="Sizes",
                ),
                summary("lat", [(0.5, 1.0), (0.9, math.inf)], 3.0, 4, description="Latency"),
                resource={"service.name": service, "host.name": "h-" + service},
            )
        )
    return harness


PROTOBUF_HEADERS = {"Content-Type": "application/x-protobuf"}
