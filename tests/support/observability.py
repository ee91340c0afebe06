"""The sidecar's instrument catalogue (`sidecar.observability`): the names it exposes, and
recording into every instrument."""

from __future__ import annotations

from sidecar.batching import mergeable_aggregations
from sidecar.config import ProxyConfig
from sidecar.observability import Metrics, Module
from sidecar.proxy.metrics import ProxyMetrics, proxy_views

# The sample names the issue lists, as they appear in the text.
EXPOSED_NAMES = [
    "http_request_duration_milliseconds", "http_request_total", "http_request_errors_total",
    "nats_messages_processed_total", "nats_batch_size", "nats_flush_latency_milliseconds",
    "nats_ack_latency_milliseconds", "s3_files_written_total", "s3_file_size_bytes",
    "dedup_dropped_total", "dlq_depth", "rules_evaluated_total", "alerts_fired_total",
    "webhook_success_total", "webhook_failure_total",
]  # fmt: skip


def record_everything(metrics: Metrics) -> None:
    """One value into each catalogue instrument (an up-down counter moved both ways)."""
    attrs = {"stream": "events"}
    for name in ("http_request_duration", "nats_batch_size", "nats_flush_latency",
                 "nats_ack_latency", "s3_file_size"):  # fmt: skip
        getattr(metrics, name).record(7, attrs)
    for name in ("http_request_total", "http_request_errors", "nats_messages_processed",
                 "s3_files_written", "dedup_dropped", "rules_evaluated", "alerts_fired",
                 "webhook_success", "webhook_failure"):  # fmt: skip
        getattr(metrics, name).add(1, attrs)
    metrics.dlq_depth.add(3, attrs)
    metrics.dlq_depth.add(-1, attrs)


def proxy_module(name: str, in_flight: int = 0) -> tuple[Module, ProxyMetrics]:
    """A module with the proxy's views and a `ProxyMetrics` recording into it, as the
    sidecar builds them (histograms batched); shut the module down after use."""
    module = Module.new(name, views=proxy_views(ProxyConfig()))
    metrics = ProxyMetrics(
        module.meter,
        Metrics.create(module.meter),
        lambda: in_flight,
        aggregations=mergeable_aggregations(module),
    )
    return module, metrics
