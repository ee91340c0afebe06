"""The metric store: one cumulative state per series, like the Collector's accumulator.

Delta points are accumulated, cumulative points replace, gauges and summaries keep their
last value; idle series expire (`MetricStore.expire`), series beyond the limits fold into
an overflow series, and a rejected point never touches a series. Worker processes' points
are aggregated into pod-level series (``ingest.workers``). Not thread-safe: written by
one writer at a time through `MetricStore.gate` (pushes in the receiver's decoder thread,
expiry and reloads on the event loop), which keeps writes and a scrape's off-loop render
apart (`sidecar.offloop`). The rules in full: docs/ingest.md ("The store", "One series per pod").
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from sidecar.exposition import escape_label_value
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
    SourceKey,
    SummaryPoint,
    Temporality,
)
from sidecar.offloop import WriteGate

__all__ = [
    "OVERFLOW_LABELS",
    "ExponentialState",
    "Family",
    "MetricStore",
    "Outcome",
    "Series",
    "StoreLimits",
    "Worker",
    "with_label",
]

OVERFLOW_LABELS: Labels = 'otel_metric_overflow="true"'

# Rejection reasons (the ``reason`` label of sidecar_otlp_data_points_rejected_total).
OUT_OF_ORDER = "out_of_order"
TYPE_CONFLICT = "type_conflict"
STORE_FULL = "store_full"
BOUNDS_MISMATCH = "bounds_mismatch"

WORKER_LABEL = "worker"  # the label ``ingest.workers.gauges: each`` keeps
GAUGE_MODES = ("sum", "max", "min", "last", "each")
FOLD = ""  # Series.combine of a worker-fed series whose increases are summed
OVERFLOWED_STREAM = "\x00"  # label text + this + worker: a worker's stream in the overflow
CHUNK_SHIFT = 8  # 256 series per chunk of a family (`Family`, `sidecar.rendercache`)


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """The ``ingest.*`` limits the store enforces."""

    max_series: int = 100_000
    max_series_per_metric: int = 2000
    series_ttl: float = 300.0
    exponential_max_buckets: int = 40
    worker_gauges: str = "sum"  # ingest.workers.gauges
    worker_idle: float = 120.0  # ingest.workers.idle


@dataclass(slots=True)
class SourcePoints:
    """Data points one resource pushed, since it was first seen (or last expired)."""

    accepted: int = 0
    rejected: int = 0
    seen: float = 0.0


MAX_SOURCES = 10_000


@dataclass(slots=True)
class Worker:
    """One live worker process of a source, and the (family, labels) streams it feeds."""

    source: SourceKey
    seen: float
    streams: set[tuple[str, Labels]] = field(default_factory=set)


@dataclass(slots=True)
class Outcome:
    """What the store did with one batch."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    overflowed: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        """Count one rejected point."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


@dataclass(slots=True)
class ExponentialState:
    """A base-2 exponential histogram kept at scale ``scale`` (index → count maps)."""

    scale: int
    zero_count: int
    zero_threshold: float
    positive: dict[int, int]
    negative: dict[int, int]
    sum: float
    count: int

    @classmethod
    def of(cls, p: ExponentialPoint) -> ExponentialState:
        """A copy of the point's buckets."""
        return cls(
            p.scale, p.zero_count, p.zero_threshold, dict(p.positive), dict(p.negative),
            p.sum, p.count_value,
        )  # fmt: skip

    def add(self, p: ExponentialPoint) -> None:
        """Accumulate a delta point (both brought to the smaller scale first)."""
        other = ExponentialState.of(p)
        scale = min(self.scale, other.scale)
        self.downscale(self.scale - scale)
        other.downscale(other.scale - scale)
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for index, count in theirs.items():
                mine[index] = mine.get(index, 0) + count
        self.zero_count += other.zero_count
        self.zero_threshold = max(self.zero_threshold, other.zero_threshold)
        self.sum += other.sum
        self.count += other.count

    def downscale(self, by: int) -> None:
        """Merge buckets pairwise ``by`` times (scale decreases by ``by``)."""
        if by <= 0:
            return
        self.scale -= by
        self.positive = _downscaled(self.positive, by)
        self.negative = _downscaled(self.negative, by)

    def limit(self, max_buckets: int) -> None:
        """Reduce the scale until both index spans together fit ``max_buckets``."""
        while _span(self.positive) + _span(self.negative) > max_buckets:
            self.downscale(1)


