"""The unified view (Prometheus families) → OTLP metrics data, resources regrouped.

What /metrics serves is what is pushed: each series goes back under a resource and an
instrumentation scope, undoing what the ingest translation (design §8) did (promoted
resource labels and ``target_info`` rebuild an ingested series' resource; the sidecar's
own and merged series go under the sidecar's resource), and each family type maps to an
OTLP type. The mapping in full: docs/merge-export.md ("Push to an OpenTelemetry
collector").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.core import Metric as Family

from sidecar.exposition import parse_labels
from sidecar.ingest.naming import sanitize_label
from sidecar.merge.fetch import parse_exposition
from sidecar.merge.rawtext import RawFamily

__all__ = ["ResourceRules", "exposition_to_metrics_data", "to_metrics_data"]

TARGET_INFO_FAMILIES = frozenset({"target", "target_info"})
SCOPE_NAME = "otel_scope_name"
SCOPE_VERSION = "otel_scope_version"
SCOPE_SCHEMA_URL = "otel_scope_schema_url"
SCOPE_LABELS = frozenset({SCOPE_NAME, SCOPE_VERSION, SCOPE_SCHEMA_URL})
CUMULATIVE = AggregationTemporality.CUMULATIVE
NS = 1_000_000_000

LabelItems = tuple[tuple[str, str], ...]
ResourceKey = tuple[str, ...]  # promoted label values; all "" = the sidecar's own
ScopeKey = tuple[str, str, str]
MetricKey = tuple[str, str]  # (OTLP name, "sum" | "gauge" | "histogram")
NO_SCOPE: ScopeKey = ("", "", "")


@dataclass(frozen=True, slots=True)
class ResourceRules:
    """How series find their resource and scope again."""

    default_resource: Resource
    default_scope: InstrumentationScope
    promoted: tuple[str, ...] = ("service.name", "service.namespace", "service.instance.id")
    label_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_names", tuple(sanitize_label(k) for k in self.promoted))


@dataclass(slots=True)
class _Series:
    """One histogram series being assembled from its samples."""

    attributes: Mapping[str, str]
    buckets: list[tuple[float, float]] = field(default_factory=list)
    count: float = 0.0
    total: float = 0.0
    created: float | None = None


class _Builder:
    """Collects points per resource → scope → metric, then builds `MetricsData`."""

    def __init__(self, rules: ResourceRules, now_ns: int, start_ns: int) -> None:
        self.rules = rules
        self.now_ns = now_ns
        self.start_ns = start_ns
        self.tree: dict[ResourceKey, dict[ScopeKey, dict[MetricKey, _Points]]] = {}
        self.targets: dict[ResourceKey, dict[str, str]] = {}
        self.special = frozenset(rules.label_names) | SCOPE_LABELS
        self.no_resource: ResourceKey = ("",) * len(rules.label_names)

    def place(self, labels: Mapping[str, str]) -> tuple[ResourceKey, ScopeKey, Mapping[str, str]]:
        """Split a label set into its resource, its scope and the point's attributes."""
        names = self.rules.label_names
        if self.special.isdisjoint(labels):  # the common case: the sidecar's own, merged
            return self.no_resource, NO_SCOPE, labels
        resource = tuple([labels.get(n, "") for n in names])
        scope = (labels.get(SCOPE_NAME, ""), labels.get(SCOPE_VERSION, ""),
                 labels.get(SCOPE_SCHEMA_URL, ""))  # fmt: skip
        drop = self.special if any(resource) else SCOPE_LABELS
        return resource, scope, {k: v for k, v in labels.items() if k not in drop}

    def points(
        self, resource: ResourceKey, scope: ScopeKey, key: MetricKey, help_text: str
    ) -> _Points:
        """The point list of one metric under one resource and scope."""
        metrics = self.tree.setdefault(resource, {}).setdefault(scope, {})
        points = metrics.get(key)
        if points is None:
            points = metrics[key] = _Points(help_text)
        return points

    def start(self, created: float | None) -> int:
        return int(created * NS) if created is not None else self.start_ns


@dataclass(slots=True)
class _Points:
    help: str
    numbers: list[NumberDataPoint] = field(default_factory=list)
    histograms: list[HistogramDataPoint] = field(default_factory=list)


def exposition_to_metrics_data(
    text: str, rules: ResourceRules, now_ns: int, start_ns: int
) -> MetricsData:
    """`to_metrics_data` of an OpenMetrics exposition (the unified view as rendered).

    Raises:
        ValueError: ``text`` is not OpenMetrics.
    """
    return to_metrics_data(parse_exposition(text, True), rules, now_ns, start_ns)


def to_metrics_data(
    families: Iterable[Family | RawFamily], rules: ResourceRules, now_ns: int, start_ns: int
) -> MetricsData:
    """Convert a unified view's families into OTLP metrics data.

    Args:
        families: what /metrics would serve (prometheus_client `Metric` families, or the
            raw families of `sidecar.merge.rawtext`).
        rules: default resource/scope and the promoted resource attributes.
        now_ns: the points' time.
        start_ns: start time of cumulative points that have no ``_created`` sample.
    """
    builder = _Builder(rules, now_ns, start_ns)
    for family in families:
        if family.name in TARGET_INFO_FAMILIES:
            _remember_targets(builder, family)
        elif family.type == "counter":
            _counter(builder, family)
        elif family.type == "histogram":
            _histogram(builder, family)
        else:
            _gauges(builder, family)
    return _build(builder)


