"""Shared parts of the event tests: batches the decoder must refuse, the idempotency-key
memory's contract written plainly, and an inspector on a real SDK provider."""

from __future__ import annotations

import gzip
import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest

from sidecar.config import EventsConfig
from sidecar.demo import samples
from sidecar.events import EventInspector
from sidecar.events.codec import DEFAULT_MAX_BYTES, MAX_BATCH_EVENTS, DecodeReason
from sidecar.events.inspector import event_views
from sidecar.gen.causality.v1 import events_pb2, service_pb2
from tests.support.event_metrics import value

R = DecodeReason


def json_batch(count: int) -> bytes:
    """A JSON batch of `count` empty events, each with its own idempotency key."""
    return json.dumps({"events": [{"idempotencyKey": str(i)} for i in range(count)]}).encode()


def binary_batch(count: int) -> bytes:
    """A binary batch of `count` empty events."""
    return service_pb2.IngestEventBatchRequest(
        events=[events_pb2.EventEnvelope() for _ in range(count)]
    ).SerializeToString()


# (id, body, content type, the reason it is refused with)
BATCH_ERRORS = [
    ("not-json", b"{nope", "application/json", R.INVALID_JSON),
    ("not-utf8", b'{"events": [{"idempotencyKey": "\xff"}]}', None, R.INVALID_JSON),
    ("bad-nested-json", b'{"events": [{"screenView": {"a": }}]}', None, R.INVALID_JSON),
    ("trailing-garbage", b'{"events": [{}]} x', None, R.INVALID_JSON),
    (
        "too-deep",
        b'{"events": [{"customEvent": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
        None,
        R.INVALID_JSON,
    ),
    ("truncated-gzip", gzip.compress(b'{"events": [{}]}')[:-9], None, R.INVALID_GZIP),
    ("corrupt-gzip", b"\x1f\x8b\x08\x00garbage", None, R.INVALID_GZIP),
    ("gzip-bomb", gzip.compress(b" " * (DEFAULT_MAX_BYTES + 1)), None, R.BODY_TOO_LARGE),
    ("not-protobuf", b"\xff\xff\xff\xff", "application/x-protobuf", R.INVALID_PROTOBUF),
    (
        "truncated-protobuf",
        binary_batch(2)[:-1] + b"\x0a\x05ab",
        "application/octet-stream",
        R.INVALID_PROTOBUF,
    ),
    ("array-body", b"[]", None, R.SCHEMA),
    ("events-not-array", b'{"events": {}}', None, R.SCHEMA),
    ("event-not-object", b'{"events": [1]}', None, R.SCHEMA),
    ("key-not-string", b'{"events": [{"idempotencyKey": 5}]}', None, R.SCHEMA),
    ("two-payloads", b'{"events": [{"screenView": {}, "buttonTap": {}}]}', None, R.SCHEMA),
    ("payload-not-object", b'{"events": [{"screenView": "x"}]}', None, R.SCHEMA),
    ("empty-json", b"{}", None, R.EMPTY_BATCH),
    ("empty-array", b'{"events": []}', None, R.EMPTY_BATCH),
    ("empty-protobuf", b"", "application/x-protobuf", R.EMPTY_BATCH),
    ("1001-json", json_batch(MAX_BATCH_EVENTS + 1), None, R.TOO_MANY_EVENTS),
    (
        "1001-protobuf",
        binary_batch(MAX_BATCH_EVENTS + 1),
        "application/x-protobuf",
        R.TOO_MANY_EVENTS,
    ),
    ("form", b"a=b", "application/x-www-form-urlencoded", R.UNSUPPORTED_CONTENT_TYPE),
]


class ReferenceMemory:
    """The memory's contract written plainly: an ordered dict in first-seen order."""

    def __init__(self, window: float, max_keys: int) -> None:
        self.window = window
        self.max_keys = max_keys
        self.keys: OrderedDict[str, float] = OrderedDict()
        self.forgotten = 0

    def find_duplicates(self, batch: list[str], now: float) -> list[int]:
        while self.keys and next(iter(self.keys.values())) <= now - self.window:
            self.keys.popitem(last=False)
        found = []
        for index, key in enumerate(batch):
            if key in self.keys:
                found.append(index)
            else:
                self.keys[key] = now
        while len(self.keys) > self.max_keys:
            self.keys.popitem(last=False)
            self.forgotten += 1
        return found


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


BATCH = "/v1/events/batch"


JSON = "application/json"


PROTOBUF = "application/x-protobuf"


@dataclass
class Harness:
    """An event inspector on a real SDK provider, its exposition and its clock."""

    inspector: EventInspector
    registry: CollectorRegistry
    clock: FakeClock

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def value(self, name: str, **labels: str) -> float:
        return value(self.text(), name, labels)

    def batch(self, events: list[events_pb2.EventEnvelope], encoding: str = "json") -> None:
        content_type = PROTOBUF if encoding == "protobuf" else JSON
        self.inspector.inspect_request(BATCH, content_type, samples.batch_body(events, encoding))


def make_harness(config: EventsConfig | None = None, *, batched: bool = True) -> Iterator[Harness]:
    """An inspector on a real SDK provider; `batched`: with `event_views` installed, as the
    sidecar runs it (batch sizes added to the histogram in bulk at collection)."""
    registry = CollectorRegistry()
    views = event_views() if batched else ()
    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader(registry=registry)], views=views
    )
    aggregation = views[0]._aggregation if views else None  # what mergeable_aggregations reads
    clock = FakeClock()
    inspector = EventInspector(
        config or EventsConfig(enabled=True),
        provider.get_meter("t"),
        clock=clock,
        batch_size_aggregation=aggregation,
    )
    yield Harness(inspector, registry, clock)
    provider.shutdown()
