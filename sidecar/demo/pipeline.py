"""The demo pipeline: a real OpenTelemetry SDK pushing the whole catalogue over OTLP/HTTP.

A `MeterProvider` with a `PeriodicExportingMetricReader` around the SDK's
`OTLPMetricExporter` (HTTP/protobuf) records `sidecar.observability.Metrics` — HTTP,
NATS, S3, dedup, DLQ, rules, alerts, webhooks — as a Causality service would. The
exporter is synchronous; it runs on the reader's own thread, and the shutdown flush runs
in a worker thread, so the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from sidecar import __version__
from sidecar.ingest.receiver import INGEST_PATH
from sidecar.observability import Metrics

__all__ = ["PIPELINE_SERVICE", "record_round", "run_pipeline"]

log = logging.getLogger(__name__)

PIPELINE_SERVICE = "causality-demo-pipeline"
EXPORT_TIMEOUT_S = 5.0
ROUTES = ("/v1/events/ingest", "/v1/events/batch", "/v1/apps/{id}")
SUBJECTS = ("events.raw", "events.enriched")


def record_round(metrics: Metrics, rng: random.Random) -> None:
    """One round of plausible pipeline activity on every catalogue instrument."""
    for _ in range(rng.randint(3, 8)):
        status = rng.choice((200, 200, 200, 202, 400, 503))
        attrs: dict[str, str | int] = {
            "method": "POST",
            "path": rng.choice(ROUTES),
            "status": status,
        }
        metrics.http_request_duration.record(rng.lognormvariate(2.5, 0.8), attrs)
        metrics.http_request_total.add(1, attrs)
        if status >= 400:
            metrics.http_request_errors.add(1, attrs)
    subject = {"subject": rng.choice(SUBJECTS)}
    batch = rng.randint(1, 500)
    metrics.nats_messages_processed.add(batch, subject)
    metrics.nats_batch_size.record(batch, subject)
    metrics.nats_flush_latency.record(rng.uniform(1, 80), subject)
    metrics.nats_ack_latency.record(rng.uniform(0.2, 15), subject)
    metrics.s3_files_written.add(1, {"bucket": "events"})
    metrics.s3_file_size.record(rng.randint(1 << 16, 64 << 20), {"bucket": "events"})
    metrics.dedup_dropped.add(rng.randint(0, 5))
    metrics.dlq_depth.add(rng.choice((-1, 0, 1, 2)))
    metrics.rules_evaluated.add(rng.randint(10, 100), {"app_id": "demo"})
    metrics.alerts_fired.add(rng.randint(0, 1), {"severity": rng.choice(("info", "warning"))})
    metrics.webhook_success.add(rng.randint(0, 3))
    metrics.webhook_failure.add(rng.randint(0, 1))


def _metrics_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(INGEST_PATH) else endpoint + INGEST_PATH


async def run_pipeline(endpoint: str, stop: asyncio.Event, interval: float = 2.0) -> None:
    """Record and push the catalogue every ``interval`` seconds until ``stop`` is set.

    Args:
        endpoint: the ingest URL, with or without the ``/v1/metrics`` path.
        stop: set it to flush once more and return.
        interval: seconds between rounds (and between exports).
    """
    url = _metrics_url(endpoint)
    exporter = OTLPMetricExporter(endpoint=url, timeout=EXPORT_TIMEOUT_S)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval * 1000)
    provider = MeterProvider(
        resource=Resource.create({SERVICE_NAME: PIPELINE_SERVICE}), metric_readers=[reader]
    )
    metrics = Metrics.create(provider.get_meter("causality.pipeline", __version__))
    rng = random.Random()  # noqa: S311 - demo data, not crypto
    log.info("demo pipeline pushing to %s", url)
    try:
        while not stop.is_set():
            record_round(metrics, rng)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        await asyncio.to_thread(provider.shutdown)
