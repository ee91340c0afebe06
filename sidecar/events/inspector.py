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
    Meter,
    ObservableCounter,
    Observation,
)
from opentelemetry.sdk.metrics.view import View

from sidecar.batching import Attrs, BatchedHistogram, Batcher, MergeableHistogramAggregation
from sidecar.config import EventsConfig
from sidecar.events.codec import (
    NO_TYPE,
    PAYLOAD_TYPES,
    DecodeError,
    DecodeReason,
    Encoding,
    EventSummary,
    decode_batch_request,
    decode_batch_response,
    encoding_of,
    gunzip,
    summarize_ingest_request,
)
from sidecar.events.scan import (
    KINDS,
    BatchScanner,
    KeyMemory,
    new_batch_scanner,
    rejected_count,
)

__all__ = [
    "BATCH_SIZE",
    "BATCH_SIZE_BUCKETS",
    "EventInspector",
    "EventInstruments",
    "EventTally",
    "event_views",
]

ObservableCallback = Callable[[CallbackOptions], Iterable[Observation]]

log = logging.getLogger(__name__)

BATCH_SIZE = "causality_event_batch_size"
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
_NO_ATTRIBUTES: Attrs = {}
_CONTENT_TYPES_KEPT = 16  # Content-Type values whose encoding the inspector remembers

# Attribute sets are built once, not per observation.
_TYPE_ATTRIBUTES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {name: MappingProxyType({"type": name}) for name in (*PAYLOAD_TYPES, NO_TYPE)}
)
_REASON_ATTRIBUTES: Mapping[DecodeReason, Mapping[str, str]] = MappingProxyType(
    {reason: MappingProxyType({"reason": reason.value}) for reason in DecodeReason}
)


class EventTally:
    """Cumulative counts, read by the observable instruments at each collection.

    Counting per event through the SDK's synchronous ``add()`` (attribute hashing,
    measurement objects) cost more than decoding the event. Batches the C scanner reads
    are counted in its own counters (`scanner`); bodies the exact decoder reads (single
    events, batches off the plain path) in plain dicts here; a collection adds the two.
    """

    __slots__ = ("decode_errors", "duplicates", "events", "missing_key", "rejected", "scanner")

    def __init__(self, size_bounds: tuple[float, ...] | None = None) -> None:
        self.scanner: BatchScanner = new_batch_scanner(size_bounds)
        self.events: dict[str, int] = {}
        self.duplicates: dict[str, int] = {}
        self.decode_errors: dict[DecodeReason, int] = {}
        self.missing_key = 0
        self.rejected = 0

    def totals(self) -> tuple[dict[str, int], dict[str, int], int]:
        """(events by type, duplicates by type, events without a key), both sources."""
        scanned, duplicated, missing = self.scanner.totals()
        # dict() and tuple() copy in one C call: safe against the loop thread meanwhile
        events, duplicates = dict(self.events), dict(self.duplicates)
        for kind, n, d in zip(KINDS, scanned, duplicated, strict=True):
            if n:
                events[kind] = events.get(kind, 0) + n
            if d:
                duplicates[kind] = duplicates.get(kind, 0) + d
        return events, duplicates, self.missing_key + missing


def _by_type(counts: Callable[[], dict[str, int]]) -> ObservableCallback:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, _TYPE_ATTRIBUTES[kind]) for kind, n in counts().items()]

    return observe


def _total(count: Callable[[], int]) -> ObservableCallback:
    return lambda _: [Observation(count())]


def event_views() -> tuple[View, ...]:
    """The view giving ``causality_event_batch_size`` its buckets in a form the inspector
    can add whole batches of values to (`sidecar.batching`); pass it to ``Module.new``,
    and the aggregation it installs to `EventInspector`. Without it every batch size is
    recorded through the SDK (~6 µs each: a third of a protobuf batch's inspection)."""
    aggregation = MergeableHistogramAggregation(BATCH_SIZE_BUCKETS)
    return (View(instrument_name=BATCH_SIZE, aggregation=aggregation),)


