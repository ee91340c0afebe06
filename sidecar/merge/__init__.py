"""Merge targets (design §9, ``merge.targets``): apps' own /metrics served in the sidecar's.

`create_merge` builds the scraper from the config; `merge_sources` hands its targets,
fetched for each scrape, to the ``/metrics`` handler (`sidecar.unified.metrics_handler`).
"""

from __future__ import annotations

from opentelemetry.metrics import Meter

from sidecar.config import MergeConfig
from sidecar.merge.fetch import (
    ACCEPT,
    TEXT_ACCEPT,
    Result,
    Scrape,
    fetch_target,
    parse_exposition,
)
from sidecar.merge.scraper import (
    FetchedFamilies,
    MergeScraper,
    natives_dropped_counter,
    scrapes_counter,
)
from sidecar.merge.sources import SCRAPE_TIMEOUT_HEADER, merge_sources

__all__ = [
    "ACCEPT",
    "SCRAPE_TIMEOUT_HEADER",
    "TEXT_ACCEPT",
    "FetchedFamilies",
    "MergeScraper",
    "Result",
    "Scrape",
    "create_merge",
    "fetch_target",
    "merge_sources",
    "parse_exposition",
]


def create_merge(config: MergeConfig, meter: Meter) -> MergeScraper:
    """The scraper of ``merge.targets``, counting into ``sidecar_merge_scrapes_total``."""
    return MergeScraper(
        config.targets, scrapes_counter(meter), natives_dropped=natives_dropped_counter(meter)
    )
