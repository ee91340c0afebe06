"""OTLP ``ExportMetricsServiceRequest`` → the internal model (design §8).

Walks resource → scope → metric → point as the OpenTelemetry Prometheus exporter does
(``_CustomCollector._translate_to_prometheus``): labels are the promoted resource
attributes, then the scope labels, then the point's attributes (a later key wins), each
key sanitized and each non-string value written as JSON. Empty label values are left
out, as Prometheus treats them as absent. A point that cannot be translated is counted
in the batch's rejections and never reaches the store.
"""

from __future__ import annotations

import base64
import itertools
import math
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from sidecar.escaping import is_legacy_label_name
from sidecar.exposition import escape_label_value
from sidecar.ingest import naming
from sidecar.ingest.jsonview import JsonList, JsonMessage, attribute_key
from sidecar.ingest.model import (
    Batch,
    Descriptor,
    ExponentialPoint,
    HistogramPoint,
    Kind,
    Labels,
    Metric,
    NumberPoint,
    Point,
    SummaryPoint,
    Temporality,
)
from sidecar.ingest.shadow import ShadowExportRequest

__all__ = ["TranslationRules", "Translator", "label_text", "worker_key"]

SCOPE_NAME_LABEL = "otel_scope_name"
SCOPE_VERSION_LABEL = "otel_scope_version"
SCOPE_SCHEMA_URL_LABEL = "otel_scope_schema_url"
SCOPE_ATTRIBUTE_PREFIX = "otel_scope_"
TARGET_INFO = Descriptor("target", Kind.INFO, "Target metadata", "")
FLAG_NO_RECORDED_VALUE = 1
TEMPORALITIES = {
    pb.AGGREGATION_TEMPORALITY_DELTA: Temporality.DELTA,
    pb.AGGREGATION_TEMPORALITY_CUMULATIVE: Temporality.CUMULATIVE,
}
LABEL_CACHE_MAX = 10_000
# Limits against hostile payloads. A point with more attributes than the OpenTelemetry
# SDK's default attribute count limit is rejected (partial_success "invalid_point");
# an AnyValue nested deeper than protobuf's own parsers allow makes the body undecodable.
MAX_POINT_ATTRIBUTES = 128
RESERVED_LABELS = {"le": "exported_le", "quantile": "exported_quantile"}
MAX_ANY_VALUE_DEPTH = 64


class AttributeTooDeep(ValueError):
    """An attribute value nested beyond `MAX_ANY_VALUE_DEPTH`."""


LABEL_SET_CACHE_MAX = 200_000  # raw attribute encodings → label text, all scopes together

LabelDict = dict[str, str]
_UNKNOWN = object()
Labeler = Callable[[Any], Labels]


@dataclass(frozen=True, slots=True)
class TranslationRules:
    """The ``ingest.*`` settings translation needs."""

    promote_resource_attributes: tuple[str, ...]
    scope_labels: bool = True
    target_info: bool = True
    # ingest.workers.attributes: they tell a pod's workers apart and leave labels and target_info
    worker_attributes: tuple[str, ...] = ()
    strategy: naming.TranslationStrategy = naming.DEFAULT_STRATEGY  # ingest.translation_strategy