@dataclass(frozen=True, slots=True)
class EventInstruments:
    """The event metrics on one meter: five observable counters and a histogram, its
    values batched (`batch_size`, under `batcher`'s lock) and handed to the SDK at the
    start of every collection."""

    tally: EventTally
    batcher: Batcher
    batch_size: BatchedHistogram
    counters: tuple[ObservableCounter, ...]

    @classmethod
    def create(
        cls, meter: Meter, aggregation: MergeableHistogramAggregation | None = None
    ) -> EventInstruments:
        """Create the instruments on `meter` (the exporter adds the ``_total`` suffixes);
        `aggregation` is the one `event_views` installed, if it was."""
        histogram = meter.create_histogram(
            BATCH_SIZE,
            description="Events per batch ingest request.",
            explicit_bucket_boundaries_advisory=list(BATCH_SIZE_BUCKETS),
        )
        batcher = Batcher()
        batch_size = batcher.histogram(histogram, aggregation)
        # with the view installed, the C scanner buckets the sizes of the batches it reads
        tally = EventTally(batch_size.bounds if batch_size.batched else None)

        observe_events = _by_type(lambda: tally.totals()[0])

        def events(options: CallbackOptions) -> Iterable[Observation]:
            # callbacks all run before the SDK reads any storage: hand over the sizes first
            taken = tally.scanner.take_sizes()
            if taken is not None:
                with batcher.lock:
                    batch_size.add(*taken, _NO_ATTRIBUTES)
            batcher.flush()
            return observe_events(options)

        def decode_errors(_: CallbackOptions) -> Iterable[Observation]:
            counts = tuple(tally.decode_errors.items())
            return [Observation(n, _REASON_ATTRIBUTES[reason]) for reason, n in counts]

        counters = (
            meter.create_observable_counter(
                "causality_events",
                callbacks=[events],
                description="Causality events seen on the ingest routes, by payload type.",
            ),
            meter.create_observable_counter(
                "causality_events_duplicate",
                callbacks=[_by_type(lambda: tally.totals()[1])],
                description="Events whose idempotency key was seen within the dedup window.",
            ),
            meter.create_observable_counter(
                "causality_events_missing_idempotency_key",
                callbacks=[_total(lambda: tally.totals()[2])],
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
        return cls(tally, batcher, batch_size, counters)


class EventInspector:
    """Counts the events of the gateway's ingest routes; never raises, never blocks.

    Args:
        config: the ``events`` section (paths, body limit, dedup window and bound).
        meter: where the instruments are created.
        clock: monotonic seconds, for the dedup window (tests pass a fake one).
        batch_size_aggregation: the aggregation of `event_views`, when installed.
    """

    def __init__(
        self,
        config: EventsConfig,
        meter: Meter,
        *,
        clock: Callable[[], float] = time.monotonic,
        batch_size_aggregation: MergeableHistogramAggregation | None = None,
    ) -> None:
        self._ingest_path = config.ingest_path
        self._batch_path = config.batch_path
        self._max_body_bytes = config.max_body_bytes
        self._clock = clock
        self._memory = KeyMemory(config.dedup_window, config.dedup_max_keys)
        self._dedup = (config.dedup_window, config.dedup_max_keys)
        self._binary: dict[str | None, bool] = {}  # Content-Type -> binary protobuf
        self._instruments = EventInstruments.create(meter, batch_size_aggregation)
        self._tally = self._instruments.tally

    def reconfigure(self, config: EventsConfig) -> bool:
        """Apply a reloaded ``events`` section (the instruments and counts stay).

        Returns:
            True when the dedup settings changed: the key memory was replaced, so it
            starts empty (keys seen before are not duplicates of later ones).
        """
        self._ingest_path = config.ingest_path
        self._batch_path = config.batch_path
        self._max_body_bytes = config.max_body_bytes
        dedup = (config.dedup_window, config.dedup_max_keys)
        if dedup == self._dedup:
            return False
        self._memory = KeyMemory(*dedup)  # one reference: a scan in progress keeps the old
        self._dedup = dedup
        return True

    @property
    def batch_sizes_batched(self) -> bool:
        """True when batch sizes are recorded in bulk at collection (`event_views`
        installed the mergeable aggregation), not through the SDK one by one."""
        return self._instruments.batch_size.batched

    @property
    def content_types_remembered(self) -> int:
        """How many Content-Type values' encodings are remembered now (a bounded few)."""
        return len(self._binary)

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
        try:
            if path == self._batch_path:
                self._inspect_batch(content_type, body)
            else:
                self._record(summarize_ingest_request(body, content_type, self._max_body_bytes))
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
            rejected = self._rejected_in_c(content_type, body)
            if rejected is None:  # the exact reader answers, or says invalid_response
                rejected = decode_batch_response(body, content_type, self._max_body_bytes)
        except DecodeError as exc:
            self._count_decode_error(exc.reason, path, exc)
            return
        except Exception as exc:
            log.exception("event response inspection failed on %s", path)
            self._count_decode_error(DecodeReason.INTERNAL, path, exc)
            return
        self._tally.rejected += rejected

    def _rejected_in_c(self, content_type: str | None, body: bytes) -> int | None:
        """A plain batch response's ``rejected_count`` read in C; None for the exact reader
        (anything unusual, including the errors it names ``invalid_response``)."""
        try:
            plain = gunzip(body, self._max_body_bytes)
            return rejected_count(plain, self._is_binary(content_type))
        except DecodeError:
            return None

    def _inspect_batch(self, content_type: str | None, body: bytes) -> None:
        """The C scanner first; the exact decoder for a body off its plain path."""
        plain = gunzip(body, self._max_body_bytes)  # first, as decode_batch_request
        binary = self._is_binary(content_type)
        instruments = self._instruments
        count = self._tally.scanner.scan(plain, binary, self._memory, self._clock())
        if count is not None and instruments.batch_size.batched:
            return  # the scanner bucketed its size too
        if count is None:
            summary = EventSummary.of(
                decode_batch_request(body, content_type, self._max_body_bytes)
            )
            self._record(summary)
            count = summary.count
        with instruments.batcher.lock:
            instruments.batch_size.record(count, _NO_ATTRIBUTES)

    def _is_binary(self, content_type: str | None) -> bool:
        """`encoding_of` (which raises for an unsupported type), remembered for a few."""
        binary = self._binary.get(content_type)
        if binary is None:
            binary = encoding_of(content_type) is Encoding.PROTOBUF
            if len(self._binary) >= _CONTENT_TYPES_KEPT:  # the client chooses: keep a few
                self._binary.clear()
            self._binary[content_type] = binary
        return binary

    def _record(self, summary: EventSummary) -> None:
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

    def _count_decode_error(self, reason: DecodeReason, path: str, exc: Exception | None) -> None:
        log.debug("event body on %s not decoded: %s (%s)", path, reason.value, exc)
        errors = self._tally.decode_errors
        errors[reason] = errors.get(reason, 0) + 1
