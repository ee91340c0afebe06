"""The periodic OTLP/HTTP push of the unified view (``export.otlp.*``).

Every ``interval`` the view is rendered as a scrape renders it (in a worker thread,
`sidecar.offloop`), converted to OTLP (`sidecar.export.convert`) and sent by the SDK's
`OTLPMetricExporter` in a worker thread (it does the gzip, headers and retries). This
module adds the schedule, one push at a time, the final flush on `OtlpPusher.stop` and
``sidecar_export_total{result}``. Behaviour and cost: docs/merge-export.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Counter, Meter
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

from sidecar.config import OtlpExportConfig
from sidecar.export.convert import ResourceRules, exposition_to_metrics_data
from sidecar.known_labels import zeroed

__all__ = [
    "FAILURE",
    "SUCCESS",
    "OtlpPusher",
    "View",
    "create_exporter",
    "export_counter",
    "metrics_url",
]

log = logging.getLogger(__name__)

SUCCESS = "success"
FAILURE = "failure"
METRICS_PATH = "/v1/metrics"
MAX_EXPORT_TIMEOUT = 10.0  # the SDK's default; retries included

View = Callable[[], Awaitable[str]]
"""Reads the view on the event loop: an OpenMetrics exposition."""


def export_counter(meter: Meter) -> Counter:
    """``sidecar_export_total{result}``."""
    counter = meter.create_counter(
        "sidecar.export", description="OTLP pushes of the unified view, by result"
    )
    return zeroed(counter, "result", (SUCCESS, FAILURE))


def metrics_url(endpoint: str) -> str:
    """The OTLP/HTTP metrics URL: a bare ``http://host:4318`` gets ``/v1/metrics``."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        return urlunsplit(parts._replace(path=METRICS_PATH))
    return endpoint


def export_timeout(interval: float) -> float:
    """A push (retries included) ends before the next one is due, and within 10 s."""
    return min(interval, MAX_EXPORT_TIMEOUT)


def create_exporter(config: OtlpExportConfig) -> OTLPMetricExporter:
    """The SDK exporter for ``export.otlp``: gzip, configured headers, bounded timeout."""
    if config.endpoint is None:
        raise ValueError("export.otlp.endpoint is not set")
    return OTLPMetricExporter(
        endpoint=metrics_url(config.endpoint),
        headers=dict(config.headers),
        timeout=export_timeout(config.interval),
        compression=Compression.Gzip,
    )


class OtlpPusher:
    """Pushes the view every ``interval`` seconds until stopped, then once more."""

    def __init__(
        self,
        exporter: MetricExporter,
        view: View,
        rules: ResourceRules,
        interval: float,
        results: Counter,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"export interval must be > 0, got {interval!r}")
        self.exporter = exporter
        self.interval = interval
        self._view = view
        self._rules = rules
        self._results = results
        self._clock = clock
        self._start_ns = clock()
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin the schedule (first push one interval from now)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="otlp-export")

    @property
    def running(self) -> bool:
        """True while the schedule runs (between `start` and `stop`)."""
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        next_at = time.monotonic() + self.interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_at - time.monotonic(), 0.0)):
                    await self._stopping.wait()
                    return
            await self.push()
            next_at += self.interval
            while next_at <= time.monotonic():  # a push longer than the interval: skip slots
                next_at += self.interval

    async def push(self) -> bool:
        """Read, convert and send the view once; True when the collector took it."""
        async with self._lock:
            ok = await self._push()
        self._results.add(1, {"result": SUCCESS if ok else FAILURE})
        return ok

    async def _push(self) -> bool:
        try:
            text = await self._view()
            data = await asyncio.to_thread(
                exposition_to_metrics_data, text, self._rules, self._clock(), self._start_ns
            )
            timeout_ms = export_timeout(self.interval) * 1000
            result = await asyncio.to_thread(self.exporter.export, data, timeout_ms)
        except Exception:
            log.exception("OTLP export failed", extra={"event": "export_failed"})
            return False
        if result is not MetricExportResult.SUCCESS:
            log.warning("OTLP export not accepted", extra={"event": "export_failed"})
            return False
        return True

    async def stop(self) -> bool:
        """Stop the schedule, push a final time (the shutdown flush), close the exporter.

        Returns:
            Whether the final push succeeded.
        """
        self._stopping.set()
        if self._task is not None:
            await self._task
        try:
            return await self.push()
        finally:
            await asyncio.to_thread(self.exporter.shutdown)
