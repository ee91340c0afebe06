"""Per-route traffic for the status page, sampled by the sidecar itself.

Every few seconds `TrafficSampler.sample` reads the proxy's own instruments through the
sidecar's collector (``http_request_total`` and the ``http_request_duration_milliseconds``
histogram, the same series ``/metrics`` serves) and keeps per-route cumulative totals in
a bounded ring. Rates, error ratios and quantiles are differences between two entries
of the ring, computed when the page is rendered: the proxy's hot path pays nothing
beyond the counter increments it already does.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial

from prometheus_client.registry import Collector

from sidecar.offloop import off_loop

__all__ = [
    "RouteStats",
    "RouteTotals",
    "Snapshot",
    "TrafficSampler",
    "histogram_quantile",
    "route_totals",
]

REQUESTS = "http_request_total"
BUCKETS = "http_request_duration_milliseconds_bucket"
FAMILIES = frozenset({"http_request", "http_request_total", "http_request_duration_milliseconds"})
SAMPLE_INTERVAL_S = 5.0
HISTORY_S = 15 * 60.0
WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class RouteTotals:
    """Cumulative counts of one route: requests, 5xx answers, duration buckets."""

    requests: float = 0.0
    server_errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()  # (upper bound ms, cumulative count)


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """Every route's totals at one moment (monotonic seconds)."""

    at: float
    routes: Mapping[str, RouteTotals]


@dataclass(frozen=True, slots=True)
class RouteStats:
    """A route between two snapshots: requests/s, 5xx ratio, p50 and p99 in ms."""

    rate: float
    error_ratio: float
    p50: float
    p99: float


@dataclass(slots=True)
class _Accumulator:
    requests: float = 0.0
    server_errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    def freeze(self) -> RouteTotals:
        ordered = tuple(sorted(self.buckets.items()))
        return RouteTotals(self.requests, self.server_errors, ordered)


def route_totals(collector: Collector) -> dict[str, RouteTotals]:
    """Sum the proxy's series per ``path`` (over methods and statuses)."""
    routes: dict[str, _Accumulator] = {}
    for family in collector.collect():
        if family.name not in FAMILIES:
            continue
        for sample in family.samples:
            if sample.name not in (REQUESTS, BUCKETS) or "path" not in sample.labels:
                continue
            acc = routes.setdefault(sample.labels["path"], _Accumulator())
            if sample.name == REQUESTS:
                acc.requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    acc.server_errors += sample.value
            else:
                bound = float(sample.labels["le"])
                acc.buckets[bound] = acc.buckets.get(bound, 0.0) + sample.value
    return {path: acc.freeze() for path, acc in routes.items()}


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile`` on (upper bound, cumulative count) pairs.

    Linear interpolation inside the bucket holding the rank; NaN without observations;
    the highest finite bound when the rank falls into the ``+Inf`` bucket.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return math.nan
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def _delta_buckets(
    new: tuple[tuple[float, float], ...], old: tuple[tuple[float, float], ...]
) -> list[tuple[float, float]]:
    before = dict(old)
    return [(bound, max(count - before.get(bound, 0.0), 0.0)) for bound, count in new]


def stats_between(old: RouteTotals, new: RouteTotals, seconds: float) -> RouteStats:
    """What happened on a route between two cumulative readings ``seconds`` apart."""
    requests = max(new.requests - old.requests, 0.0)
    errors = max(new.server_errors - old.server_errors, 0.0)
    buckets = _delta_buckets(new.buckets, old.buckets)
    return RouteStats(
        rate=requests / seconds if seconds > 0 else 0.0,
        error_ratio=errors / requests if requests else 0.0,
        p50=histogram_quantile(0.5, buckets),
        p99=histogram_quantile(0.99, buckets),
    )


class TrafficSampler:
    """A bounded ring of per-route snapshots, filled every ``interval`` seconds."""

    def __init__(
        self,
        collector: Collector,
        *,
        interval: float = SAMPLE_INTERVAL_S,
        history: float = HISTORY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.collector = collector
        self.interval = interval
        self.ring: deque[Snapshot] = deque(maxlen=int(history / interval) + 1)
        self._clock = clock
        self._series: dict[str, list[RouteStats]] = {}  # `series` of the ring as it was
        self._series_of: tuple[int, Snapshot, Snapshot] | None = None

    def sample(self) -> Snapshot:
        """Read the collector once and append the snapshot to the ring."""
        snapshot = Snapshot(self._clock(), route_totals(self.collector))
        self.ring.append(snapshot)
        return snapshot

    async def sample_off_loop(self) -> Snapshot:
        """`sample`, reading a `SnapshotRegistry` (5-30 ms for 100 proxied routes) and
        summing in a worker thread (`sidecar.offloop`)."""
        snapshot_of = getattr(self.collector, "snapshot", None)
        if snapshot_of is None:
            return self.sample()
        at = self._clock()
        taken: Collector = snapshot_of()
        snapshot = Snapshot(at, await off_loop((), partial(route_totals, taken)))
        self.ring.append(snapshot)
        return snapshot

    def window(self, seconds: float = WINDOW_S) -> dict[str, RouteStats]:
        """Per-route stats over (about) the last ``seconds``, from the ring."""
        if len(self.ring) < 2:
            return {}
        newest = self.ring[-1]
        oldest = next(
            (s for s in self.ring if newest.at - s.at <= seconds + self.interval / 2),
            self.ring[0],
        )
        if oldest is newest:
            oldest = self.ring[-2]
        span = newest.at - oldest.at
        empty = RouteTotals()
        return {
            path: stats_between(oldest.routes.get(path, empty), totals, span)
            for path, totals in sorted(newest.routes.items())
        }

    def series(self, path: str) -> list[RouteStats]:
        """The route's stats between consecutive snapshots, oldest first (sparklines);
        kept until the ring changes (the page asks for every route at every fetch, the
        ring changes every ``interval``)."""
        ring = self.ring
        state = (len(ring), ring[0], ring[-1]) if ring else None
        if state != self._series_of:  # (snapshots compare by identity: eq=False)
            self._series.clear()
            self._series_of = state
        stats = self._series.get(path)
        if stats is None:
            empty = RouteTotals()
            pairs = zip(list(ring)[:-1], list(ring)[1:], strict=True)
            stats = self._series[path] = [
                stats_between(a.routes.get(path, empty), b.routes.get(path, empty), b.at - a.at)
                for a, b in pairs
            ]
        return stats
