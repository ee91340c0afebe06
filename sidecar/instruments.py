"""Instruments that several subsystems record into, created in one place.

The OpenTelemetry SDK hands back one instrument for a name only when name, unit and
description match; creating a shared instrument through its function here keeps them
identical for every subsystem that records into it:

- ``sidecar_cardinality_overflow_total{metric}``: the proxy's route labels and the
  ingest store (`cardinality_overflow`);
- ``sidecar_merge_conflicts_total{kind}``: the unified ``/metrics`` (`merge_conflicts`);
- ``sidecar_series{source}``: ingest and merge targets (`SeriesGauge`, one per meter);
- ``sidecar_render_cache_bytes``, ``sidecar_render_cache_{hits,misses}_total``: the
  render cache the ingested families' text and protobuf answers are built from
  (`render_cache`; `sidecar.rendercache`).

Instruments only one subsystem records into stay with it (e.g.
`sidecar.ingest.instruments`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Counter, Meter, Observation

from sidecar.known_labels import MERGE_CONFLICT_KINDS, zeroed

__all__ = ["CacheCounts", "SeriesGauge", "cardinality_overflow", "merge_conflicts", "render_cache"]


def cardinality_overflow(meter: Meter) -> Counter:
    """``sidecar_cardinality_overflow_total{metric}``: one instrument for every limit.

    The proxy's route labels and the ingest store both count into it; creating it
    through this one function keeps name and description identical, so the SDK hands
    both the same instrument instead of a conflicting duplicate.
    """
    return meter.create_counter(
        "sidecar.cardinality.overflow",
        description="New series or label values folded into an overflow by a cardinality limit",
    )


def merge_conflicts(meter: Meter) -> Counter:
    """``sidecar_merge_conflicts_total{kind}`` (design §9)."""
    counter = meter.create_counter(
        "sidecar.merge.conflicts",
        description="Series or families dropped from /metrics because a higher source had them",
    )
    return zeroed(counter, "kind", MERGE_CONFLICT_KINDS)


class SeriesGauge:
    """``sidecar_series{source}``: one observable gauge fed by any number of sources.

    The SDK keeps only the first callback of an instrument name, so every source (ingest,
    merge targets) registers here, on the one object the server creates per meter.
    """

    def __init__(self, meter: Meter) -> None:
        self._sources: dict[str, Callable[[], int]] = {}
        meter.create_observable_gauge(
            "sidecar.series", callbacks=[self._observe], description="Series held, by source"
        )

    def add_source(self, source: str, count: Callable[[], int]) -> None:
        """Report ``count()`` as ``sidecar_series{source=...}`` from now on."""
        self._sources[source] = count

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        for source, count in self._sources.items():
            yield Observation(count(), {"source": source})


class CacheCounts(Protocol):
    """What `render_cache` reports (`sidecar.rendercache.RenderCache`)."""

    @property
    def bytes(self) -> int:
        """Compressed bytes held."""
        ...

    @property
    def hits(self) -> int:
        """Pieces taken from the cache."""
        ...

    @property
    def misses(self) -> int:
        """Pieces rendered because none was kept for their version."""
        ...


def render_cache(meter: Meter, cache: CacheCounts) -> None:
    """``sidecar_render_cache_bytes`` (gauge), ``sidecar_render_cache_hits_total`` and
    ``sidecar_render_cache_misses_total`` (counters): three series, read from ``cache``
    when the sidecar's own metrics are collected (nothing on the render path)."""

    def held(_options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(cache.bytes)

    def hits(_options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(cache.hits)

    def misses(_options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(cache.misses)

    meter.create_observable_gauge(
        "sidecar.render_cache.bytes",
        callbacks=[held],
        description="Compressed bytes the render cache holds (ingested series' pieces)",
    )
    meter.create_observable_counter(
        "sidecar.render_cache.hits",
        callbacks=[hits],
        description="Render cache pieces a scrape took as they were kept",
    )
    meter.create_observable_counter(
        "sidecar.render_cache.misses",
        callbacks=[misses],
        description="Render cache pieces a scrape rendered (new or changed series)",
    )
