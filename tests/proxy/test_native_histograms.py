"""``proxy.native_histograms``: the proxy's latency histograms as native histograms too.

In protobuf each latency series carries both its classic buckets and a native histogram
(schema 3), as client_golang writes a histogram with both configured; text and
OpenMetrics answers are unchanged. A real Prometheus (Debian's 2.42 with
``--enable-feature=native-histograms``, which asks for protobuf first) scraping the proxy's
metrics after real proxied requests answers ``histogram_count`` and ``histogram_quantile``
over the native series.
"""

from __future__ import annotations

import math

from aiohttp import web

from sidecar.config import DEFAULT_LATENCY_BUCKETS_MS
from sidecar.gen.io.prometheus.client import metrics_pb2 as pb
from sidecar.protobuf import CONTENT_TYPE
from sidecar.proxy.native import SCHEMA, bucket_index
from sidecar.unified import UnifiedCollector, metrics_handler
from tests.support.prometheus import check_metrics, prometheus_factory, static_scrape_config  # noqa: F401
from tests.support.protobuf import by_name
from tests.support.proxy import Proxied, ProxyFactory

DURATION = "http_request_duration_milliseconds"
TTFB = "http_request_time_to_first_byte_milliseconds"
REQUESTS = 40


def _labels(metric: pb.Metric) -> dict[str, str]:
    return {pair.name: pair.value for pair in metric.label}


async def _proxied(p: Proxied, count: int = REQUESTS) -> None:
    for _ in range(count):
        async with p.session.post(p.url + "/echo", data=b"x" * 100) as r:
            assert r.status == 200
            await r.read()


def _protobuf(p: Proxied) -> dict[str, pb.MetricFamily]:
    answer = UnifiedCollector([p.module.registry]).render(CONTENT_TYPE, "")
    assert answer.content_type.startswith("application/vnd.google.protobuf")
    return by_name(answer.body)


def _native_total(h: pb.Histogram) -> int:
    """The observations in a native histogram's buckets (delta-encoded counts)."""
    total, count = h.zero_count, 0
    for delta in h.positive_delta:
        count += delta
        total += count
    return total


def test_bucket_index_is_the_schema_3_bucket():
    base = 2 ** (2**-SCHEMA)
    for value in (0.001, 0.37, 1.0, 1.5, 2.0, 3.3, 100.0, 59_999.0):
        k = bucket_index(value)
        assert base**k < value * (1 + 1e-12), value
        assert value <= base ** (k + 1) * (1 + 1e-12), value


async def test_protobuf_carries_native_and_classic_buckets(make_proxy: ProxyFactory) -> None:
    p = await make_proxy(native_histograms=True)
    await _proxied(p)
    families = _protobuf(p)
    for name in (DURATION, TTFB):
        (series,) = [m for m in families[name].metric if _labels(m).get("path") == "/echo"]
        h = series.histogram
        assert h.sample_count == REQUESTS
        assert len(h.bucket) == len(DEFAULT_LATENCY_BUCKETS_MS)  # the classic ones, still there
        assert h.bucket[-1].cumulative_count == REQUESTS  # (below the implicit +Inf)
        assert h.schema == SCHEMA
        assert h.zero_threshold > 0
        assert h.positive_span
        assert _native_total(h) == REQUESTS
    # text: the classic histogram only, as before
    assert p.sample(f"{DURATION}_count", path="/echo") == REQUESTS
    text = UnifiedCollector([p.module.registry]).render("text/plain", "").body.decode()
    check = check_metrics(text)  # promtool
    assert check.passes, check.unexpected
    assert f"{DURATION}_bucket{{" in text
    # more requests: the next collection's native parts have them too
    await _proxied(p, 5)
    h = next(m for m in _protobuf(p)[DURATION].metric if _labels(m).get("path") == "/echo")
    assert h.histogram.sample_count == _native_total(h.histogram) == REQUESTS + 5


async def test_off_by_default_no_native_fields(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    await _proxied(p, 3)
    h = next(m for m in _protobuf(p)[DURATION].metric if _labels(m).get("path") == "/echo")
    assert h.histogram.sample_count == 3
    assert not h.histogram.positive_span
    assert h.histogram.zero_threshold == 0


def _classic_bounds(p: Proxied, quantile: float) -> tuple[float, float]:
    """The classic bucket (lower, upper bound) holding ``quantile`` of the /echo durations."""
    h = next(m for m in _protobuf(p)[DURATION].metric if _labels(m).get("path") == "/echo")
    rank = quantile * h.histogram.sample_count
    lower = 0.0
    for bucket in h.histogram.bucket:
        if bucket.cumulative_count >= rank:
            return lower, bucket.upper_bound
        lower = bucket.upper_bound
    return lower, math.inf


async def test_prometheus_answers_histogram_quantile_over_the_proxy_latency(
    make_proxy: ProxyFactory,
    aiohttp_server,
    prometheus_factory,  # noqa: F811
) -> None:
    p = await make_proxy(native_histograms=True)
    await _proxied(p)
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(UnifiedCollector([p.module.registry])))
    server = await aiohttp_server(app)
    prom = prometheus_factory(
        [static_scrape_config("sidecar", f"127.0.0.1:{server.port}")],
        extra_args=["--enable-feature=native-histograms"],
    )
    await prom.await_targets_up()
    selector = f'{DURATION}{{path="/echo"}}'
    count = await prom.await_result(f"histogram_count({selector})")
    assert count.values() == [float(REQUESTS)]
    p90 = (await prom.aquery(f"histogram_quantile(0.9, {selector})")).values()[0]
    lower, upper = _classic_bounds(p, 0.9)
    factor = 2 ** (2**-SCHEMA)  # one native bucket's width
    assert lower / factor <= p90 <= upper * factor, (lower, p90, upper)
    ttfb = await prom.aquery(f'histogram_count({TTFB}{{path="/echo"}})')
    assert ttfb.values() == [float(REQUESTS)]
    # stored as native histograms: one series, no _bucket/_count/_sum series
    assert (await prom.aquery(f'{DURATION}_bucket{{path="/echo"}}')).is_empty
    assert (await prom.aquery(f'{DURATION}_count{{path="/echo"}}')).is_empty
