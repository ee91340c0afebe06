"""Unified-view families → OTLP metrics data: one test per conversion rule."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import Gauge, Histogram, MetricsData, Sum
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from sidecar import __version__
from sidecar.export import ResourceRules, to_metrics_data

NOW, START = 2_000_000_000_000_000_000, 1_000_000_000_000_000_000
SIDECAR = Resource({"service.name": "sidecar"})
SCOPE = InstrumentationScope("causality-sidecar", __version__)
RULES = ResourceRules(SIDECAR, SCOPE)


def convert(*families: Metric) -> MetricsData:
    return to_metrics_data(families, RULES, NOW, START)


def only_metric(data: MetricsData):  # type: ignore[no-untyped-def]
    (rm,) = data.resource_metrics
    (sm,) = rm.scope_metrics
    (metric,) = sm.metrics
    return rm, sm, metric


def test_counter_is_a_cumulative_monotonic_sum_with_created_as_start() -> None:
    family = CounterMetricFamily("jobs", "Jobs", labels=["q"], created=1700.5)
    family.add_metric(["a"], 3, created=1700.5)
    rm, sm, metric = only_metric(convert(family))
    assert rm.resource is SIDECAR
    assert sm.scope is SCOPE
    assert metric.name == "jobs"
    assert metric.description == "Jobs"
    assert isinstance(metric.data, Sum)
    assert metric.data.is_monotonic
    (point,) = metric.data.data_points
    assert point.attributes == {"q": "a"}
    assert point.value == 3
    assert point.start_time_unix_nano == 1_700_500_000_000
    assert point.time_unix_nano == NOW


def test_counter_without_created_starts_at_the_exporters_start() -> None:
    family = CounterMetricFamily("jobs", "Jobs", value=1)
    _, _, metric = only_metric(convert(family))
    assert metric.data.data_points[0].start_time_unix_nano == START


def test_histogram_buckets_become_per_bucket_counts() -> None:
    family = HistogramMetricFamily("lat", "Latency", labels=["r"])
    family.add_metric(["/x"], [("0.1", 1), ("1.0", 3), ("+Inf", 4)], sum_value=5.5)
    _, _, metric = only_metric(convert(family))
    assert isinstance(metric.data, Histogram)
    (point,) = metric.data.data_points
    assert point.explicit_bounds == [0.1, 1.0]
    assert point.bucket_counts == [1, 2, 1]
    assert point.count == 4
    assert point.sum == 5.5
    assert point.attributes == {"r": "/x"}


def test_summary_becomes_gauges_of_its_samples() -> None:
    family = SummaryMetricFamily("gc", "GC", count_value=10, sum_value=2.5)
    family.add_sample("gc", {"quantile": "0.5"}, 0.1)
    data = convert(family)
    metrics = {m.name: m for m in data.resource_metrics[0].scope_metrics[0].metrics}
    assert set(metrics) == {"gc", "gc_count", "gc_sum"}
    assert all(isinstance(m.data, Gauge) for m in metrics.values())
    assert metrics["gc"].data.data_points[0].attributes == {"quantile": "0.5"}
    assert metrics["gc_count"].data.data_points[0].value == 10


def test_info_is_a_gauge_named_as_its_sample() -> None:
    family = InfoMetricFamily("build", "Build", value={"version": "1"})
    _, _, metric = only_metric(convert(family))
    assert metric.name == "build_info"
    assert isinstance(metric.data, Gauge)
    assert metric.data.data_points[0].attributes == {"version": "1"}


def test_ingested_series_go_back_under_their_resource_and_scope() -> None:
    target = InfoMetricFamily("target", "Target metadata")
    target.add_metric([], {"service_name": "app", "host_name": "h1"})
    family = GaugeMetricFamily(
        "depth", "Depth", labels=["service_name", "otel_scope_name", "otel_scope_version", "q"]
    )
    family.add_metric(["app", "lib", "2.0", "a"], 7)
    own = GaugeMetricFamily("own", "Own", value=1)
    data = convert(target, family, own)
    by_resource = {rm.resource.attributes.get("service.name"): rm for rm in data.resource_metrics}
    assert set(by_resource) == {"app", "sidecar"}
    app = by_resource["app"]
    assert dict(app.resource.attributes) == {"service.name": "app", "host_name": "h1"}
    (sm,) = app.scope_metrics
    assert (sm.scope.name, sm.scope.version) == ("lib", "2.0")
    (metric,) = sm.metrics
    assert metric.data.data_points[0].attributes == {"q": "a"}
    assert by_resource["sidecar"].resource is SIDECAR


def test_target_info_is_not_pushed_as_a_metric() -> None:
    target = GaugeMetricFamily("target_info", "Target metadata", labels=["service_name"])
    target.add_metric(["sidecar"], 1)
    assert convert(target).resource_metrics == []
