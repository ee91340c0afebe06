"""OTLP exponential histograms reach Prometheus as native histograms (protobuf only).

A real Prometheus (Debian's 2.42 with ``--enable-feature=native-histograms``, which asks
for protobuf first) scrapes the sidecar after exponential histograms were pushed;
``histogram_count``, ``histogram_sum`` and ``histogram_quantile`` over the native series
answer what was pushed. A text scraper keeps getting the classic conversion.
"""

from __future__ import annotations

from aiohttp import web

from sidecar.unified import UnifiedCollector, metrics_handler
from tests.support.otlp import Harness, epoint, exponential, request
from tests.support.prometheus import prometheus_factory, static_scrape_config  # noqa: F401

DELTA = 1  # AGGREGATION_TEMPORALITY_DELTA


def _pushed() -> Harness:
    harness = Harness()
    harness.push(
        request(
            # scale 0 (base 2): 10 observations in (4, 8], 2 in (0.5, 1], 1 zero; sum 55
            exponential("latency", [epoint(0, (-1, [2, 0, 0, 10]), zero_count=1, total=55.0)]),
            # scale 12 (above native histograms' 8): down-scaled, nothing lost
            exponential("fine", [epoint(12, (4096, [5, 5]), total=21.0)]),
            resource={},
        )
    )
    return harness


async def test_prometheus_reads_native_histograms(aiohttp_server, prometheus_factory):  # noqa: F811
    harness = _pushed()
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(UnifiedCollector([harness.collector])))
    server = await aiohttp_server(app)
    prom = prometheus_factory(
        [static_scrape_config("sidecar", f"127.0.0.1:{server.port}")],
        extra_args=["--enable-feature=native-histograms"],
    )
    await prom.await_targets_up()
    count = await prom.await_result("histogram_count(latency)")
    assert count.values() == [13.0]
    assert (await prom.aquery("histogram_sum(latency)")).values() == [55.0]
    p90 = (await prom.aquery("histogram_quantile(0.9, latency)")).values()[0]
    assert 4.0 < p90 <= 8.0  # the 10 observations' bucket
    p10 = (await prom.aquery("histogram_quantile(0.1, latency)")).values()[0]
    assert 0.5 < p10 <= 1.0
    assert (await prom.aquery("histogram_count(fine)")).values() == [10.0]
    # scale 12, bucket 4096 is (2^(4097/4096)...]: at schema 8 it is bucket 256+1 = (2, 2^(257/256)]
    fine = (await prom.aquery("histogram_quantile(0.5, fine)")).values()[0]
    assert 2.0 < fine <= 2.0 ** (257 / 256)
    # stored as native: no classic _bucket series
    assert (await prom.aquery("latency_bucket")).is_empty


def test_text_keeps_the_classic_conversion():
    body = UnifiedCollector([_pushed().collector]).render("text/plain", "").body.decode()
    assert 'latency_bucket{le="8.0"} 13.0' in body
    assert "latency_count 13.0" in body