def _downscaled(buckets: dict[int, int], by: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for index, count in buckets.items():
        out[index >> by] = out.get(index >> by, 0) + count
    return out


def _span(buckets: dict[int, int]) -> int:
    return max(buckets) - min(buckets) + 1 if buckets else 0


class Series:
    """One series' cumulative state; which fields are used depends on the family's kind.

    ``value``: counter/gauge value, histogram/summary count. ``counts``: per-bucket
    (not cumulative) counts of an explicit histogram, ``bounds`` its bounds. ``extra``:
    an `ExponentialState` or a summary's quantiles.
    """

    __slots__ = (
        "bounds", "combine", "counts", "extra", "labels", "seen", "seq", "start", "sum", "time",
        "value", "workers",
    )  # fmt: skip

    def __init__(self, labels: Labels, start: int, time_ns: int, seen: float) -> None:
        self.labels = labels
        self.start = start
        self.time = time_ns
        self.seen = seen
        self.value = 0.0
        self.sum = 0.0
        self.counts: list[int] | None = None
        self.bounds: tuple[float, ...] = ()
        self.extra: ExponentialState | tuple[tuple[float, float], ...] | None = None
        # worker-fed series only: each live worker's last state, and how they combine
        self.workers: dict[str, Series] | None = None
        self.combine = FOLD
        self.seq = 0  # its place in its family (`Family.insert`): chunk ``seq >> CHUNK_SHIFT``


class Family:
    """One metric family: its descriptor, its series by label text, its overflow series.

    For the render cache (`sidecar.rendercache`) the series are kept in chunks of
    ``1 << CHUNK_SHIFT`` by insertion order (``Series.seq``): ``sizes`` holds each chunk's
    live series count (chunks in order, as the series dict holds them), ``versions`` the
    store's write epoch that last changed what a chunk renders. ``serial`` tells the
    family from an earlier one of the same name. ``series`` is changed only through
    `insert` and `pop` (they keep ``sizes``), and every change to what a series renders
    stamps its chunk (`touch`).
    """

    __slots__ = (
        "descriptor", "next_seq", "overflow", "overflowed", "serial", "series", "sizes",
        "versions",
    )  # fmt: skip

    def __init__(self, descriptor: Descriptor, serial: int = 0) -> None:
        self.descriptor = descriptor
        self.serial = serial
        self.series: dict[Labels, Series] = {}
        self.overflow: Series | None = None
        # label text → last cumulative state of each label set folded into the overflow
        self.overflowed: dict[Labels, Series] = {}
        self.next_seq = 0
        self.sizes: dict[int, int] = {}  # chunk → live series in it (ascending chunks)
        self.versions: dict[int, int] = {}  # chunk → epoch of its last change

    def insert(self, series: Series, epoch: int) -> None:
        """Add a new series at the end (in the last chunk, or a new one)."""
        series.seq = seq = self.next_seq
        self.next_seq = seq + 1
        chunk = seq >> CHUNK_SHIFT
        self.sizes[chunk] = self.sizes.get(chunk, 0) + 1
        self.versions[chunk] = epoch
        self.series[series.labels] = series

    def pop(self, labels: Labels, epoch: int) -> Series | None:
        """Remove one series (None when there is none with these labels)."""
        series = self.series.pop(labels, None)
        if series is not None:
            chunk = series.seq >> CHUNK_SHIFT
            left = self.sizes[chunk] - 1
            if left:
                self.sizes[chunk] = left
                self.versions[chunk] = epoch
            else:
                del self.sizes[chunk], self.versions[chunk]
        return series

    def touch(self, series: Series, epoch: int) -> None:
        """What ``series`` renders has changed."""
        self.versions[series.seq >> CHUNK_SHIFT] = epoch

    def all_series(self) -> Iterator[Series]:
        """Every series, the overflow one last."""
        yield from self.series.values()
        if self.overflow is not None:
            yield self.overflow


class MetricStore:
    """Cumulative state of every ingested series, bounded, expiring."""

    def __init__(
        self,
        limits: StoreLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_expired: Callable[[int], None] | None = None,
        on_retired: Callable[[int], None] | None = None,
    ) -> None:
        self.limits = limits
        self.families: dict[str, Family] = {}
        self.targets: dict[Labels, float] = {}  # target_info label text → last seen
        self.sources: dict[SourceKey, SourcePoints] = {}  # per pushing resource
        self.workers: dict[tuple[SourceKey, str], Worker] = {}  # live workers
        self._clock = clock
        self._on_expired = on_expired
        self._on_retired = on_retired
        self._size = 0
        self.streams = 0  # live worker streams (bounded by max_series)
        # bumped by every write (a scrape renders between two): `Family.versions`
        self.epoch = 0
        self._serial = 0  # of the last family created
        self.gate = WriteGate(self.__len__)  # writes wait while a scrape's thread reads

    def __len__(self) -> int:
        """Series held, overflow and target_info series included."""
        return self._size + len(self.targets)

    @property
    def is_full(self) -> bool:
        """True when no new series can be created."""
        return len(self) >= self.limits.max_series

    # ------------------------------------------------------------------ writes

    def apply(self, batch: Batch) -> Outcome:
        """Apply every translated point; each is accepted or rejected as a whole."""
        now = self._clock()
        self.epoch += 1
        outcome = Outcome()
        for labels in batch.resources:
            if labels in self.targets or not self.is_full:
                self.targets[labels] = now
        for source, count in batch.source_rejected.items():
            self._source(source, now).rejected += count
        for metric in batch.metrics:
            accepted, rejected = outcome.accepted, sum(outcome.rejected.values())
            self._apply_metric(metric, now, outcome)
            points = self._source(metric.source, now)
            points.accepted += outcome.accepted - accepted
            points.rejected += sum(outcome.rejected.values()) - rejected
        return outcome

    def _source(self, key: SourceKey, now: float) -> SourcePoints:
        points = self.sources.get(key)
        if points is None:
            if len(self.sources) >= MAX_SOURCES:  # a bound even against churning instance ids
                del self.sources[next(iter(self.sources))]
            points = self.sources[key] = SourcePoints()
        points.seen = now
        return points

    def _apply_metric(self, metric: Metric, now: float, outcome: Outcome) -> None:
        descriptor = metric.descriptor
        family = self.families.get(descriptor.name)
        if family is None:
            self._serial += 1
            family = self.families[descriptor.name] = Family(descriptor, self._serial)
        elif family.descriptor.kind is not descriptor.kind:
            for _ in metric.points:
                outcome.reject(TYPE_CONFLICT)
            return
        else:
            family.descriptor = descriptor  # HELP and unit of the latest push
        if metric.worker:
            self._apply_worker_metric(family, metric, now, outcome)
            return
        versions, epoch, shift = family.versions, self.epoch, CHUNK_SHIFT  # (`Family.touch`)
        for point in metric.points:
            series = family.series.get(point.labels)
            if series is None:
                series = self._new_series(family, point, metric.temporality, now, outcome)
                if series is None:
                    continue
            elif not self._update(series, point, metric.temporality, outcome):
                continue
            series.seen = now
            versions[series.seq >> shift] = epoch
            outcome.accepted += 1

    def _new_series(
        self, family: Family, point: Point, temporality: Temporality, now: float, outcome: Outcome
    ) -> Series | None:
        if len(family.series) >= self.limits.max_series_per_metric:
            self._fold_into_overflow(family, point, temporality, now, outcome)
            return None
        if self.is_full:
            outcome.reject(STORE_FULL)
            return None
        series = Series(point.labels, point.start_ns, point.time_ns, now)
        self._set(series, point)
        family.insert(series, self.epoch)
        self._size += 1
        return series

    def _update(
        self, series: Series, point: Point, temporality: Temporality, outcome: Outcome
    ) -> bool:
        """Apply ``point`` to an existing series; False (and counted) when rejected."""
        if temporality is Temporality.DELTA:
            overlaps = point.start_ns < series.time if point.start_ns else False
            if overlaps or point.time_ns <= series.time:
                outcome.reject(OUT_OF_ORDER)
                return False
            if not self._accumulate(series, point, outcome):
                return False
            series.time = point.time_ns
            return True
        if temporality is Temporality.CUMULATIVE and point.start_ns > series.start:
            series.start = point.start_ns  # a reset: passed through as Prometheus expects
        elif point.time_ns < series.time or point.start_ns < series.start:
            outcome.reject(OUT_OF_ORDER)
            return False
        series.time = point.time_ns
        self._set(series, point)
        return True

    def _set(self, series: Series, point: Point) -> None:
        """Replace the series' state with the point's."""
        if isinstance(point, NumberPoint):
            series.value = point.value
        elif isinstance(point, HistogramPoint):
            series.bounds = point.bounds
            series.counts = list(point.counts)
            series.sum = point.sum
            series.value = float(sum(point.counts))
        elif isinstance(point, ExponentialPoint):
            state = ExponentialState.of(point)
            state.limit(self.limits.exponential_max_buckets)
            series.extra = state
        else:
            series.extra = point.quantiles
            series.sum = point.sum
            series.value = float(point.count_value)

    def _accumulate(self, series: Series, point: Point, outcome: Outcome) -> bool:
        """Add a delta point; False (counted) when it cannot be added."""
        if isinstance(point, NumberPoint):
            series.value += point.value
        elif isinstance(point, HistogramPoint):
            if series.counts is None or point.bounds != series.bounds:
                outcome.reject(BOUNDS_MISMATCH)
                return False
            counts = series.counts
            for i, count in enumerate(point.counts):
                counts[i] += count
            series.sum += point.sum
            series.value += sum(point.counts)
        elif isinstance(point, ExponentialPoint):
            if not isinstance(series.extra, ExponentialState):
                outcome.reject(BOUNDS_MISMATCH)
                return False
            series.extra.add(point)
            series.extra.limit(self.limits.exponential_max_buckets)
        else:
            self._set(series, point)
        return True

    def _fold_into_overflow(
        self,
        family: Family,
        point: Point,
        temporality: Temporality,
        now: float,
        outcome: Outcome,
        key: str = "",
    ) -> None:
        """Add what ``point`` contributes to the family's overflow series (totals stay right)."""
        overflow = family.overflow
        if overflow is None:
            if self.is_full:
                outcome.reject(STORE_FULL)
                return
            overflow = family.overflow = Series(OVERFLOW_LABELS, point.start_ns, point.time_ns, now)
            self._size += 1
        contribution = self._contribution(family, point, temporality, now, outcome, key)
        if contribution is None:
            return
        fresh = overflow.counts is None and overflow.extra is None and not overflow.value
        if fresh or temporality is Temporality.GAUGE:
            self._set(overflow, contribution)  # gauges and summaries show the last value
        elif not self._accumulate(overflow, contribution, outcome):
            return
        overflow.time = max(overflow.time, point.time_ns)
        overflow.seen = now
        outcome.accepted += 1

    def _contribution(
        self,
        family: Family,
        point: Point,
        temporality: Temporality,
        now: float,
        outcome: Outcome,
        key: str = "",
    ) -> Point | None:
        """The increase a point brings: itself for deltas, the change since the last one else.

        ``key`` tells apart the streams of one label set (a worker's, see `_worker_point`).
        """
        key = point.labels + key
        last = family.overflowed.get(key)
        if last is None:
            outcome.overflowed[family.descriptor.name] = (
                outcome.overflowed.get(family.descriptor.name, 0) + 1
            )
            if len(family.overflowed) < self.limits.max_series:
                last = Series(point.labels, point.start_ns, point.time_ns, now)
                family.overflowed[key] = last
                if temporality is not Temporality.DELTA:
                    self._set(last, point)
            return point
        if temporality is not Temporality.CUMULATIVE or isinstance(point, SummaryPoint):
            return point
        if point.time_ns < last.time:
            outcome.reject(OUT_OF_ORDER)
            return None
        increase: Point
        if isinstance(point, ExponentialPoint):
            increase = _exponential_increase(last, point)
        else:
            increase = _increase(last, point, family.descriptor.kind is not Kind.GAUGE)
        last.time = point.time_ns
        last.start = max(last.start, point.start_ns)
        self._set(last, point)
        return increase

    # ----------------------------------------------------------------- workers

    def _worker(self, metric: Metric, now: float) -> Worker | None:
        key = (metric.source, metric.worker)
        worker = self.workers.get(key)
        if worker is None:
            if len(self.workers) >= MAX_SOURCES:
                return None
            worker = self.workers[key] = Worker(metric.source, now)
        worker.seen = now
        return worker

    def _apply_worker_metric(
        self, family: Family, metric: Metric, now: float, outcome: Outcome
    ) -> None:
        """Apply the points of one worker's metric to the pod-level series."""
        worker = self._worker(metric, now)
        if worker is None:
            for _ in metric.points:
                outcome.reject(STORE_FULL)
            return
        mode = FOLD
        if metric.temporality is Temporality.GAUGE and family.descriptor.kind is Kind.GAUGE:
            mode = self.limits.worker_gauges
        key, monotonic = metric.worker, family.descriptor.kind is Kind.COUNTER
        cumulative = metric.temporality is Temporality.CUMULATIVE
        versions, epoch, shift = family.versions, self.epoch, CHUNK_SHIFT  # (`Family.touch`)
        for point in metric.points:
            series = family.series.get(point.labels)
            if (
                series is not None
                and series.combine is FOLD
                and cumulative
                and type(point) is NumberPoint
                and series.workers is not None
            ):  # the common case, inline: a worker's next cumulative counter value
                stream = series.workers.get(key)
                if stream is not None:
                    if point.time_ns < stream.time or point.start_ns < stream.start:
                        outcome.reject(OUT_OF_ORDER)
                        continue
                    value = point.value
                    increase = value - stream.value
                    if point.start_ns > stream.start or (monotonic and increase < 0):
                        increase = value  # a reset: all of it is new
                        stream.start = point.start_ns
                    series.value += increase
                    stream.value = value
                    stream.time = point.time_ns
                    if point.time_ns > series.time:
                        series.time = point.time_ns
                    series.seen = now
                    versions[series.seq >> shift] = epoch
                    outcome.accepted += 1
                    continue
            if mode == "each" and not metric.worker_labelled:
                point = point._replace(labels=with_label(point.labels, WORKER_LABEL, metric.worker))
                series = family.series.get(point.labels)
            if series is None:
                if len(family.series) >= self.limits.max_series_per_metric:
                    stream_key = OVERFLOWED_STREAM + key
                    self._fold_into_overflow(
                        family, point, metric.temporality, now, outcome, stream_key
                    )
                    if point.labels + stream_key in family.overflowed:
                        worker.streams.add((family.descriptor.name, point.labels + stream_key))
                    continue
                if self.is_full or self.streams >= self.limits.max_series:
                    outcome.reject(STORE_FULL)
                    continue
                series = Series(point.labels, point.start_ns, point.time_ns, now)
                series.workers = {}
                series.combine = mode
                family.insert(series, self.epoch)
                self._size += 1
            elif series.workers is None:  # a series a worker-less resource writes too
                outcome.reject(TYPE_CONFLICT)
                continue
            if not self._worker_point(series, point, metric, worker, outcome):
                if not series.workers:  # a new series whose first point was refused
                    family.pop(point.labels, self.epoch)
                    self._size -= 1
                continue
            series.seen = now
            family.touch(series, self.epoch)
            outcome.accepted += 1

    def _worker_point(
        self, series: Series, point: Point, metric: Metric, worker: Worker, outcome: Outcome
    ) -> bool:
        """Apply one worker's point to its pod-level ``series``; False (counted) if refused."""
        streams = series.workers
        assert streams is not None
        stream = streams.get(metric.worker)
        refusal = _worker_refusal(series, stream, point, metric.temporality)
        if refusal is not None:
            outcome.reject(refusal)
            return False
        if stream is None:
            if self.streams >= self.limits.max_series:
                outcome.reject(STORE_FULL)
                return False
            stream = streams[metric.worker] = Series(point.labels, point.start_ns, 0, 0.0)
            self.streams += 1
            worker.streams.add((metric.descriptor.name, point.labels))
            fresh = True
        else:
            fresh = False
        if series.combine != FOLD:
            assert isinstance(point, NumberPoint)
            stream.value = point.value
            series.value = _combined(series, point.value)
        elif isinstance(point, SummaryPoint):
            count, total = float(point.count_value), point.sum
            if not fresh and point.start_ns <= stream.start and count >= stream.value:
                count, total = count - stream.value, total - stream.sum
            stream.value, stream.sum = float(point.count_value), point.sum
            series.value += count
            series.sum += total
            series.extra = point.quantiles
        elif metric.temporality is Temporality.DELTA:
            self._add_increase(series, point, outcome)
        else:
            increase: Point = point
            if not fresh:
                if isinstance(point, ExponentialPoint):
                    increase = _exponential_increase(stream, point)
                else:
                    monotonic = metric.descriptor.kind is Kind.COUNTER
                    increase = _increase(stream, point, monotonic)
            self._add_increase(series, increase, outcome)
            self._set(stream, point)
        stream.start = max(stream.start, point.start_ns)
        stream.time = point.time_ns
        series.time = max(series.time, point.time_ns)
        return True

    def _add_increase(self, series: Series, increase: Point, outcome: Outcome) -> None:
        """Add an increase to a pod-level series (its first one sets the buckets)."""
        first = (
            series.counts is None if isinstance(increase, HistogramPoint) else series.extra is None
        )
        if first and isinstance(increase, HistogramPoint | ExponentialPoint):
            self._set(series, increase)
        else:
            self._accumulate(series, increase, outcome)

    def _retire(self, key: tuple[SourceKey, str]) -> None:
        """Forget a worker: its streams go, its gauges leave their combinations."""
        worker = self.workers.pop(key)
        for name, labels in worker.streams:
            family = self.families.get(name)
            if family is not None and OVERFLOWED_STREAM in labels:
                family.overflowed.pop(labels, None)  # its last state in the overflow series
                continue
            series = family.series.get(labels) if family is not None else None
            if series is None or series.workers is None:
                continue  # expired meanwhile
            if series.workers.pop(key[1], None) is not None:
                self.streams -= 1
            if series.combine == FOLD:
                continue
            assert family is not None
            if series.workers:
                series.value = _combined(series, None)
                family.touch(series, self.epoch)
            else:  # a gauge no live worker reports any more
                family.pop(labels, self.epoch)
                self._size -= 1

    def retire_idle_workers(self, now: float | None = None) -> int:
        """Retire every worker silent for longer than ``worker_idle``; returns how many."""
        now = self._clock() if now is None else now
        self.epoch += 1
        deadline = now - self.limits.worker_idle
        idle = [key for key, worker in self.workers.items() if worker.seen < deadline]
        for key in idle:
            self._retire(key)
        if idle and self._on_retired is not None:
            self._on_retired(len(idle))
        return len(idle)

    def forget(self, name: str, labels: Labels) -> bool:
        """Remove one series (two relabelled series that collide: `sidecar.relabel.ingest`)."""
        family = self.families.get(name)
        self.epoch += 1
        gone = family.pop(labels, self.epoch) if family is not None else None
        if gone is None:
            return False
        if gone.workers:
            self.streams -= len(gone.workers)
        self._size -= 1
        return True

    def clear_series(self) -> int:
        """Forget every metric series and worker (``target_info`` and the per-source
        counts stay): the relabel rules changed (`sidecar.server`); how many went."""
        held = self._size
        self.epoch += 1
        self.families.clear()
        self.workers.clear()
        self._size = 0
        self.streams = 0
        return held

    # ------------------------------------------------------------------ expiry

    def expire(self, now: float | None = None) -> int:
        """Drop every series idle for longer than the TTL; returns how many went."""
        now = self._clock() if now is None else now
        self.epoch += 1
        if self.workers:
            self.retire_idle_workers(now)
        deadline = now - self.limits.series_ttl
        expired = 0
        for name in list(self.families):
            family = self.families[name]
            idle = [key for key, s in family.series.items() if s.seen < deadline]
            for key in idle:
                gone = family.pop(key, self.epoch)
                if gone is not None and gone.workers:
                    self.streams -= len(gone.workers)
            expired += len(idle)
            if family.overflow is not None and family.overflow.seen < deadline:
                family.overflow = None
                family.overflowed.clear()
                expired += 1
            if not family.series and family.overflow is None:
                del self.families[name]
        self._size -= expired
        idle_targets = [key for key, seen in self.targets.items() if seen < deadline]
        for key in idle_targets:
            del self.targets[key]
        for source in [k for k, p in self.sources.items() if p.seen < deadline]:
            del self.sources[source]  # bookkeeping, not a series: not counted as expired
        expired += len(idle_targets)
        if expired and self._on_expired is not None:
            self._on_expired(expired)
        return expired


def _worker_refusal(
    series: Series, stream: Series | None, point: Point, temporality: Temporality
) -> str | None:
    """Why a worker's point cannot be applied (None when it can); checked before any write."""
    bounds = point.bounds if isinstance(point, HistogramPoint) else None
    if bounds is not None and series.counts is not None and bounds != series.bounds:
        return BOUNDS_MISMATCH
    if (bounds is not None and isinstance(series.extra, ExponentialState)) or (
        isinstance(point, ExponentialPoint) and series.counts is not None
    ):  # explicit and exponential buckets do not add up
        return BOUNDS_MISMATCH
    if stream is None:
        return None
    if point.time_ns < stream.time or point.start_ns < stream.start:
        return OUT_OF_ORDER
    if temporality is Temporality.DELTA and (
        point.time_ns <= stream.time or (point.start_ns and point.start_ns < stream.time)
    ):
        return OUT_OF_ORDER
    return None


def _combined(series: Series, latest: float | None) -> float:
    """A worker-fed gauge's value: its live workers' values combined (``latest``: the
    value just written, which ``last`` shows; None after a retirement)."""
    assert series.workers is not None
    values = [stream.value for stream in series.workers.values()]
    if series.combine == "max":
        return max(values)
    if series.combine == "min":
        return min(values)
    if series.combine in ("last", "each"):
        if latest is not None:
            return latest
        return max(series.workers.values(), key=lambda stream: stream.time).value
    return sum(values)


_LABEL_PAIR = re.compile(r'([^=,]+)="((?:[^"\\]|\\.)*)"')


def with_label(labels: Labels, name: str, value: str) -> Labels:
    """``labels`` with ``name="value"`` added in sorted place (replacing one of that name)."""
    pairs = {m.group(1): m.group(0) for m in _LABEL_PAIR.finditer(labels)}
    pairs[name] = f'{name}="{escape_label_value(value)}"'
    return ",".join(pairs[key] for key in sorted(pairs))


def _increase(last: Series, point: NumberPoint | HistogramPoint, monotonic: bool) -> Point:
    """The change from ``last`` to ``point``; after a reset (or a counter going down), all of it."""
    reset = point.start_ns > last.start
    if isinstance(point, NumberPoint):
        delta = point.value - last.value
        if reset or (monotonic and delta < 0):
            delta = point.value
        return NumberPoint(point.labels, point.start_ns, point.time_ns, delta)
    if last.counts is None or point.bounds != last.bounds or reset:
        return point
    counts = tuple(c - p for c, p in zip(point.counts, last.counts, strict=True))
    if any(c < 0 for c in counts):
        return point
    return HistogramPoint(
        point.labels, point.start_ns, point.time_ns, point.bounds, counts, point.sum - last.sum
    )


def _exponential_increase(last: Series, point: ExponentialPoint) -> ExponentialPoint:
    """The change from ``last`` to ``point`` at their common scale; after a reset, all of it."""
    before = last.extra
    if not isinstance(before, ExponentialState) or point.start_ns > last.start:
        return point
    now = ExponentialState.of(point)
    before = replace(before, positive=dict(before.positive), negative=dict(before.negative))
    scale = min(before.scale, now.scale)
    before.downscale(before.scale - scale)
    now.downscale(now.scale - scale)
    positive = _subtract(now.positive, before.positive)
    negative = _subtract(now.negative, before.negative)
    zero = now.zero_count - before.zero_count
    if positive is None or negative is None or zero < 0:
        return point  # went down: a reset after all
    return point._replace(
        scale=scale, zero_count=zero, positive=positive, negative=negative,
        sum=now.sum - before.sum, count_value=now.count - before.count,
    )  # fmt: skip


def _subtract(now: dict[int, int], before: dict[int, int]) -> dict[int, int] | None:
    out = dict(now)
    for index, count in before.items():
        out[index] = out.get(index, 0) - count
        if out[index] < 0:
            return None
    return {i: c for i, c in out.items() if c}
