"""The ingest side's self metrics (design §6), as OpenTelemetry instruments on the module meter.

The OpenTelemetry Prometheus exporter names them: ``sidecar.otlp.requests`` becomes
``sidecar_otlp_requests_total`` and so on (a test checks every exposed name). The ones
other subsystems record into as well (``sidecar_cardinality_overflow_total``,
``sidecar_series{source}``) are created in `sidecar.instruments`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Counter, Meter, Observation

from sidecar.instruments import SeriesGauge, cardinality_overflow
from sidecar.known_labels import OTLP_REJECT_REASONS, zeroed

__all__ = ["IngestInstruments"]

SOURCE_INGEST = "ingest"


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
