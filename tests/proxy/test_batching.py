"""Batched recording exposes exactly what recording every value directly would.

The same exchanges go into two modules: one with the proxy's views (batched: histograms
merged at collection) and one recording every value through the SDK. Their Prometheus
exposition must hold the same lines, across several collections, and a second reader with
delta temporality must see the same totals as the cumulative one.
"""

from __future__ import annotations

import random
import threading

import pytest
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import generate_latest

from sidecar.config import ProxyConfig
from sidecar.observability import Metrics, Module
from sidecar.proxy.metrics import (
    BODY_SIZE_BUCKETS_BYTES,
    FOLD_EVERY,
    ProxyMetrics,
    mergeable_aggregations,
    proxy_views,
)


def _plain_views(config: ProxyConfig) -> tuple[View, ...]:
    latency = ExplicitBucketHistogramAggregation(list(config.latency_buckets_ms))
    sizes = ExplicitBucketHistogramAggregation(list(BODY_SIZE_BUCKETS_BYTES))
    return (
        View(instrument_name="http.request.duration", aggregation=latency),
        View(instrument_name="http.request.time_to_first_byte", aggregation=latency),
        View(instrument_name="http.request.body.size", aggregation=sizes),
        View(instrument_name="http.response.body.size", aggregation=sizes),
    )


def _exchanges(rng: random.Random, n: int) -> list[tuple]:
    out = []
    for _ in range(n):
        # dyadic values: float sums are exact whatever the order of addition
        duration = rng.randrange(1, 4000) / 8
        out.append((
            rng.choice(["GET", "POST"]),
            rng.choice(["/a", "/b/{id}", "__other__"]),
            rng.choice([200, 200, 404, 503]),
            duration,
            duration / 2 if rng.random() < 0.9 else None,
            rng.randrange(0, 10**6),
            rng.randrange(0, 10**7),
        ))  # fmt: skip
    return out


def _batched(module: Module, fold_every: int) -> ProxyMetrics:
    """The proxy's metrics on ``module``, histograms batched through its views."""
    return ProxyMetrics(
        module.meter,
        Metrics.create(module.meter),
        lambda: 0,
        aggregations=mergeable_aggregations(module),
        fold_every=fold_every,
    )


def _lines(module: Module) -> list[str]:
    """Exposition lines, sorted: series order follows first-recording order, values must not."""
    return sorted(generate_latest(module.registry).decode().splitlines())


@pytest.mark.parametrize("fold_every", [FOLD_EVERY, 4096], ids=["default", "folds-seldom"])
def test_batched_exposition_equals_direct_recording(fold_every: int) -> None:
    config = ProxyConfig()
    delta = InMemoryMetricReader(preferred_temporality={SdkHistogram: AggregationTemporality.DELTA})
    batched_module = Module.new("t", views=proxy_views(config), extra_readers=(delta,))
    direct_module = Module.new("t", views=_plain_views(config))
    batched = _batched(batched_module, fold_every)
    direct = ProxyMetrics(
        direct_module.meter, Metrics.create(direct_module.meter), lambda: 0, fold_every=1
    )
    assert batched.batched_histograms
    assert not direct.batched_histograms
    rng = random.Random(3)
    delta_count = 0
    for round_ in range(4):
        for exchange in _exchanges(rng, 500 * (round_ + 1)):
            batched.exchange(*exchange)
            direct.exchange(*exchange)
        batched.overflow()
        direct.overflow()
        assert _lines(batched_module) == _lines(direct_module)
        data = delta.get_metrics_data()
        assert data is not None
        for metric in data.resource_metrics[0].scope_metrics[0].metrics:
            if metric.name == "http.request.duration":
                delta_count += sum(p.count for p in metric.data.data_points)
    assert delta_count == 500 + 1000 + 1500 + 2000


def test_folds_racing_a_collection_thread_lose_and_double_nothing() -> None:
    # A collection (an OTLP export) may run on another thread while the loop logs and folds.
    config = ProxyConfig()
    module = Module.new("t", views=proxy_views(config))
    metrics = _batched(module, fold_every=64)
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            metrics.flush()

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        for i in range(20_000):
            metrics.exchange("GET", "/a", 200, 1.0, 0.5, i % 7, 3)
    finally:
        stop.set()
        collector.join()
    text = generate_latest(module.registry).decode()
    totals = [line for line in text.splitlines() if line.startswith("http_request_total{")]
    assert len(totals) == 1
    assert float(totals[0].rsplit(" ", 1)[1]) == 20_000
    counts = [
        line
        for line in text.splitlines()
        if line.startswith("http_request_duration_milliseconds_count")
    ]
    assert float(counts[0].rsplit(" ", 1)[1]) == 20_000
