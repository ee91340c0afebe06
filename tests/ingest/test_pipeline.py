"""The demo pipeline: within 10 s every catalogue family is on the ingest side's /metrics."""

from __future__ import annotations

import asyncio
import time

from sidecar.config import Address
from sidecar.demo.pipeline import run_pipeline
from sidecar.ingest import create_ingest
from sidecar.observability import Module
from sidecar.unified import UnifiedCollector
from tests.ingest.conftest import make_config

CATALOGUE = [
    "http_request_duration_milliseconds", "http_request_total", "http_request_errors_total",
    "nats_messages_processed_total", "nats_batch_size", "nats_flush_latency_milliseconds",
    "nats_ack_latency_milliseconds", "s3_files_written_total", "s3_file_size_bytes",
    "dedup_dropped_total", "dlq_depth", "rules_evaluated_total", "alerts_fired_total",
    "webhook_success_total", "webhook_failure_total",
]  # fmt: skip


def _types(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


async def test_catalogue_visible_within_ten_seconds():
    module = Module.new("pipeline-test")
    component, collector = create_ingest(make_config(listen=Address("127.0.0.1", 0)), module)
    await component.start()
    stop = asyncio.Event()
    started = time.monotonic()
    try:
        (port,) = {a.port for a in component.addresses if a.host == "127.0.0.1"}
        task = asyncio.create_task(
            run_pipeline(f"http://127.0.0.1:{port}/v1/metrics", stop, interval=0.5)
        )
        missing = set(CATALOGUE)
        while missing and time.monotonic() - started < 10:
            await asyncio.sleep(0.1)
            text = UnifiedCollector([collector]).render("", "").body.decode()
            missing = set(CATALOGUE) - _types(text)
        assert not missing
        assert 'service_name="causality-demo-pipeline"' in text
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        stop.set()
        await component.stop(1.0)
        await module.shutdown()
