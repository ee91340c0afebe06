"""What the sidecar holds: series per metric and per source, and the OTLP sources seen.

Computed on request (``GET /debug/series``, the status page) by walking the collectors
``/metrics`` renders; nothing is tracked on the hot path.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from sidecar.ingest.store import MetricStore, SourcePoints
from sidecar.merge.fetch import Scrape
from sidecar.merge.rawtext import RawFamily
from sidecar.sampletext import points_of

__all__ = [
    "MetricCount",
    "SourceCounter",
    "SourceInfo",
    "StoreSources",
    "count_series",
    "ingest_sources",
    "merge_counts",
    "merge_source",
    "series_report",
    "store_sources",
]

# a histogram's or summary's samples of one label set count as one series
_COMPONENT_LABELS = ("le", "quantile")
MAX_COUNTED_SOURCES = 20  # beyond, series per source are not counted on the page
SourceKey = tuple[str, str]  # (service_name, service_instance_id)


@dataclass(frozen=True, slots=True)
class MetricCount:
    """Series of one metric family in one source."""

    metric: str
    source: str
    series: int


def _family_series(samples: Iterable[object]) -> int:
    keys: set[frozenset[tuple[str, str]]] = set()
    for sample in samples:
        labels: dict[str, str] = getattr(sample, "labels", {})
        key = frozenset(labels.items())
        for component in _COMPONENT_LABELS:
            if component in labels:
                key = key.difference(((component, labels[component]),))
        keys.add(key)
    return len(keys)


def exposed_name(name: str, kind: str) -> str:
    """The name ``/metrics`` shows (prometheus_client keeps counters without ``_total``)."""
    suffix = {"counter": "_total", "info": "_info"}.get(kind, "")
    return name if name.endswith(suffix) else name + suffix


def _store_counts(source: str, store: MetricStore) -> list[MetricCount]:
    """Series per family of the ingest store, without rendering them: O(families)."""
    counts = [
        MetricCount(
            exposed_name(f.descriptor.name, f.descriptor.kind.value),
            source,
            len(f.series) + (f.overflow is not None),
        )
        for f in store.families.values()
    ]
    if store.targets:
        counts.append(MetricCount("target_info", source, len(store.targets)))
    return counts


def _family_counts(source: str, families: Iterable[Metric | RawFamily]) -> list[MetricCount]:
    """Series per family: a raw family counts its lines, the own registry's histograms
    their series (`sidecar.sampletext.points_of`), others their label sets."""
    return [
        MetricCount(exposed_name(family.name, family.type), source, _series_in(family))
        for family in families
    ]


def _series_in(family: Metric | RawFamily) -> int:
    if isinstance(family, RawFamily):
        return family.series()
    points = points_of(family)
    return len(points) if points is not None else _family_series(family.samples)


def _collector_counts(source: str, collector: Collector) -> list[MetricCount]:
    """Series per family of any collector, by collecting it: O(series)."""
    return _family_counts(source, collector.collect())


def merge_source(target: str) -> str:
    """The source name of merge target ``target`` on the pages: ``merge:<name>``."""
    return f"merge:{target}"


def merge_counts(scrapes: Mapping[str, Scrape]) -> list[MetricCount]:
    """Series per family of each merge target's last scrape (target name -> scrape), as
    the target served them (before the merge rules drop any)."""
    counts: list[MetricCount] = []
    for name, scrape in scrapes.items():
        counts += _family_counts(merge_source(name), scrape.families)
    return counts


def count_series(
    collectors: Mapping[str, Collector], extra: Iterable[MetricCount] = ()
) -> list[MetricCount]:
    """Series per (metric family, source), largest first, with ``extra`` counts (the
    merge targets', `merge_counts`).

    A collector exposing an ingest ``store`` (`sidecar.ingest.collector.OtlpCollector`) is
    counted from the store's families, never rendered: 100,000 ingested series cost
    microseconds instead of seconds on the event loop.
    """
    counts: list[MetricCount] = list(extra)
    for source, collector in collectors.items():
        store = getattr(collector, "store", None)
        if isinstance(store, MetricStore):
            counts += _store_counts(source, store)
        else:
            counts += _collector_counts(source, collector)
    return sorted((c for c in counts if c.series), key=lambda c: (-c.series, c.metric, c.source))


def series_report(
    collectors: Mapping[str, Collector], limit: int, extra: Iterable[MetricCount] = ()
) -> dict[str, object]:
    """The JSON of ``GET /debug/series``: totals, per source, per metric (top ``limit``);
    ``extra`` as in `count_series`."""
    counts = count_series(collectors, extra)
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
    series: int | None  # None when not counted (too many sources)
    accepted: int | None = None  # data points since the source was first seen
    rejected: int | None = None
    workers: tuple[str, ...] = ()  # its live worker processes (ingest.workers)

    @property
    def key(self) -> SourceKey:
        """(service_name, service_instance_id)."""
        return (self.service_name, self.service_instance_id)


def label_value(text: str, name: str) -> str:
    """The value of label ``name`` in ``a="1",b="x"`` label text ("" when absent).

    Two string searches instead of a full parse: it runs once per ingested series.
    """
    key = name + '="'
    if text.startswith(key):
        start = len(key)
    else:
        at = text.find("," + key)
        if at < 0:
            return ""
        start = at + 1 + len(key)
    end = text.find('"', start)
    if end < 0 or text[end - 1] != "\\":
        return text[start:end] if end >= 0 else ""
    while end >= 0:  # an escaped quote inside the value: count the backslashes before it
        value = text[start:end]
        if (len(value) - len(value.rstrip("\\"))) % 2 == 0:
            return value
        end = text.find('"', end + 1)
    return ""


def _series_per_instance(
    keys: Iterable[SourceKey], series_labels: Iterable[str]
) -> Counter[SourceKey]:
    """Series per source, by looking for each source's ``service_instance_id`` pair.

    A substring test per (series, source) runs in C: a few sources over 100,000 series
    take tens of milliseconds, where parsing every label text took half a second.
    """
    keys = list(keys)
    needles = [(key, f'service_instance_id="{key[1]}"') for key in keys if key[1]]
    # a source without an instance id (its workers aggregated, ingest.workers): by name,
    # after every instance id so a named instance of the same service is not taken for it
    needles += [(key, f'service_name="{key[0]}"') for key in keys if key[0] and not key[1]]
    counts: Counter[SourceKey] = Counter()
    for labels in series_labels:
        for key, needle in needles:
            at = labels.find(needle)
            if at == 0 or (at > 0 and labels[at - 1] == ","):
                counts[key] += 1
                break
    return counts


def _series_per_label_parse(series_labels: Iterable[str]) -> Counter[SourceKey]:
    return Counter(
        (label_value(labels, "service_name"), label_value(labels, "service_instance_id"))
        for labels in series_labels
    )


def ingest_sources(
    targets: Mapping[str, float],
    series_labels: Iterable[str],
    clock: Callable[[], float] = time.monotonic,
) -> list[SourceInfo]:
    """Sources from the store's resources (label text → last seen) and its series labels.

    Series are counted per source for up to MAX_COUNTED_SOURCES sources (else left
    unknown); without resources (``ingest.target_info: false``) sources come from the
    series' own ``service_name``/``service_instance_id`` labels.
    """
    counter = SourceCounter.of(targets)
    return counter.infos(counter.count(series_labels), clock())


@dataclass(frozen=True, slots=True)
class SourceCounter:
    """How series are counted per source, given the store's resources (`ingest_sources`):
    by each resource's ``service_instance_id`` (or ``service_name``) pair, by parsing
    each series' own labels when there are no resources, or not at all (too many)."""

    seen: Mapping[SourceKey, float]  # each resource's last push (monotonic seconds)
    counted: bool

    @classmethod
    def of(cls, targets: Mapping[str, float]) -> SourceCounter:
        """The counter for a store with these resources (label text → last seen)."""
        seen: dict[SourceKey, float] = {}
        for labels, last in targets.items():
            key = (label_value(labels, "service_name"), label_value(labels, "service_instance_id"))
            seen[key] = max(last, seen.get(key, last))
        return cls(seen, len(seen) <= MAX_COUNTED_SOURCES)

    @property
    def mode(self) -> tuple[SourceKey, ...] | None:
        """What a count depends on: the sources in order (None: counted by parsing)."""
        return tuple(self.seen) if self.seen else None

    def count(self, series_labels: Iterable[str]) -> Counter[SourceKey]:
        """Series per source among ``series_labels``."""
        if not self.seen:
            return _series_per_label_parse(series_labels)
        return _series_per_instance(self.seen, series_labels) if self.counted else Counter()

    def infos(self, counts: Counter[SourceKey], now: float) -> list[SourceInfo]:
        """The sources, with ``counts`` (series of every source) and their push ages."""
        if not self.seen:
            return [SourceInfo(k[0], k[1], None, n) for k, n in sorted(counts.items())]
        counted, seen = self.counted, self.seen
        return [
            SourceInfo(key[0], key[1], now - seen[key], counts[key] if counted else None)
            for key in sorted(seen)
        ]


ChunkKey = tuple[str, int, int]  # (family name, family serial, chunk)


class StoreSources:
    """`store_sources` of one store, counting again only what changed since the last call.

    The store stamps each chunk of 256 series of a family with the write that last
    changed it (`sidecar.ingest.store.Family`); the series per source of a chunk are kept
    with its stamp and counted again only when the stamp moved (or the sources did). With
    the store unchanged, a call skips over the series without reading them: ~1 ms
    instead of ~40 ms for 100,000 series; with no write at all since the last call (the
    store's epoch did not move) it reads nothing (~3 ms a page fetch saved). Called in a
    worker thread while the store's write gate holds its writers
    (`sidecar.status.routes`); one call at a time.
    """

    def __init__(self, store: MetricStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._mode: tuple[SourceKey, ...] | None = None
        self._chunks: dict[ChunkKey, tuple[int, Counter[SourceKey]]] = {}
        self._total: tuple[int, Counter[SourceKey]] | None = None  # at the store's epoch
        self.recounted = 0  # chunks counted again by the last call (for tests)

    def __call__(self) -> list[SourceInfo]:
        """The sources of the store, with the points each pushed and its live workers."""
        store = self.store
        with self._lock:
            counter = SourceCounter.of(store.targets)
            counts = self._count(counter) if counter.counted else Counter()
        infos = counter.infos(counts, self._clock())
        return _with_workers(store, infos)

    def _count(self, counter: SourceCounter) -> Counter[SourceKey]:
        if counter.mode != self._mode:
            self._mode, self._chunks, self._total = counter.mode, {}, None
        epoch = self.store.epoch  # bumped by every write: the same, nothing changed
        if self._total is not None and self._total[0] == epoch:
            self.recounted = 0
            return Counter(self._total[1])
        last, kept = self._chunks, {}
        total: Counter[SourceKey] = Counter()
        recounted = 0
        for name, family in self.store.families.items():
            series = iter(family.series.values())
            versions = family.versions
            if sum(family.sizes.values()) != len(family.series):  # (never: counted whole)
                total.update(counter.count(s.labels for s in family.all_series()))
                continue
            for chunk, size in family.sizes.items():  # (in the order the series are held)
                key, version = (name, family.serial, chunk), versions[chunk]
                hit = last.get(key)
                if hit is not None and hit[0] == version:
                    next(islice(series, size, size), None)  # skip its series
                else:
                    hit = (version, counter.count(s.labels for s in islice(series, size)))
                    recounted += 1
                kept[key] = hit
                total.update(hit[1])
            if family.overflow is not None:
                total.update(counter.count((family.overflow.labels,)))
        self._chunks, self.recounted = kept, recounted
        self._total = (epoch, Counter(total))
        return total


def store_sources(store: MetricStore) -> list[SourceInfo]:
    """`ingest_sources` of the ingest store, with the points each source pushed."""
    return StoreSources(store)()


def _with_workers(store: MetricStore, infos: list[SourceInfo]) -> list[SourceInfo]:
    workers: dict[SourceKey, list[str]] = {}
    for source, worker in store.workers:
        workers.setdefault(source, []).append(worker)
    return [
        dataclasses.replace(
            _with_points(info, store.sources.get(info.key)),
            workers=tuple(sorted(workers.get(info.key, ()))),
        )
        for info in infos
    ]


def _with_points(info: SourceInfo, points: SourcePoints | None) -> SourceInfo:
    if points is None:
        return info
    return dataclasses.replace(info, accepted=points.accepted, rejected=points.rejected)
