"""Local OTLP/HTTP metrics ingest (design §2, §8): receiver → model → store → collector.

`create_ingest` wires one configured instance: the listener component and the collector
that exposes what it stored.
"""

from __future__ import annotations

from sidecar.config import Address, Config
from sidecar.ingest.collector import OtlpCollector
from sidecar.ingest.instruments import IngestInstruments
from sidecar.ingest.naming import TranslationStrategy
from sidecar.ingest.receiver import SERVER_KWARGS, IngestState, create_ingest_app
from sidecar.ingest.store import MetricStore, StoreLimits
from sidecar.ingest.translate import TranslationRules, Translator
from sidecar.instruments import SeriesGauge, render_cache
from sidecar.lifecycle import AiohttpComponent, Component
from sidecar.observability import Module
from sidecar.relabel.ingest import IngestRelabel

__all__ = ["OtlpCollector", "create_ingest", "ingest_state"]

IPV4_LOOPBACK = "127.0.0.1"
IPV6_LOOPBACK = "::1"


def ingest_state(
    config: Config,
    module: Module,
    series: SeriesGauge | None = None,
    relabel: IngestRelabel | None = None,
) -> IngestState:
    """The store, translator and instruments of one ingest instance."""
    ingest = config.ingest
    limits = StoreLimits(
        max_series=ingest.max_series,
        max_series_per_metric=ingest.max_series_per_metric,
        series_ttl=ingest.series_ttl,
        exponential_max_buckets=ingest.exponential_max_buckets,
        worker_gauges=ingest.workers.gauges,
        worker_idle=ingest.workers.idle,
    )
    # the series callback reads ``store`` when observed, by then it is bound
    instruments = IngestInstruments.create(
        module.meter, lambda: len(store), series, workers=lambda: len(store.workers)
    )
    store = MetricStore(
        limits, on_expired=instruments.expired.add, on_retired=instruments.workers_retired.add
    )
    rules = TranslationRules(
        promote_resource_attributes=ingest.promote_resource_attributes,
        scope_labels=ingest.scope_labels,
        target_info=ingest.target_info,
        worker_attributes=ingest.workers.attributes,
        strategy=TranslationStrategy(ingest.translation_strategy),
    )
    return IngestState(store, Translator(rules), instruments, ingest.max_body_bytes, relabel)


def create_ingest(
    config: Config,
    module: Module,
    *,
    series: SeriesGauge | None = None,
    relabel: IngestRelabel | None = None,
) -> tuple[Component, OtlpCollector]:
    """The ingest listener (``ingest.listen``; also ``[::1]`` when that is 127.0.0.1).

    Args:
        config: the whole configuration (``ingest.*`` is used).
        module: the sidecar's module: its meter gets the ingest self metrics.
        series: the shared ``sidecar_series{source}`` gauge, when other sources report too.
        relabel: the relabel rules run before the store, if any (`sidecar.relabel.ingest`).

    Returns:
        The component to start and stop, and the collector of the ingested families.
    """
    state = ingest_state(config, module, series, relabel)
    listen = config.ingest.listen
    # port 0 (tests) would give the IPv6 listener a different random port: only the first
    also_v6 = listen.host == IPV4_LOOPBACK and listen.port != 0
    optional = [Address(IPV6_LOOPBACK, listen.port)] if also_v6 else []
    component = AiohttpComponent(
        "ingest", create_ingest_app(state), [listen], optional_listen=optional, **SERVER_KWARGS
    )
    utf8 = not TranslationStrategy(config.ingest.translation_strategy).escapes
    collector = OtlpCollector(state.store, utf8_labels=utf8, relabel=relabel)
    if collector.render_cache is not None:
        render_cache(module.meter, collector.render_cache)
    return component, collector