class Translator:
    """Translates requests; keeps small caches of sanitized label names and descriptors."""

    def __init__(self, rules: TranslationRules) -> None:
        self._rules = rules
        self._label_names: dict[str, str] = {}
        self._descriptors: dict[tuple[str, str, str, Kind, bool], Descriptor | None] = {}
        # per resource+scope (its base label text): raw attribute identity → label text
        self._label_sets: dict[str, dict[Any, Labels]] = {}
        self._label_set_count = 0
        self._bounds: dict[tuple[float, ...], object] = {}

    @property
    def cached_label_sets(self) -> int:
        """How many label sets the cache holds now (at most ``LABEL_SET_CACHE_MAX``)."""
        return sum(len(sets) for sets in self._label_sets.values())

    def translate(self, request: ExportMetricsServiceRequest | Any) -> Batch:
        """Translate a request (the real class, or `ShadowExportRequest`) into one `Batch`."""
        batch = Batch()
        make_labeler = self._labeler
        if isinstance(request, ShadowExportRequest):
            make_labeler = self._raw_labeler
        elif isinstance(request, JsonMessage):
            make_labeler = self._json_labeler
        workers = self._rules.worker_attributes
        for rm in request.resource_metrics:
            resource = _attributes(rm.resource.attributes)
            if workers:
                batch.worker = worker_key(resource, workers)
                resource = {k: v for k, v in resource.items() if k not in workers}
            batch.source = (
                str(resource.get("service.name", "")),
                str(resource.get("service.instance.id", "")),
            )
            base = self._promoted(resource)
            if self._rules.target_info and resource:
                batch.resources.append(self._labels_of(resource.items()))
            for sm in rm.scope_metrics:
                scope_base = {**base, **self._scope_labels(sm.scope)}
                labeler = make_labeler(scope_base)
                for metric in sm.metrics:
                    self._translate_metric(metric, labeler, batch)
        return batch

    def _labeler(self, base: LabelDict) -> Labeler:
        """Label text of decoded ``KeyValue`` attributes on top of ``base``."""
        return lambda attributes: self._point_labels(base, attributes)

    def _raw_labeler(self, base: LabelDict) -> Labeler:
        """Label text of raw attribute encodings, through the per-scope cache."""
        cache = self._label_sets.setdefault(label_text(base), {})

        def labels(attributes: Iterable[bytes]) -> Labels:
            key = tuple(attributes)
            text = cache.get(key)
            if text is None:
                text = self._point_labels(base, [KeyValue.FromString(b) for b in key])
                self._remember(cache, key, text)
            return text

        return labels

    def _json_labeler(self, base: LabelDict) -> Labeler:
        """Label text of JSON attributes, through a cache keyed by their raw values."""
        cache: dict[Any, Labels] = self._label_sets.setdefault("json|" + label_text(base), {})

        def labels(attributes: JsonList | list[Any]) -> Labels:
            raw = attributes.raw if isinstance(attributes, JsonList) else attributes
            key = tuple([attribute_key(item) for item in raw])
            text = cache.get(key)
            if text is None:
                text = self._point_labels(base, attributes)  # type: ignore[arg-type]
                self._remember(cache, key, text)
            return text

        return labels

    def _remember(self, cache: dict[Any, Labels], key: tuple[Any, ...], text: Labels) -> None:
        if self._label_set_count >= LABEL_SET_CACHE_MAX:
            # start over: the scope dicts go too (resources churn, e.g. instance ids)
            for scope_cache in self._label_sets.values():
                scope_cache.clear()
            self._label_sets.clear()
            self._label_set_count = 0
        cache[key] = text
        self._label_set_count += 1

    # ------------------------------------------------------------------ labels

    def _label_name(self, key: str) -> str:
        name = self._label_names.get(key)
        if name is None:
            name = naming.label_name(key, self._rules.strategy)
            # Histograms and summaries write `le` and `quantile` themselves, and promtool
            # refuses them on any other type: a point's own attribute of that name is
            # renamed the way Prometheus renames a clashing target label.
            name = RESERVED_LABELS.get(name, name)
            if name and not is_legacy_label_name(name):  # a kept UTF-8 name: quoted
                name = f'"{escape_label_value(name)}"'
            if len(self._label_names) < LABEL_CACHE_MAX:
                self._label_names[key] = name
        return name

    def _labels_of(self, items: Iterable[tuple[str, Any]]) -> Labels:
        labels: LabelDict = {}
        for key, value in items:
            text = naming.label_value(value)
            if text:
                labels[self._label_name(key)] = text
        return label_text(labels)

    def _promoted(self, resource: dict[str, Any]) -> LabelDict:
        out: LabelDict = {}
        for key in self._rules.promote_resource_attributes:
            if key in resource:
                text = naming.label_value(resource[key])
                if text:
                    out[self._label_name(key)] = text
        return out

    def _scope_labels(self, scope: InstrumentationScope) -> LabelDict:
        if not self._rules.scope_labels:
            return {}
        out: LabelDict = {}
        for key, value in _attributes(scope.attributes).items():
            text = naming.label_value(value)
            if text:
                out[self._label_name(SCOPE_ATTRIBUTE_PREFIX + key)] = text
        if scope.name:
            out[SCOPE_NAME_LABEL] = scope.name
        if scope.version:
            out[SCOPE_VERSION_LABEL] = scope.version
        return out

    def _point_labels(self, base: LabelDict, attributes: Iterable[KeyValue]) -> Labels:
        labels = dict(base)
        for kv in attributes:
            value = kv.value
            if value.WhichOneof("value") == "string_value":
                text = value.string_value
            else:
                text = naming.label_value(_python_value(value))
            name = self._label_name(kv.key)
            if text:
                labels[name] = text
            else:
                labels.pop(name, None)
        return label_text(labels)

    # ----------------------------------------------------------------- metrics

    def _descriptor(self, metric: pb.Metric, kind: Kind) -> Descriptor | None:
        is_gauge = metric.WhichOneof("data") == "gauge"  # `_ratio` (NoUTF8EscapingWithSuffixes)
        cache_key = (metric.name, metric.unit, metric.description, kind, is_gauge)
        if cache_key in self._descriptors:
            return self._descriptors[cache_key]
        strategy = self._rules.strategy
        family = naming.metric_name(
            metric.name,
            metric.unit,
            is_counter=kind is Kind.COUNTER,
            strategy=strategy,
            is_gauge=is_gauge,
        )
        unit = naming.map_unit(metric.unit) if strategy.suffixes else ""
        if unit and not family.endswith("_" + unit):  # OpenMetrics: the name ends in its unit
            unit = ""
        descriptor = None
        if family:
            descriptor = Descriptor(valid_utf8(family), kind, valid_utf8(metric.description), unit)
        if len(self._descriptors) < LABEL_CACHE_MAX:
            self._descriptors[cache_key] = descriptor
        return descriptor

    def _translate_metric(self, metric: pb.Metric, base: Labeler, batch: Batch) -> None:
        data = metric.WhichOneof("data")
        if data == "sum":
            kind = Kind.COUNTER if metric.sum.is_monotonic else Kind.GAUGE
            self._numbers(metric, kind, metric.sum.aggregation_temporality, base, batch)
        elif data == "gauge":
            self._numbers(metric, Kind.GAUGE, None, base, batch)
        elif data == "histogram":
            self._histograms(metric, base, batch)
        elif data == "exponential_histogram":
            self._exponentials(metric, base, batch)
        elif data == "summary":
            self._summaries(metric, base, batch)
        else:
            batch.reject("no_data")

    def _emit(
        self,
        metric: pb.Metric,
        kind: Kind,
        temporality: Temporality | None,
        points: list[Point],
        count: int,
        batch: Batch,
    ) -> None:
        batch.points += count
        rejected = count - len(points)
        descriptor = self._descriptor(metric, kind)
        if descriptor is None:
            batch.reject("invalid_name", count)
        elif temporality is None:
            batch.reject("unspecified_temporality", count)
        else:
            if rejected:
                batch.reject("invalid_point", rejected)
            if points:
                batch.metrics.append(
                    Metric(descriptor, temporality, points, batch.source, batch.worker)
                )

    def _temporality(self, value: int | None) -> Temporality | None:
        return Temporality.GAUGE if value is None else TEMPORALITIES.get(value)  # type: ignore[call-overload]

    def _numbers(
        self, metric: pb.Metric, kind: Kind, temporality: int | None, base: Labeler, batch: Batch
    ) -> None:
        data_points = (
            metric.sum.data_points if temporality is not None else metric.gauge.data_points
        )
        points: list[Point] = []
        for dp in data_points:
            if dp.flags & FLAG_NO_RECORDED_VALUE:
                continue
            which = dp.WhichOneof("value")
            if which is None:
                continue
            value = dp.as_double if which == "as_double" else float(dp.as_int)
            labels = _point_labels_within_limits(base, dp.attributes)
            if labels is None:
                continue
            points.append(NumberPoint(labels, dp.start_time_unix_nano, dp.time_unix_nano, value))
        self._emit(metric, kind, self._temporality(temporality), points, len(data_points), batch)

    def _histograms(self, metric: pb.Metric, base: Labeler, batch: Batch) -> None:
        points: list[Point] = []
        data_points = metric.histogram.data_points
        for dp in data_points:
            bounds = self._checked_bounds(tuple(dp.explicit_bounds))
            counts = tuple(dp.bucket_counts) or (dp.count,)
            if bounds is None or len(counts) != len(bounds) + 1:
                continue
            if dp.flags & FLAG_NO_RECORDED_VALUE:
                continue
            labels = _point_labels_within_limits(base, dp.attributes)
            if labels is None:
                continue
            total = dp.sum if dp.HasField("sum") else 0.0
            points.append(
                HistogramPoint(
                    labels, dp.start_time_unix_nano, dp.time_unix_nano, bounds, counts, total
                )
            )
        temporality = self._temporality(metric.histogram.aggregation_temporality)
        self._emit(metric, Kind.HISTOGRAM, temporality, points, len(data_points), batch)

    def _checked_bounds(self, bounds: tuple[float, ...]) -> tuple[float, ...] | None:
        """``bounds`` if strictly increasing (one shared tuple per distinct bounds), else None."""
        known = self._bounds.get(bounds, _UNKNOWN)
        if known is _UNKNOWN:
            known = bounds if _increasing(bounds) else None
            if len(self._bounds) < LABEL_CACHE_MAX:
                self._bounds[bounds] = known
        return known  # type: ignore[return-value]

    def _exponentials(self, metric: pb.Metric, base: Labeler, batch: Batch) -> None:
        points: list[Point] = []
        data_points = metric.exponential_histogram.data_points
        for dp in data_points:
            if dp.flags & FLAG_NO_RECORDED_VALUE or not -10 <= dp.scale <= 20:
                continue
            labels = _point_labels_within_limits(base, dp.attributes)
            if labels is None:
                continue
            points.append(
                ExponentialPoint(
                    labels,
                    dp.start_time_unix_nano,
                    dp.time_unix_nano,
                    dp.scale,
                    dp.zero_count,
                    dp.zero_threshold,
                    _bucket_map(dp.positive),
                    _bucket_map(dp.negative),
                    dp.sum if dp.HasField("sum") else 0.0,
                    dp.count,
                )
            )
        temporality = self._temporality(metric.exponential_histogram.aggregation_temporality)
        self._emit(metric, Kind.HISTOGRAM, temporality, points, len(data_points), batch)

    def _summaries(self, metric: pb.Metric, base: Labeler, batch: Batch) -> None:
        points: list[Point] = []
        data_points = metric.summary.data_points
        for dp in data_points:
            if dp.flags & FLAG_NO_RECORDED_VALUE:
                continue
            labels = _point_labels_within_limits(base, dp.attributes)
            if labels is None:
                continue
            quantiles = tuple((q.quantile, q.value) for q in dp.quantile_values)
            points.append(
                SummaryPoint(
                    labels, dp.start_time_unix_nano, dp.time_unix_nano, quantiles, dp.sum, dp.count
                )
            )
        self._emit(metric, Kind.SUMMARY, Temporality.GAUGE, points, len(data_points), batch)


