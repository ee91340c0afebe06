"""`EventInspector`: the event-aware metrics of the gateway's ingest routes (design §7).

The proxy calls it with whole bodies it has already read and forwards those bodies
unchanged whatever happens here: the inspector only counts, never raises, and never
touches the proxy's internals. Instruments are created on the meter it is given, so the
OpenTelemetry Prometheus exporter shows them as::

    causality_events_total{type}                  events by payload type ("none" when empty)
    causality_event_batch_size                    histogram of events per batch request
    causality_events_duplicate_total{type}        idempotency key seen within events.dedup_window
    causality_events_missing_idempotency_key_total
    causality_events_rejected_total               rejected_count of the gateway's batch answers
    causality_event_decode_errors_total{reason}   bodies not decoded (codec.DecodeReason)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from opentelemetry.metrics import (
    CallbackOptions,
    Histogram,
    Meter,
    ObservableCounter,
    Observation,
)

from sidecar.config import EventsConfig
from sidecar.events.codec import (
    NO_TYPE,
    PAYLOAD_TYPES,
    DecodeError,
    DecodeReason,
    EventSummary,
    decode_batch_response,
    summarize_batch_request,
    summarize_ingest_request,
)
from sidecar.events.dedup import IdempotencyMemory

__all__ = ["BATCH_SIZE_BUCKETS", "EventInspector", "EventInstruments", "EventTally"]

ObservableCallback = Callable[[CallbackOptions], Iterable[Observation]]

log = logging.getLogger(__name__)

BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)

# Attribute sets are built once, not per observation.
_TYPE_ATTRIBUTES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {name: MappingProxyType({"type": name}) for name in (*PAYLOAD_TYPES, NO_TYPE)}
)
_REASON_ATTRIBUTES: Mapping[DecodeReason, Mapping[str, str]] = MappingProxyType(
    {reason: MappingProxyType({"reason": reason.value}) for reason in DecodeReason}
)


class EventTally:
    """Cumulative counts kept as plain ints, read by the observable instruments.

    Counting per event through the SDK's synchronous ``add()`` (attribute hashing,
    measurement objects) cost more than decoding the event; here the hot path is a
    dict increment and the SDK reads the totals once per collection.
    """

    __slots__ = ("decode_errors", "duplicates", "events", "missing_key", "rejected")

    def __init__(self) -> None:
        self.events: dict[str, int] = {}
        self.duplicates: dict[str, int] = {}
        self.decode_errors: dict[DecodeReason, int] = {}
        self.missing_key = 0
        self.rejected = 0


def _by_type(counts: Callable[[], dict[str, int]]) -> ObservableCallback:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        # tuple() copies in one C call: safe against the loop thread adding a type meanwhile
        return [Observation(n, _TYPE_ATTRIBUTES[kind]) for kind, n in tuple(counts().items())]

    return observe


def _total(count: Callable[[], int]) -> ObservableCallback:
    return lambda _: [Observation(count())]


@dataclass(frozen=True, slots=True)
class EventInstruments:
    """The event metrics on one meter: five observable counters and a histogram."""

    tally: EventTally
    batch_size: Histogram
    counters: tuple[ObservableCounter, ...]

    @classmethod
    def create(cls, meter: Meter) -> EventInstruments:
        """Create the instruments on `meter` (the exporter adds the ``_total`` suffixes)."""
        tally = EventTally()

        def decode_errors(_: CallbackOptions) -> Iterable[Observation]:
            counts = tuple(tally.decode_errors.items())
            return [Observation(n, _REASON_ATTRIBUTES[reason]) for reason, n in counts]

        counters = (
            meter.create_observable_counter(
                "causality_events",
                callbacks=[_by_type(lambda: tally.events)],
                description="Causality events seen on the ingest routes, by payload type.",
            ),
            meter.create_observable_counter(
                "causality_events_duplicate",
                callbacks=[_by_type(lambda: tally.duplicates)],
                description="Events whose idempotency key was seen within the dedup window.",
            ),
            meter.create_observable_counter(
                "causality_events_missing_idempotency_key",
                callbacks=[_total(lambda: tally.missing_key)],
                description="Events sent without an idempotency key.",
            ),
            meter.create_observable_counter(
                "causality_events_rejected",
                callbacks=[_total(lambda: tally.rejected)],
                description="Events the gateway rejected, from its batch responses.",
            ),
            meter.create_observable_counter(
                "causality_event_decode_errors",
                callbacks=[decode_errors],
                description="Ingest request or batch response bodies not decoded, by reason.",
            ),
        )
        batch_size = meter.create_histogram(
            "causality_event_batch_size",
            description="Events per batch ingest request.",
            explicit_bucket_boundaries_advisory=list(BATCH_SIZE_BUCKETS),
        )
        return cls(tally, batch_size, counters)


class EventInspector:
    """Counts the events of the gateway's ingest routes; never raises, never blocks.

    Args:
        config: the ``events`` section (paths, body limit, dedup window and bound).
        meter: where the instruments are created.
        clock: monotonic seconds, for the dedup window (tests pass a fake one).
    """

    def __init__(
        self,
        config: EventsConfig,
        meter: Meter,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ingest_path = config.ingest_path
        self._batch_path = config.batch_path
        self._max_body_bytes = config.max_body_bytes
        self._clock = clock
        self._memory = IdempotencyMemory(config.dedup_window, config.dedup_max_keys)
        self._instruments = EventInstruments.create(meter)
        self._tally = self._instruments.tally

    def wants_request(self, method: str, path: str) -> bool:
        """True for a POST to the ingest or batch path (the request path, no query)."""
        return method == "POST" and (path == self._ingest_path or path == self._batch_path)

    def wants_response(self, path: str) -> bool:
        """True for the batch route, whose response carries ``rejected_count``."""
        return path == self._batch_path

    def inspect_request(self, path: str, content_type: str | None, body: bytes) -> None:
        """Decode a whole request body and record its events; never raises."""
        if len(body) > self._max_body_bytes:
            self.request_skipped(path)
            return
        is_batch = path == self._batch_path
        try:
            summarize = summarize_batch_request if is_batch else summarize_ingest_request
            self._record(summarize(body, content_type, self._max_body_bytes), is_batch)
        except DecodeError as exc:
            self._count_decode_error(exc.reason, path, exc)
        except Exception as exc:  # a bug here must never reach the proxy
            log.exception("event inspection failed on %s", path)
            self._count_decode_error(DecodeReason.INTERNAL, path, exc)

    def request_skipped(self, path: str) -> None:
        """Count a body over ``events.max_body_bytes`` that was streamed uninspected."""
        self._count_decode_error(DecodeReason.BODY_TOO_LARGE, path, None)

    def inspect_response(
        self, path: str, status: int, content_type: str | None, body: bytes
    ) -> None:
        """Add a 2xx batch response's ``rejected_count``; never raises."""
        if path != self._batch_path or not 200 <= status < 300:
            return
        try:
            rejected = decode_batch_response(body, content_type, self._max_body_bytes)
        except DecodeError as exc:
            self._count_decode_error(exc.reason, path, exc)
            return
        except Exception as exc:
            log.exception("event response inspection failed on %s", path)
            self._count_decode_error(DecodeReason.INTERNAL, path, exc)
            return
        self._tally.rejected += rejected

    def _record(self, summary: EventSummary, is_batch: bool) -> None:
        """Add one body's events to the tally: per distinct type, never per event."""
        tally = self._tally
        per_type = tally.events
        for kind, count in summary.types.items():
            per_type[kind] = per_type.get(kind, 0) + count
        found = self._memory.find_duplicates(summary.keys, self._clock())
        if found:
            duplicates = tally.duplicates
            for kind in summary.types_of(found):
                duplicates[kind] = duplicates.get(kind, 0) + 1
        tally.missing_key += summary.missing_keys
        if is_batch:
            self._instruments.batch_size.record(summary.count)

    def _count_decode_error(self, reason: DecodeReason, path: str, exc: Exception | None) -> None:
        log.debug("event body on %s not decoded: %s (%s)", path, reason.value, exc)
        errors = self._tally.decode_errors
        errors[reason] = errors.get(reason, 0) + 1
