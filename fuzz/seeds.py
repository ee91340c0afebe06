"""Seed corpora: valid OTLP requests of every kind, in protobuf and JSON, and edge bodies."""

from __future__ import annotations

import math
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from tests.support.otlp import (
    DELTA,
    counter,
    epoint,
    exponential,
    gauge,
    histogram,
    hpoint,
    number,
    request,
    summary,
)


def requests() -> list[ExportMetricsServiceRequest]:
    """One request per metric kind and a few hostile-but-valid ones."""
    return [
        request(counter("http.request.total", [number(3, {"method": "GET", "q": 'a"b\\c\n'})])),
        request(counter("d", [number(2.5, {"k": 1}, start=1, time=3)], temporality=DELTA)),
        request(counter("ud", [number(-4, {"k": [1, "x"]})], monotonic=False, unit="By")),
        request(gauge("g", [number(math.nan), number(math.inf, {"k": "v"})], unit="ms")),
        request(histogram("h", [hpoint([1.0, 5.0], [1, 2, 3], 9.5, {"le": "x"})], unit="s")),
        request(histogram("hd", [hpoint([], [4], 1.0)], temporality=DELTA)),
        request(exponential("e", [epoint(3, (-2, [1, 0, 4]), negative=(1, [2]), zero_count=1)])),
        request(summary("s", [(0.5, 1.0), (0.99, 7.0)], 12.0, 4, {"k": "v"})),
        request(
            counter("x", [number(1)]), resource={"service.name": "a", "service.instance.id": 7}
        ),
    ]


def write(directory: Path, json: bool) -> int:
    """Write the seeds for one encoding; how many."""
    directory.mkdir(parents=True, exist_ok=True)
    bodies = [
        json_format.MessageToJson(r).encode() if json else r.SerializeToString() for r in requests()
    ]
    bodies += [b"", b"{}" if json else b"\x0a\x00"]
    for i, body in enumerate(bodies):
        (directory / f"seed-{i:02d}").write_bytes(body)
    return len(bodies)
