"""The merge targets as the extra sources of one scrape of ``/metrics``.

`merge_sources` is what `sidecar.unified.metrics_handler` awaits before each render:
every target fetched, in the format the scraper asked for, within its timeout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from aiohttp import hdrs, web
from prometheus_client.registry import Collector

from sidecar.merge.scraper import MergeScraper
from sidecar.negotiation import Format, negotiate
from sidecar.unified import ScrapeSources

__all__ = ["SCRAPE_TIMEOUT_HEADER", "merge_sources", "scrape_timeout"]

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


def scrape_timeout(request: web.Request) -> float | None:
    """The scraper's timeout in seconds, when it sent a usable one."""
    try:
        value = float(request.headers.get(SCRAPE_TIMEOUT_HEADER, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def merge_sources(scraper: MergeScraper) -> ScrapeSources:
    """Every merge target of ``scraper``, fetched for one scrape (none while it has none).

    Targets are asked for the format the scraper asked for first (protobuf or OpenMetrics,
    as Prometheus asks, or text 0.0.4), so an unchanged target's reply is sent on as it came.
    A target that fails is skipped (and counted); the scrape itself never fails for it.

    Pass it as ``metrics_handler(unified, merge_sources(scraper))``.
    """

    async def fetch(request: web.Request) -> Sequence[Collector]:
        if not scraper.targets:  # (a reload may add some: read on every scrape)
            return ()
        negotiated = negotiate(request.headers.get(hdrs.ACCEPT, ""))
        protobuf = negotiated.format is Format.PROTOBUF
        text = not negotiated.openmetrics and not protobuf
        return await scraper.fetch(
            scrape_timeout(request), text=text, protobuf=protobuf, escaping=negotiated.escaping
        )

    return fetch
