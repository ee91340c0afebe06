"""The demo pipeline: within 10 s every catalogue family is on the ingest side's /metrics."""

from __future__ import annotations

import asyncio
import time

from sidecar.config import Address
from sidecar.demo.pipeline import run_pipeline
from sidecar.ingest import create_ingest
from sidecar.observability import Module
from sidecar.unified import UnifiedCollector
from tests.support.ingest import make_config
from tests.support.observability import EXPOSED_NAMES


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
        missing = set(EXPOSED_NAMES)
        while missing and time.monotonic() - started < 10:
            await asyncio.sleep(0.1)
            text = UnifiedCollector([collector]).render("", "").body.decode()
            missing = set(EXPOSED_NAMES) - _types(text)
        assert not missing
        assert 'service_name="causality-demo-pipeline"' in text
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        stop.set()
        await component.stop(1.0)
        await module.shutdown()
