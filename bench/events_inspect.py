"""Cost of event inspection alone: events decoded per second by `EventInspector`.

Feeds 100-event batch bodies (JSON with camelCase names, JSON with original names,
binary protobuf) to `EventInspector.inspect_request`, with the real OpenTelemetry SDK
instruments behind it, and prints events/s and µs per batch, median of several rounds.
Every event has a fresh idempotency key (the dedup memory grows as in production) except
a tenth, which repeat. One command, a few seconds, single core:

    .venv/bin/python bench/events_inspect.py [--seconds 1.0] [--rounds 5] [--events 100]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry

from sidecar.config import EventsConfig
from sidecar.events import EventInspector, samples

CONTENT_TYPES = {
    "json": "application/json",
    "json-names": "application/json",
    "protobuf": "application/x-protobuf",
}


def _bodies(encoding: str, events: int, count: int) -> list[bytes]:
    """`count` distinct batch bodies, so the dedup memory sees new keys each time."""
    bodies = []
    for index in range(count):
        batch = list(samples.envelopes(events, start=index * events))
        for event in batch[: events // 10]:
            event.idempotency_key = "repeated-" + str(index % 3)
        for event in batch[events // 10 :]:
            event.idempotency_key = str(uuid.uuid4())
        bodies.append(samples.batch_body(batch, encoding))
    return bodies


def _round(
    inspector: EventInspector, bodies: list[bytes], content_type: str, seconds: float
) -> float:
    """Batches per second for about `seconds`."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for body in bodies:
            inspector.inspect_request("/v1/events/batch", content_type, body)
        done += len(bodies)
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def main() -> None:
    """Run the benchmark and print one table row per encoding."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=100, help="events per batch")
    args = parser.parse_args()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=CollectorRegistry())])
    print(f"| body ({args.events} events) | bytes | batches/s | events/s | µs per batch |")
    print("|---|---:|---:|---:|---:|")
    for encoding, content_type in CONTENT_TYPES.items():
        inspector = EventInspector(EventsConfig(enabled=True), provider.get_meter(encoding))
        bodies = _bodies(encoding, args.events, 50)
        rates = [_round(inspector, bodies, content_type, args.seconds) for _ in range(args.rounds)]
        rate = statistics.median(rates)
        size = sum(map(len, bodies)) // len(bodies)
        print(
            f"| {encoding} | {size} | {rate:,.0f} | {rate * args.events:,.0f} | {1e6 / rate:,.1f} |"
        )
    provider.shutdown()


if __name__ == "__main__":
    main()
