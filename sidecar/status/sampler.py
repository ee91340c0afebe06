"""Per-route traffic for the status page, sampled by the sidecar itself.

Every few seconds `TrafficSampler.sample` reads the proxy's own instruments through the
sidecar's collector (``http_request_total`` and the ``http_request_duration_milliseconds``
histogram, the same series ``/metrics`` serves) and keeps per-route cumulative totals in
a bounded ring. Rates, error ratios and quantiles are differences between two entries
of the ring, computed when the page is rendered: the proxy's hot path pays nothing
beyond the counter increments it already does. A collection that a ``/metrics`` scrape
made within the last interval is read rather than collecting again
(`TrafficSampler.sample_off_loop`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise

from prometheus_client.registry import Collector

from sidecar.offloop import FrozenSource, off_loop

__all__ = [
    "RouteStats",
    "RouteTotals",
    "Snapshot",
    "Traffic",
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


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the status page shows of the ring: each route's stats over the window and,
    per route, the stats between consecutive snapshots (its sparklines), oldest first."""

    routes: Mapping[str, RouteStats]
    rate_history: Mapping[str, list[float]]
    p99_history: Mapping[str, list[float]]


_NO_TRAFFIC = Traffic({}, {}, {})
_EMPTY = RouteTotals()
_IDLE = RouteStats(0.0, 0.0, math.nan, math.nan)  # a route in neither of two snapshots


def window_of(ring: Sequence[Snapshot], interval: float, seconds: float) -> dict[str, RouteStats]:
    """Per-route stats over (about) the last ``seconds`` of ``ring``."""
    if len(ring) < 2:
        return {}
    newest = ring[-1]
    oldest = next((s for s in ring if newest.at - s.at <= seconds + interval / 2), ring[0])
    if oldest is newest:
        oldest = ring[-2]
    span = newest.at - oldest.at
    return {
        path: stats_between(oldest.routes.get(path, _EMPTY), totals, span)
        for path, totals in sorted(newest.routes.items())
    }


def _pair(old: Snapshot, new: Snapshot) -> dict[str, RouteStats]:
    """Every route's stats between two consecutive snapshots (routes of either)."""
    span = new.at - old.at
    return {
        path: stats_between(old.routes.get(path, _EMPTY), new.routes.get(path, _EMPTY), span)
        for path in {*old.routes, *new.routes}
    }


class TrafficSampler:
    """A bounded ring of per-route snapshots, filled every ``interval`` seconds.

    What the page shows changes only when a snapshot is added, so it is computed once per
    state of the ring (`traffic_off_loop`: in a worker thread), and the stats between two
    consecutive snapshots once per pair: a full ring (181 snapshots) of 100 routes is
    18,000 pairs of readings, ~0.5 s of CPU when they were all computed again."""

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
        self._pairs: dict[Snapshot, dict[str, RouteStats]] = {}  # by the newer snapshot
        self._traffic: tuple[tuple[int, Snapshot, Snapshot] | None, float, Traffic] | None = None
        self._computing = asyncio.Lock()
        self._read: float | None = None  # when the collection last read was made

    def sample(self) -> Snapshot:
        """Read the collector once and append the snapshot to the ring."""
        snapshot = Snapshot(self._clock(), route_totals(self.collector))
        self.ring.append(snapshot)
        return snapshot

    async def sample_off_loop(self) -> Snapshot:
        """`sample`, reading a `SnapshotRegistry` (5-30 ms for 100 proxied routes) and
        summing in a worker thread (`sidecar.offloop`). A collection a ``/metrics`` scrape
        made within the last interval, after the newest snapshot, is read instead of
        collecting again; the snapshot is dated when it was made."""
        snapshot_of = getattr(self.collector, "snapshot", None)
        if snapshot_of is None:
            return self.sample()
        at = self._clock()
        taken: Collector | None = None
        last = getattr(self.collector, "last", None)
        kept = last() if last is not None else None
        if kept is not None and kept[0] != self._read:  # (a collection is read once)
            age = time.monotonic() - kept[0]
            kept_at = at - age
            if age <= self.interval and (not self.ring or kept_at > self.ring[-1].at):
                at, taken = kept_at, FrozenSource(kept[1])
                self._read = kept[0]
        own = taken is None  # the sampler collects itself
        if taken is None:
            taken = snapshot_of()
        snapshot = Snapshot(at, await off_loop((), partial(route_totals, taken)))
        if own and last is not None:  # its own collection: not to be read again
            mine = last()
            self._read = mine[0] if mine is not None else None
        self.ring.append(snapshot)
        return snapshot

    def window(self, seconds: float = WINDOW_S) -> dict[str, RouteStats]:
        """Per-route stats over (about) the last ``seconds``, from the ring."""
        return window_of(tuple(self.ring), self.interval, seconds)

    def series(self, path: str) -> list[RouteStats]:
        """The route's stats between consecutive snapshots, oldest first (sparklines)."""
        return [self._pair_stats(a, b).get(path, _IDLE) for a, b in pairwise(tuple(self.ring))]

    def traffic(self, seconds: float = WINDOW_S) -> Traffic:
        """The window and every route's sparklines, kept until the ring changes."""
        ring, kept = self._kept(seconds)
        if kept is not None:
            return kept
        return self._keep(ring, seconds, self._compute(ring, seconds))

    async def traffic_off_loop(self, seconds: float = WINDOW_S) -> Traffic:
        """`traffic`, computed in a worker thread when the ring changed (one at a time)."""
        async with self._computing:
            ring, kept = self._kept(seconds)
            if kept is not None:
                return kept
            traffic = await off_loop((), partial(self._compute, ring, seconds))
            return self._keep(ring, seconds, traffic)

    def _kept(self, seconds: float) -> tuple[tuple[Snapshot, ...], Traffic | None]:
        """The ring now, and the figures kept for it (None: it changed since)."""
        ring = tuple(self.ring)
        kept = self._traffic
        if kept is not None and kept[0] == _state(ring) and kept[1] == seconds:
            return ring, kept[2]
        return ring, None

    def _keep(self, ring: tuple[Snapshot, ...], seconds: float, traffic: Traffic) -> Traffic:
        self._traffic = (_state(ring), seconds, traffic)
        return traffic

    def _pair_stats(self, old: Snapshot, new: Snapshot) -> dict[str, RouteStats]:
        stats = self._pairs.get(new)
        if stats is None:
            stats = self._pairs[new] = _pair(old, new)
        return stats

    def _compute(self, ring: tuple[Snapshot, ...], seconds: float) -> Traffic:
        """The page's figures for ``ring``; the pair cache gains the pairs of ``ring`` it
        lacked and loses those that left it."""
        if len(ring) < 2:
            return _NO_TRAFFIC
        routes = window_of(ring, self.interval, seconds)
        pairs = [self._pair_stats(a, b) for a, b in pairwise(ring)]
        for gone in self._pairs.keys() - set(ring[1:]):
            self._pairs.pop(gone, None)
        rates = {path: [p.get(path, _IDLE).rate for p in pairs] for path in routes}
        p99s = {path: [p.get(path, _IDLE).p99 for p in pairs] for path in routes}
        return Traffic(routes, rates, p99s)


def _state(ring: tuple[Snapshot, ...]) -> tuple[int, Snapshot, Snapshot] | None:
    """What tells two states of the ring apart (snapshots compare by identity)."""
    return (len(ring), ring[0], ring[-1]) if ring else None
