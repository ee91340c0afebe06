"""``causality-sidecar demo --workers N``: a pre-fork server's workers, each pushing OTLP.

`run_workers` plays a gunicorn master: it keeps ``N`` worker processes
(``python -m sidecar.demo.workers ENDPOINT``) running and starts a new one whenever one
exits. Each worker is what a gunicorn worker with an OpenTelemetry SDK is: its own
resource (the same ``service.name``, its own ``service.instance.id`` and ``process.pid``),
a few jobs a second counted in ``demo_worker_jobs_total`` and timed in
``demo_worker_job_duration_seconds``, its busy jobs in an up-down counter; after
`MAX_JOBS` ± `JITTER` jobs it recycles itself (``--max-requests``), pushing its final
values on the way out. With ``ingest.workers`` on (the demo turns it on), ``/metrics``
shows one pod-level series per metric that never decreases, and the status page the
workers behind the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import threading
import uuid

__all__ = ["WORKERS_SERVICE", "WORKER_ATTRIBUTES", "run_workers"]

log = logging.getLogger(__name__)

WORKERS_SERVICE = "causality-demo-workers"
WORKER_ATTRIBUTES = ("service.instance.id", "process.pid")
WORKER_IDLE = "10s"  # ingest.workers.idle in the demo: a recycled worker goes in 10 s
MAX_JOBS, JITTER = 50, 10
JOBS_PER_S = 10.0
EXPORT_INTERVAL_MS = 1000
STOP_TIMEOUT_S = 10.0


async def run_workers(endpoint: str, count: int, stop: asyncio.Event) -> None:
    """Keep ``count`` worker processes pushing to ``endpoint`` until ``stop`` is set."""
    procs: dict[int, asyncio.subprocess.Process] = {}

    async def spawn(slot: int) -> None:
        procs[slot] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sidecar.demo.workers", endpoint
        )

    log.info("demo workers: %d processes pushing to %s", count, endpoint)
    try:
        for slot in range(count):
            await spawn(slot)
        while not stop.is_set():
            waits = {asyncio.ensure_future(p.wait()): slot for slot, p in procs.items()}
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait([*waits, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            stopping.cancel()
            for task in done:
                if task in waits and not stop.is_set():
                    await spawn(waits[task])  # recycled: the master forks a new one
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)  # each pushes its final values, then exits
        for proc in procs.values():
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()


def worker_main(endpoint: str) -> None:
    """One worker: jobs until it recycles (or SIGTERM), then the final push."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    resource = Resource.create(
        {
            "service.name": WORKERS_SERVICE,
            "service.instance.id": str(uuid.uuid4()),
            "process.pid": os.getpid(),
        }
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint, timeout=5),
        export_interval_millis=EXPORT_INTERVAL_MS,
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("causality.demo.workers")
    jobs = meter.create_counter("demo.worker.jobs", description="Jobs done by the workers")
    duration = meter.create_histogram("demo.worker.job.duration", unit="s", description="Job time")
    busy = meter.create_up_down_counter("demo.worker.busy", description="Jobs in progress")
    rng = random.Random()  # noqa: S311 - demo data, not crypto
    try:
        for _ in range(MAX_JOBS + rng.randint(-JITTER, JITTER)):
            if done.wait(rng.expovariate(JOBS_PER_S)):
                break
            kind = {"kind": rng.choice(("email", "report", "thumbnail"))}
            busy.add(1)
            duration.record(rng.lognormvariate(-3, 0.7), kind)
            jobs.add(1, kind)
            busy.add(-1)
    finally:
        provider.shutdown()  # the final push: what this worker counted is never lost


if __name__ == "__main__":
    worker_main(sys.argv[1])
