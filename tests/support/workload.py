"""One set of instruments and measurements, recorded identically in and out of process.

``python -m tests.support.workload ENDPOINT {protobuf,json} {gzip,none}`` records it with
the OpenTelemetry SDK and pushes it once to ``ENDPOINT/v1/metrics``: protobuf through the
SDK's own ``OTLPMetricExporter``; JSON through the SDK's OTLP encoder
(``encode_metrics``) and ``json_format`` — the Python SDK ships no OTLP/JSON exporter.
Exit status 0 only when the push succeeded.
"""

from __future__ import annotations

import gzip
import sys
import urllib.request
from collections.abc import Iterable

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource

RESOURCE = {
    "service.name": "diff-app",
    "service.namespace": "tests",
    "deployment.environment": "ci",
}
ATTRIBUTES = {
    "region": "eu",
    "ok": True,
    "n": 2,
    "ratio": 0.5,
    "tags": ["a", "b"],
    "ints": [1, 2],
    "floats": [1.5, 2.0],
    "flags": [True, False],
    "http.method": "GET",
    "0digit": "x",
    "ünï": "ü",
}


def _observe(value: float, attributes: dict[str, object]):
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(value, attributes)

    return callback


def record(meter: Meter) -> None:
    """Create every instrument kind and record a fixed set of measurements."""
    orders = meter.create_counter("orders.placed", unit="{orders}", description="Orders placed")
    orders.add(3, ATTRIBUTES)
    orders.add(4, {"region": "us"})
    meter.create_counter("http.requests.total", description="Requests").add(7, {"code": 200})
    meter.create_counter("bytes.sent", unit="By", description="Bytes sent").add(1024)
    # The SDK only accepts instrument names matching [a-zA-Z][-_./a-zA-Z0-9]*: leading digits
    # and unicode names are covered by the golden and naming tests instead.
    meter.create_counter("my-app.cat-count", description="Dashes and dots").add(9)
    meter.create_counter("disk.io/ops", unit="1", description="A slash").add(1)
    depth = meter.create_up_down_counter("queue.depth", description="Queue depth")
    depth.add(5, {"queue": "a"})
    depth.add(-2, {"queue": "a"})
    duration = meter.create_histogram("http.server.duration", unit="ms", description="Duration")
    for value in (0.3, 4, 12, 99, 1500, 20000):
        duration.record(value, {"route": "/users/{id}"})
    size = meter.create_histogram(
        "payload.size",
        unit="By",
        description="Payload sizes",
        explicit_bucket_boundaries_advisory=[100.0, 1000.0, 10000.0],
    )
    for value in (10, 500, 5000, 50000):
        size.record(value, {"kind": "upload"})
    wait = meter.create_histogram("job.wait", unit="s", description="Wait in seconds")
    wait.record(0.25)
    meter.create_observable_gauge(
        "cpu.temperature",
        callbacks=[_observe(42.5, {"core": 0})],
        unit="Cel",
        description="CPU temperature",
    )
    meter.create_observable_counter(
        "page.faults", callbacks=[_observe(1234, {"kind": "minor"})], description="Page faults"
    )
    meter.create_observable_up_down_counter(
        "threads.active",
        callbacks=[_observe(17, {})],
        unit="{threads}",
        description="Active threads",
    )
    meter.create_gauge("room.temp", unit="Cel", description="Synchronous gauge").set(
        21.5, {"room": "lab"}
    )


def metrics_data() -> MetricsData:
    """Record the workload into an in-memory reader and return what it collected."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create(RESOURCE), metric_readers=[reader])
    record(provider.get_meter("diff.scope", "3.1"))
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def push_json(endpoint: str, data: MetricsData, use_gzip: bool) -> bool:
    """POST the SDK-encoded request as OTLP/JSON."""
    body = json_format.MessageToJson(encode_metrics(data)).encode()
    headers = {"Content-Type": "application/json"}
    if use_gzip:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    req = urllib.request.Request(endpoint + "/v1/metrics", data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as response:
        return response.status == 200 and response.read() == b"{}"


def main(endpoint: str, encoding: str, compression: str) -> int:
    """Push once; 0 when the sidecar accepted everything."""
    data = metrics_data()
    use_gzip = compression == "gzip"
    if encoding == "json":
        return 0 if push_json(endpoint, data, use_gzip) else 1
    exporter = OTLPMetricExporter(
        endpoint=endpoint + "/v1/metrics",
        compression=Compression.Gzip if use_gzip else Compression.NoCompression,
    )
    result = exporter.export(data)
    exporter.shutdown()
    return 0 if result is MetricExportResult.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
