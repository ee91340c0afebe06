"""Cost of event inspection alone: µs per batch for `EventInspector` and its parts.

Feeds 100-event batch bodies (JSON with camelCase names, JSON with original names,
binary protobuf) to `EventInspector.inspect_request`, with the real OpenTelemetry SDK
instruments behind it, and prints µs per batch, median of several rounds, next to the
C scanner alone (`BatchScanner.scan` with its key memory, what the inspector runs) and
the exact per-event decoder it falls back on (`decode_batch_request`). As in
bench/events.py, 200 distinct bodies with fresh keys cycle through a key memory bounded
at 10,000 keys, so every key is new and evicts an old one; ``--duplicates 0.1`` makes a
tenth of each batch's keys repeats (the path that also counts duplicates by type). One
command, a few seconds, single core:

    .venv/bin/python bench/events_inspect.py [--seconds 0.5] [--rounds 5] [--duplicates 0]

Inside the proxy the same call costs about the same for protobuf and somewhat more for
JSON (~15 and ~45 µs a batch, measured with a timing wrapper): its data is colder there.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry

from sidecar.config import EventsConfig
from sidecar.demo import samples
from sidecar.events import EventInspector
from sidecar.events.codec import decode_batch_request
from sidecar.events.inspector import event_views
from sidecar.events.scan import KeyMemory, new_batch_scanner

CONTENT_TYPES = {
    "json": "application/json",
    "json-names": "application/json",
    "protobuf": "application/x-protobuf",
}
BODIES = 200
MAX_KEYS = 10_000


def _bodies(encoding: str, events: int, duplicates: float) -> list[bytes]:
    """`BODIES` distinct batch bodies with fresh keys, a `duplicates` share repeated."""
    repeats = int(events * duplicates)
    bodies = []
    for index in range(BODIES):
        batch = list(samples.envelopes(events, start=index * events))
        for event in batch[:repeats]:
            event.idempotency_key = "repeated-" + str(index % 3)
        for event in batch[repeats:]:
            event.idempotency_key = str(uuid.uuid4())
        bodies.append(samples.batch_body(batch, encoding))
    return bodies


def _per_batch(call: Callable[[bytes], object], bodies: list[bytes], seconds: float) -> float:
    """µs per call over about `seconds`."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for body in bodies:
            call(body)
        done += len(bodies)
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / done * 1e6


def _calls(inspector: EventInspector, content_type: str) -> list[Callable[[bytes], object]]:
    """The three things measured, for one content type."""
    scanner = new_batch_scanner()
    memory = KeyMemory(3600.0, MAX_KEYS)
    binary = content_type == CONTENT_TYPES["protobuf"]
    return [
        lambda body: inspector.inspect_request("/v1/events/batch", content_type, body),
        lambda body: scanner.scan(body, binary, memory, time.monotonic()),
        lambda body: decode_batch_request(body, content_type),
    ]


def main() -> None:
    """Run the benchmark and print one table row per encoding."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=100, help="events per batch")
    parser.add_argument("--duplicates", type=float, default=0.0, help="share of repeated keys")
    args = parser.parse_args()
    views = event_views()  # as the sidecar installs them: batch sizes bucketed in C
    reader = PrometheusMetricReader(registry=CollectorRegistry())
    provider = MeterProvider(metric_readers=[reader], views=views)
    aggregation = views[0]._aggregation  # what batching.mergeable_aggregations reads
    print(
        f"| body ({args.events} events, {args.duplicates:.0%} repeated keys) | bytes "
        "| inspect_request µs | C scan µs | exact decode µs |"
    )
    print("|---|---:|---:|---:|---:|")
    for encoding, content_type in CONTENT_TYPES.items():
        config = EventsConfig(enabled=True, dedup_max_keys=MAX_KEYS)
        inspector = EventInspector(
            config, provider.get_meter(encoding), batch_size_aggregation=aggregation
        )
        bodies = _bodies(encoding, args.events, args.duplicates)
        calls = _calls(inspector, content_type)
        costs = [
            statistics.median(_per_batch(call, bodies, args.seconds) for _ in range(args.rounds))
            for call in calls
        ]
        size = sum(map(len, bodies)) // len(bodies)
        print(f"| {encoding} | {size} | " + " | ".join(f"{c:,.1f}" for c in costs) + " |")
    provider.shutdown()


if __name__ == "__main__":
    main()
