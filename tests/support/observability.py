"""Recording into every instrument of the sidecar's catalogue (`sidecar.observability`)."""

from __future__ import annotations

from sidecar.observability import Metrics


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