def worker_key(resource: dict[str, Any], attributes: tuple[str, ...]) -> str:
    """The worker a resource is: its values of ``attributes`` joined by ``/`` ("" if none)."""
    values = [naming.label_value(resource[key]) for key in attributes if key in resource]
    return "/".join(value for value in values if value)


def label_text(labels: LabelDict) -> Labels:
    """The exposition text of a label set: sorted by name, values escaped.

    A label whose name sanitized to nothing is left out (``{="v"}`` is no valid label),
    and text that is not valid UTF-8 (lone surrogates from a JSON ``\\ud800`` escape)
    has those code points replaced by U+FFFD, so no scrape ever fails to encode.
    """
    text = ",".join([f'{k}="{escape_label_value(labels[k])}"' for k in sorted(labels) if k])
    return valid_utf8(text)


def valid_utf8(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (it is returned as is when valid)."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _increasing(bounds: tuple[float, ...]) -> bool:
    return all(a < b for a, b in itertools.pairwise(bounds)) and not any(
        math.isnan(b) for b in bounds
    )


def _bucket_map(buckets: pb.ExponentialHistogramDataPoint.Buckets) -> dict[int, int]:
    offset = buckets.offset
    return {offset + i: c for i, c in enumerate(buckets.bucket_counts) if c}


def _attributes(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _python_value(kv.value) for kv in attributes}


def _point_labels_within_limits(base: Labeler, attributes: Sized) -> Labels | None:
    """The point's label text, or None (the point is rejected) when it has too many."""
    if len(attributes) > MAX_POINT_ATTRIBUTES:
        return None
    return base(attributes)


def _python_value(value: AnyValue, depth: int = 0) -> Any:
    """An AnyValue as the Python value the SDK recorded (arrays as lists).

    Raises:
        AttributeTooDeep: nested arrays/kvlists deeper than `MAX_ANY_VALUE_DEPTH`.
    """
    if depth > MAX_ANY_VALUE_DEPTH:
        raise AttributeTooDeep(f"attribute value nested deeper than {MAX_ANY_VALUE_DEPTH} levels")
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_python_value(v, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _python_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which is None:
        return ""
    return getattr(value, which)
