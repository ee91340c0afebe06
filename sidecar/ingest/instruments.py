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

__all__ = ["IngestInstruments", "cardinality_overflow", "merge_conflicts"]

SOURCE_INGEST = {"source": "ingest"}
OVERFLOW_DESCRIPTION = "New series folded into an overflow series by a cardinality limit"


def cardinality_overflow(meter: Meter) -> Counter:
    """``sidecar_cardinality_overflow_total{metric}``, shared with the proxy's route labels."""
    return meter.create_counter(
        "sidecar.cardinality.overflow",
        description=OVERFLOW_DESCRIPTION,
    )


def merge_conflicts(meter: Meter) -> Counter:
    """``sidecar_merge_conflicts_total{kind}`` (design §9)."""
    return meter.create_counter(
        "sidecar.merge.conflicts",
        description="Series or families dropped from /metrics because a higher source had them",
    )


@dataclass(frozen=True, slots=True)
class IngestInstruments:
    """Counters the receiver and the store record into."""

    requests: Counter
    received: Counter
    rejected: Counter
    expired: Counter
    overflow: Counter

    @classmethod
    def create(cls, meter: Meter, series_count: Callable[[], int]) -> IngestInstruments:
        """Create the instruments; ``series_count`` feeds ``sidecar_series{source="ingest"}``."""

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            yield Observation(series_count(), SOURCE_INGEST)

        meter.create_observable_gauge(
            "sidecar.series", callbacks=[observe], description="Series held, by source"
        )
        return cls(
            requests=meter.create_counter(
                "sidecar.otlp.requests", description="OTLP/HTTP export requests, by status code"
            ),
            received=meter.create_counter(
                "sidecar.otlp.data_points.received", description="OTLP data points received"
            ),
            rejected=meter.create_counter(
                "sidecar.otlp.data_points.rejected",
                description="OTLP data points rejected, by reason",
            ),
            expired=meter.create_counter(
                "sidecar.series.expired",
                description="Ingested series dropped after series_ttl idle",
            ),
            overflow=cardinality_overflow(meter),
        )