def _samples(family: Family | RawFamily) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample; raw families are read from their text."""
    if isinstance(family, RawFamily):
        for name, labels, value in family.lines:
            yield name, parse_labels(labels), float(value)
    else:
        for sample in family.samples:
            yield sample.name, sample.labels, float(sample.value)


def _remember_targets(builder: _Builder, family: Family | RawFamily) -> None:
    for _, labels, _ in _samples(family):
        resource, _, _ = builder.place(labels)
        if any(resource):
            builder.targets[resource] = dict(labels)


def _counter(builder: _Builder, family: Family | RawFamily) -> None:
    created: dict[LabelItems, float] = {}
    totals: list[tuple[str, dict[str, str], float]] = []
    for name, labels, value in _samples(family):
        if name.endswith("_created"):
            created[tuple(sorted(labels.items()))] = value
        elif name.endswith("_total"):
            totals.append((name, labels, value))
    for _, labels, value in totals:
        resource, scope, attributes = builder.place(labels)
        points = builder.points(resource, scope, (family.name, "sum"), family.documentation)
        start = (
            builder.start(created.get(tuple(sorted(labels.items()))))
            if created
            else builder.start_ns
        )
        points.numbers.append(NumberDataPoint(attributes, start, builder.now_ns, value))


def _gauges(builder: _Builder, family: Family | RawFamily) -> None:
    for name, labels, value in _samples(family):
        if name.endswith("_created"):
            continue
        resource, scope, attributes = builder.place(labels)
        points = builder.points(resource, scope, (name, "gauge"), family.documentation)
        points.numbers.append(NumberDataPoint(attributes, 0, builder.now_ns, value))


def _histogram(builder: _Builder, family: Family | RawFamily) -> None:
    series: dict[LabelItems, tuple[ResourceKey, ScopeKey, _Series]] = {}
    for name, sample_labels, value in _samples(family):
        labels = {k: v for k, v in sample_labels.items() if k != "le"}
        key = tuple(sorted(labels.items()))
        entry = series.get(key)
        if entry is None:
            resource, scope, attributes = builder.place(labels)
            entry = series[key] = (resource, scope, _Series(attributes))
        one = entry[2]
        suffix = name[len(family.name) :]
        if suffix == "_bucket":
            one.buckets.append((float(sample_labels["le"]), value))
        elif suffix == "_count":
            one.count = value
        elif suffix == "_sum":
            one.total = value
        elif suffix == "_created":
            one.created = value
    for resource, scope, one in series.values():
        points = builder.points(resource, scope, (family.name, "histogram"), family.documentation)
        points.histograms.append(_histogram_point(builder, one))


def _histogram_point(builder: _Builder, one: _Series) -> HistogramDataPoint:
    one.buckets.sort()
    bounds = [le for le, _ in one.buckets if not math.isinf(le)]
    counts: list[int] = []
    previous = 0.0
    for _, cumulative in one.buckets:
        counts.append(int(cumulative - previous))
        previous = cumulative
    if not one.buckets or not math.isinf(one.buckets[-1][0]):
        counts.append(int(one.count - previous))  # no +Inf bucket: the rest is above
    return HistogramDataPoint(
        attributes=one.attributes,
        start_time_unix_nano=builder.start(one.created),
        time_unix_nano=builder.now_ns,
        count=int(one.count or previous),
        sum=one.total,
        bucket_counts=counts,
        explicit_bounds=bounds,
        min=None,  # type: ignore[arg-type]  # unset in OTLP: Prometheus has no min/max
        max=None,  # type: ignore[arg-type]
    )


def _build(builder: _Builder) -> MetricsData:
    # The SDK encoder keys resources and scopes by value: keys that resolve to equal
    # ones (the sidecar's own scope, named or by default) must become one entry.
    tree: dict[Resource, dict[InstrumentationScope, dict[MetricKey, _Points]]] = {}
    for resource_key, scopes in builder.tree.items():
        by_scope = tree.setdefault(_resource(builder, resource_key), {})
        for scope_key, metrics in scopes.items():
            merged = by_scope.setdefault(_scope(builder.rules, scope_key), {})
            for metric_key, points in metrics.items():
                into = merged.setdefault(metric_key, _Points(points.help))
                into.numbers.extend(points.numbers)
                into.histograms.extend(points.histograms)
    return MetricsData(
        [
            ResourceMetrics(
                resource,
                [ScopeMetrics(s, _metrics(m), s.schema_url or "") for s, m in scopes.items()],
                resource.schema_url,
            )
            for resource, scopes in tree.items()
        ]
    )


def _metrics(metrics: dict[MetricKey, _Points]) -> list[Metric]:
    out = []
    for (name, kind), points in metrics.items():
        data: Sum | Gauge | Histogram
        if kind == "sum":
            data = Sum(points.numbers, CUMULATIVE, is_monotonic=True)
        elif kind == "histogram":
            data = Histogram(points.histograms, CUMULATIVE)
        else:
            data = Gauge(points.numbers)
        out.append(Metric(name, points.help, "", data))
    return out


def _scope(rules: ResourceRules, key: ScopeKey) -> InstrumentationScope:
    name, version, schema_url = key
    if not name:
        return rules.default_scope
    return InstrumentationScope(name, version or None, schema_url or None)


def _resource(builder: _Builder, key: ResourceKey) -> Resource:
    rules = builder.rules
    if not any(key):
        return rules.default_resource
    attributes: dict[str, str] = dict(builder.targets.get(key, {}))
    for original, label, value in zip(rules.promoted, rules.label_names, key, strict=True):
        attributes.pop(label, None)
        if value:
            attributes[original] = value
    return Resource(attributes)
