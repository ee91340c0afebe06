"""The gzip pass-through tests' app and what its compressed body looks like, shared by the
merge and relabel suites."""

from __future__ import annotations

import gzip

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.gzipjoin import deflate_span


def app_registry() -> CollectorRegistry:
    """An app of 600 series: counters (with _created), gauges and a histogram."""
    registry = CollectorRegistry()
    requests = Counter("app_requests", "Requests", ["route", "code"], registry=registry)
    inflight = Gauge("app_inflight", "In flight", ["route"], registry=registry)
    latency = Histogram("app_latency_seconds", "Latency", registry=registry)
    for i in range(300):
        requests.labels(f"/r/{i}", "200").inc(i)
        inflight.labels(f"/r/{i}").set(i % 7)
    latency.observe(0.3)
    return registry


def blocks(body: bytes) -> bytes:
    """The deflate blocks of the member the test target sends for ``body``."""
    member = gzip.compress(body)  # the target's compression; gzip's blocks do not vary
    span = deflate_span(member)
    assert span is not None
    return member[span[0] : span[1]]
