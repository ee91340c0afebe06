"""Push of the unified view to an OpenTelemetry collector over OTLP/HTTP (``export.otlp``).

`create_export` wires one pusher from the config: the view is what ``/metrics`` serves
(the sidecar's own, ingested and merged families, design §9), read without counting
conflicts a second time; merge targets are fetched for each push as for a scrape.
"""

from __future__ import annotations

from opentelemetry.metrics import Counter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from sidecar import __version__
from sidecar.config import Config
from sidecar.export.convert import ResourceRules, exposition_to_metrics_data, to_metrics_data
from sidecar.export.pusher import (
    FAILURE,
    SUCCESS,
    OtlpPusher,
    View,
    create_exporter,
    export_counter,
    metrics_url,
)
from sidecar.merge.scraper import MergeScraper
from sidecar.observability import METER_NAME, Module
from sidecar.unified import UnifiedCollector

OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0"

__all__ = [
    "FAILURE",
    "SUCCESS",
    "OtlpPusher",
    "ResourceRules",
    "create_export",
    "exposition_to_metrics_data",
    "metrics_url",
    "resource_rules",
    "to_metrics_data",
    "unified_view",
]


def unified_view(unified: UnifiedCollector, scraper: MergeScraper | None = None) -> View:
    """What /metrics would serve, as OpenMetrics, merge targets fetched afresh.

    Conflicts are not counted again: the scrapes count them.
    """

    async def view() -> str:
        extra = await scraper.fetch() if scraper is not None else []
        scrape = unified.with_sources(extra)  # the relabel rules too, refusals not recounted
        relabel = scrape.relabel.uncounted() if scrape.relabel is not None else None
        view = UnifiedCollector(scrape.sources, relabel=relabel, kinds=scrape.kinds)
        exposition = await view.render_off_loop(OPENMETRICS_ACCEPT, "")  # sidecar.offloop
        return exposition.body.decode()

    return view


def resource_rules(
    config: Config, module: Module, resource: Resource | None = None
) -> ResourceRules:
    """The sidecar's resource and scope, and the promoted attributes of ``ingest``."""
    return ResourceRules(
        default_resource=resource or module.resource,
        default_scope=InstrumentationScope(METER_NAME, __version__),
        promoted=config.ingest.promote_resource_attributes,
    )


def create_export(
    config: Config,
    module: Module,
    unified: UnifiedCollector,
    scraper: MergeScraper | None = None,
    *,
    resource: Resource | None = None,
    results: Counter | None = None,
) -> OtlpPusher | None:
    """The pusher for ``export.otlp`` (None when no endpoint is set); call `start` on it.

    ``results``: the ``sidecar_export_total`` counter, when one exists already (a pusher
    rebuilt on reload counts on into the same one).
    """
    otlp = config.export.otlp
    if otlp.endpoint is None:
        return None
    return OtlpPusher(
        create_exporter(otlp),
        unified_view(unified, scraper),
        resource_rules(config, module, resource),
        otlp.interval,
        results if results is not None else export_counter(module.meter),
    )
