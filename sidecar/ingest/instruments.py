"""The ingest side's self metrics (design §6), as OpenTelemetry instruments on the module meter.

The OpenTelemetry Prometheus exporter names them: ``sidecar.otlp.requests`` becomes
``sidecar_otlp_requests_total`` and so on (a test checks every exposed name). The
proxy records ``sidecar_cardinality_overflow_total`` too: `cardinality_overflow` creates
it with the exact name, unit and description both sides must use, so the SDK hands back
one instrument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Counter, Meter, Observation

from sidecar.known_labels import MERGE_CONFLICT_KINDS, OTLP_REJECT_REASONS, zeroed
from sidecar.observability import cardinality_overflow

__all__ = ["IngestInstruments", "SeriesGauge", "cardinality_overflow", "merge_conflicts"]

SOURCE_INGEST = "ingest"


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


@dataclass(frozen=True, slots=True)
class IngestInstruments:
    """Counters the receiver and the store record into."""

    requests: Counter
    received: Counter
    rejected: Counter
    expired: Counter
    overflow: Counter
    workers_retired: Counter

    @classmethod
    def create(
        cls,
        meter: Meter,
        series_count: Callable[[], int],
        series: SeriesGauge | None = None,
        *,
        workers: Callable[[], int] = lambda: 0,
    ) -> IngestInstruments:
        """Create the instruments; ``series_count`` feeds ``sidecar_series{source="ingest"}``.

        Args:
            meter: the sidecar module's meter.
            series_count: how many series the store holds.
            series: the shared `SeriesGauge`; a new one (on ``meter``) when None.
            workers: how many worker processes are live (``sidecar_ingest_workers``).
        """
        (series or SeriesGauge(meter)).add_source(SOURCE_INGEST, series_count)

        def observe_workers(_options: CallbackOptions) -> Iterable[Observation]:
            yield Observation(workers())

        meter.create_observable_gauge(
            "sidecar.ingest.workers",
            callbacks=[observe_workers],
            description="Worker processes whose streams are aggregated (ingest.workers)",
        )
        return cls(
            requests=meter.create_counter(
                "sidecar.otlp.requests", description="OTLP/HTTP export requests, by status code"
            ),
            received=meter.create_counter(
                "sidecar.otlp.data_points.received", description="OTLP data points received"
            ),
            rejected=zeroed(
                meter.create_counter(
                    "sidecar.otlp.data_points.rejected",
                    description="OTLP data points rejected, by reason",
                ),
                "reason",
                OTLP_REJECT_REASONS,
            ),
            expired=meter.create_counter(
                "sidecar.series.expired",
                description="Ingested series dropped after series_ttl idle",
            ),
            overflow=cardinality_overflow(meter),
            workers_retired=meter.create_counter(
                "sidecar.ingest.workers.retired",
                description="Worker processes retired after ingest.workers.idle silent",
            ),
        )
