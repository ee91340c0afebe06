"""The reverse proxy: transparent, streaming, byte-exact, with per-request RED metrics.

One module per concern: `routes` (bounded labels), `headers` (hop-by-hop policy),
`upstream` (pool and error translation), `tls` (TLS to an ``https://`` upstream),
`server` (client side and the handler), `websocket` (upgrades), `metrics`
(instruments), `proxylog` (failure lines and the access log), `inspection` (the events
hook).
"""

from __future__ import annotations

from sidecar.config import Config
from sidecar.observability import Metrics, Module
from sidecar.proxy.inspection import EventInspector
from sidecar.proxy.metrics import ProxyMetrics, mergeable_aggregations, proxy_views
from sidecar.proxy.routes import RouteLabeler
from sidecar.proxy.server import ProxyComponent, ProxyHandler
from sidecar.proxy.upstream import Upstream

__all__ = ["EventInspector", "ProxyComponent", "create_proxy", "proxy_views"]


def create_proxy(
    config: Config,
    module: Module,
    metrics: Metrics,
    inspector: EventInspector | None = None,
    *,
    record_metrics: bool = True,
) -> ProxyComponent:
    """Build the proxy component (not started) from the config and the metrics module.

    Args:
        config: the whole config (``proxy.*`` and ``events.max_body_bytes`` are read).
        module: the observability module whose meter gets the proxy's extra instruments.
        metrics: the catalogue whose three HTTP instruments the proxy records into.
        inspector: the events hook, used only when ``events.enabled``.
        record_metrics: False only for benchmarks measuring the cost of metrics.
    """
    holder: list[ProxyHandler] = []
    proxy_metrics = ProxyMetrics(
        module.meter,
        metrics,
        lambda: holder[0].in_flight if holder else 0,
        aggregations=mergeable_aggregations(module),
        enabled=record_metrics,
        natives=module.natives if config.proxy.native_histograms else None,
    )
    p = config.proxy
    labeler = RouteLabeler(
        p.routes, p.unmatched_routes, p.max_route_labels, on_overflow=proxy_metrics.overflow
    )
    upstream = Upstream(p)
    handler = ProxyHandler(config, upstream, proxy_metrics, labeler, inspector)
    holder.append(handler)
    return ProxyComponent(config, handler, upstream, proxy_metrics)
