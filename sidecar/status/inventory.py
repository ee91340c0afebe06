"""What the sidecar holds: series per metric and per source, and the OTLP sources seen.

Computed on request (``GET /debug/series``, the status page) by walking the collectors
``/metrics`` renders; nothing is tracked on the hot path.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.registry import Collector

from sidecar.ingest.store import MetricStore

__all__ = [
    "MetricCount",
    "SourceInfo",
    "count_series",
    "ingest_sources",
    "series_report",
    "store_sources",
]

# a histogram's or summary's samples of one label set count as one series
_COMPONENT_LABELS = ("le", "quantile")
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class MetricCount:
    """Series of one metric family in one source."""

    metric: str
    source: str
    series: int


def _family_series(samples: Iterable[object]) -> int:
    keys = set()
    for sample in samples:
        labels = getattr(sample, "labels", {})
        keys.add(tuple(sorted((k, v) for k, v in labels.items() if k not in _COMPONENT_LABELS)))
    return len(keys)


def exposed_name(name: str, kind: str) -> str:
    """The name ``/metrics`` shows (prometheus_client keeps counters without ``_total``)."""
    suffix = {"counter": "_total", "info": "_info"}.get(kind, "")
    return name if name.endswith(suffix) else name + suffix


def count_series(collectors: Mapping[str, Collector]) -> list[MetricCount]:
    """Series per (metric family, source), largest first."""
    counts = [
        MetricCount(exposed_name(family.name, family.type), source, _family_series(family.samples))
        for source, collector in collectors.items()
        for family in collector.collect()
    ]
    return sorted((c for c in counts if c.series), key=lambda c: (-c.series, c.metric, c.source))


def series_report(collectors: Mapping[str, Collector], limit: int) -> dict[str, object]:
    """The JSON of ``GET /debug/series``: totals, per source, per metric (top ``limit``)."""
    counts = count_series(collectors)
    per_source: Counter[str] = Counter()
    per_metric: Counter[str] = Counter()
    for c in counts:
        per_source[c.source] += c.series
        per_metric[c.metric] += c.series
    return {
        "total": sum(per_source.values()),
        "sources": dict(per_source.most_common()),
        "metrics": [{"metric": metric, "series": n} for metric, n in per_metric.most_common(limit)],
        "by_source": [
            {"metric": c.metric, "source": c.source, "series": c.series} for c in counts[:limit]
        ],
    }


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """One OTLP resource that pushed to the sidecar."""

    service_name: str
    service_instance_id: str
    last_push_age_s: float | None  # seconds since its last push; None when unknown
    series: int
    accepted: int | None = None  # data points; None until the ingest counts per resource
    rejected: int | None = None


def parse_labels(text: str) -> dict[str, str]:
    """``a="1",b="x"`` label text into a dict (escapes kept as written)."""
    return dict(_LABEL_RE.findall(text))


def ingest_sources(
    targets: Mapping[str, float],
    series_labels: Iterable[str],
    clock: Callable[[], float] = time.monotonic,
) -> list[SourceInfo]:
    """Sources from the store's resources (label text → last seen) and its series labels."""
    per_source: Counter[tuple[str, str]] = Counter()
    for labels in series_labels:
        parsed = parse_labels(labels)
        per_source[(parsed.get("service_name", ""), parsed.get("service_instance_id", ""))] += 1
    now = clock()
    seen: dict[tuple[str, str], float] = {}
    for labels, last in targets.items():
        parsed = parse_labels(labels)
        key = (parsed.get("service_name", ""), parsed.get("service_instance_id", ""))
        seen[key] = max(last, seen.get(key, last))
    return [
        SourceInfo(key[0], key[1], now - seen[key] if key in seen else None, per_source[key])
        for key in sorted(set(seen) | set(per_source))
    ]


def store_sources(store: MetricStore) -> list[SourceInfo]:
    """`ingest_sources` of the ingest store (its resources and every series it holds)."""
    labels = (s.labels for family in store.families.values() for s in family.all_series())
    return ingest_sources(store.targets, labels)
