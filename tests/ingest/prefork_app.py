"""A WSGI app for gunicorn whose every worker pushes its own metrics with the OTel SDK.

Loaded by gunicorn with ``--config python:tests.ingest.prefork_app`` and
``tests.ingest.prefork_app:app``: `post_fork` starts a MeterProvider in each worker
(after the fork: an SDK's export thread does not survive one), `worker_exit` shuts it
down, which pushes the worker's final values (gunicorn runs it in the worker when
``--max-requests`` recycles it). Each worker is a resource of its own: the same
``service.name``, its own ``service.instance.id`` and ``process.pid``; exactly what
``ingest.workers.attributes`` tells apart. The OTLP endpoint comes from
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``, the temporality from
``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` (the SDK reads both).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

EXPORT_INTERVAL_MS = 500

_worker: dict[str, Any] = {}  # this process's provider and counter (one per worker)

# The first exporter of a process costs ~0.3 s (lazy imports of the HTTP stack): made once
# here, in the master (gunicorn --preload imports this module there), every forked worker
# starts warm. Without it, 200 recycles spend a minute booting exporters.
OTLPMetricExporter(endpoint="http://127.0.0.1:1/v1/metrics").shutdown()
Resource.create({})  # the same for the resource detectors' entry points


def post_fork(server: object, worker: object) -> None:
    """gunicorn hook, in the new worker: its own SDK, its own resource."""
    resource = Resource.create(
        {
            "service.name": "prefork-shop",
            "service.instance.id": str(uuid.uuid4()),
            "process.pid": os.getpid(),
        }
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(timeout=5), export_interval_millis=EXPORT_INTERVAL_MS
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("prefork-app")
    _worker["provider"] = provider
    _worker["requests"] = meter.create_counter("app.requests", description="Requests served")
    _worker["busy"] = meter.create_up_down_counter("app.busy", description="Requests in progress")


def worker_exit(server: object, worker: object) -> None:
    """gunicorn hook, in the exiting worker: push the final values."""
    provider = _worker.get("provider")
    if provider is not None:
        provider.shutdown()


def app(
    environ: dict[str, Any], start_response: Callable[[str, list[tuple[str, str]]], object]
) -> Iterable[bytes]:
    """Every request is counted by the worker that serves it."""
    _worker["busy"].add(1)
    _worker["requests"].add(1, {"route": environ.get("PATH_INFO", "")})
    _worker["busy"].add(-1)
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
