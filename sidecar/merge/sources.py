"""The ``/metrics`` handler for a sidecar with merge targets: fetch, then render the union."""

from __future__ import annotations

import math

from aiohttp import hdrs, web

from sidecar.admin import Handler
from sidecar.merge.scraper import MergeScraper
from sidecar.negotiation import Format, negotiate
from sidecar.unified import UnifiedCollector, respond_off_loop

__all__ = ["SCRAPE_TIMEOUT_HEADER", "merged_metrics_handler", "scrape_timeout"]

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


def scrape_timeout(request: web.Request) -> float | None:
    """The scraper's timeout in seconds, when it sent a usable one."""
    try:
        value = float(request.headers.get(SCRAPE_TIMEOUT_HEADER, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def merged_metrics_handler(unified: UnifiedCollector, scraper: MergeScraper) -> Handler:
    """A ``/metrics`` handler: every merge target fetched, then the unified view rendered.

    Targets are asked for the format the scraper asked for first (protobuf or OpenMetrics,
    as Prometheus asks, or text 0.0.4), so an unchanged target's reply is sent on as it came.

    Pass it as ``create_admin_app(..., metrics=merged_metrics_handler(unified, scraper))``.
    A target that fails is skipped (and counted); the scrape itself never fails for it.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        negotiated = negotiate(request.headers.get(hdrs.ACCEPT, ""))
        protobuf = negotiated.format is Format.PROTOBUF
        text = not negotiated.openmetrics and not protobuf
        sources = await scraper.fetch(scrape_timeout(request), text=text, protobuf=protobuf)
        return await respond_off_loop(request, unified.with_sources(sources))

    return handle
