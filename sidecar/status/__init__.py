"""What operators look at on the admin port: the status page and the debug endpoints."""

from sidecar.status.inventory import SourceInfo, ingest_sources, series_report, store_sources
from sidecar.status.routes import STATUS_KEY, StatusSources, add_status_routes
from sidecar.status.sampler import TrafficSampler

__all__ = [
    "STATUS_KEY",
    "SourceInfo",
    "StatusSources",
    "TrafficSampler",
    "add_status_routes",
    "ingest_sources",
    "series_report",
    "store_sources",
]
