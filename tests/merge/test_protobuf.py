"""Merge targets answering protobuf (delimited ``io.prometheus.client.MetricFamily``).

The sidecar asks its targets in the scraper's order: a scraper asking for protobuf
(Prometheus with native histograms on) has the targets asked for protobuf first. Real
client_golang targets (node_exporter, Prometheus's own /metrics) answer it; the merged
protobuf answer holds their families as they served them. A target's native histograms
(here a second sidecar serving OTLP exponential histograms as native histograms) come
through intact into a protobuf answer and into a real Prometheus; when its protobuf reply
ends in a text answer, they are left out and counted in
``sidecar_merge_native_histograms_dropped_total``, at 0 from the start.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from sidecar.gen.io.prometheus.client import metrics_pb2 as pb
from sidecar.protobuf import CONTENT_TYPE, delimited
from sidecar.unified import UnifiedCollector
from tests.support.merge import PROTOBUF_CT, MakeRig, StartTarget, Target, target, value
from tests.support.otlp import Harness, epoint, exponential, request
from tests.support.prometheus import PrometheusFactory, PrometheusServer, static_scrape_config
from tests.support.protobuf import by_name

PROMETHEUS_NATIVE_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;q=0.6,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)  # Prometheus 2.42 with --enable-feature=native-histograms
DROPPED = "sidecar_merge_native_histograms_dropped_total"


async def get(url: str, headers: Mapping[str, str]) -> tuple[str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        assert r.status == 200
        return r.headers["Content-Type"], await r.read()


def shape(family: pb.MetricFamily) -> tuple[str, int, str, frozenset[frozenset[tuple[str, str]]]]:
    """A family without its values (they move between scrapes): name, type, help, series."""
    series = frozenset(frozenset((p.name, p.value) for p in m.label) for m in family.metric)
    return family.name, family.type, family.help, series


async def test_a_real_exporter_answers_protobuf_and_its_families_come_through(
    exporter_url: str, make_rig: MakeRig
) -> None:
    rig = await make_rig([target("exporter", exporter_url)])
    content_type, direct_body = await get(exporter_url, {"Accept": PROMETHEUS_NATIVE_ACCEPT})
    assert content_type.startswith("application/vnd.google.protobuf")  # client_golang
    response = await rig.client.get("/metrics", headers={"Accept": PROMETHEUS_NATIVE_ACCEPT})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/vnd.google.protobuf")
    merged = by_name(await response.read())
    _, after_body = await get(exporter_url, {"Accept": PROMETHEUS_NATIVE_ACCEPT})
    direct, after = by_name(direct_body), by_name(after_body)
    assert len(direct) > 20
    for name, family in direct.items():
        if name not in after:
            continue
        assert name in merged, name
        got = shape(merged[name])
        assert got[:3] == shape(family)[:3], name
        # every series present before and after the merged scrape is in it
        assert shape(family)[3] & shape(after[name])[3] <= got[3], name
    assert value(await rig.scrape(), "sidecar_merge_scrapes_total", result="success") == 2


def _native_body() -> bytes:
    """A target serving native histograms: a sidecar's protobuf answer after an OTLP push
    of exponential histograms (13 observations; 10 more at scale 12)."""
    harness = Harness()
    harness.push(
        request(
            exponential("latency", [epoint(0, (-1, [2, 0, 0, 10]), zero_count=1, total=55.0)]),
            exponential("fine", [epoint(12, (4096, [5, 5]), total=21.0)]),
            resource={},
        )
    )
    return UnifiedCollector([harness.collector]).render(CONTENT_TYPE, "").body


async def test_native_histograms_kept_in_protobuf_dropped_and_counted_in_text(
    start_target: StartTarget, make_rig: MakeRig
) -> None:
    body = _native_body()
    served = by_name(body)
    assert served["latency"].metric[0].histogram.positive_span  # native indeed
    app = Target(body, PROTOBUF_CT)
    rig = await make_rig([target("app", await start_target(app))])
    response = await rig.client.get("/metrics", headers={"Accept": PROMETHEUS_NATIVE_ACCEPT})
    merged = by_name(await response.read())
    assert app.requests[-1]["Accept"].startswith("application/vnd.google.protobuf")
    for name in ("latency", "fine"):
        assert merged[name] == served[name], name  # native parts intact, classic ones too
    (dropped,) = merged[DROPPED].metric
    assert dropped.counter.value == 0  # at 0 from the start
    text = await rig.scrape({"Accept": "text/plain;version=0.0.4"})
    assert app.requests[-1]["Accept"].startswith("text/plain")
    assert value(text, "latency_count") == 13  # the classic conversion stays
    assert value(text, "latency_bucket", le="8.0") == 13
    after = await rig.scrape({"Accept": "text/plain;version=0.0.4"})
    assert value(after, DROPPED, target="app") == 4  # 2 series, in each of 2 text answers


async def _prometheus_scraping(
    body: bytes,
    start_target: StartTarget,
    make_rig: MakeRig,
    prometheus_factory: PrometheusFactory,
) -> PrometheusServer:
    """A real Prometheus with native histograms on, scraping a sidecar that merges a
    target answering ``body`` in protobuf; its target is up."""
    rig = await make_rig([target("app", await start_target(Target(body, PROTOBUF_CT)))])
    server = rig.client.server
    prom = prometheus_factory(
        [static_scrape_config("sidecar", f"{server.host}:{server.port}")],
        extra_args=["--enable-feature=native-histograms"],
    )
    await prom.await_targets_up()
    return prom


async def test_prometheus_with_native_histograms_stores_a_targets_native_series(
    start_target: StartTarget,
    make_rig: MakeRig,
    prometheus_factory: PrometheusFactory,
) -> None:
    prom = await _prometheus_scraping(_native_body(), start_target, make_rig, prometheus_factory)
    assert (await prom.await_result("histogram_count(latency)")).values() == [13.0]
    assert (await prom.aquery("histogram_sum(latency)")).values() == [55.0]
    p90 = (await prom.aquery("histogram_quantile(0.9, latency)")).values()[0]
    assert 4.0 < p90 <= 8.0
    assert (await prom.aquery("latency_bucket")).is_empty  # stored native, not classic
    assert (await prom.aquery(f'{DROPPED}{{target="app"}}')).values() == [0.0]


def _float_native_body() -> bytes:
    """A target serving a float native histogram (``sample_count_float``,
    ``zero_count_float``, absolute float ``positive_count``: what a histogram of weighted
    or rate-derived observations is), 7.5 observations: 1.5 in the zero bucket, 2.5 in
    (1, 2], 3.5 in (2, 4] (schema 0), summing to 20.25, with one classic float bucket."""
    histogram = pb.Histogram(
        sample_count_float=7.5,
        sample_sum=20.25,
        schema=0,
        zero_threshold=1e-128,
        zero_count_float=1.5,
        positive_span=[pb.BucketSpan(offset=1, length=2)],
        positive_count=[2.5, 3.5],
        bucket=[pb.Bucket(upper_bound=2.0, cumulative_count_float=4.0)],
    )
    family = pb.MetricFamily(
        name="weighted",
        help="Weighted observations.",
        type=pb.HISTOGRAM,
        metric=[pb.Metric(label=[pb.LabelPair(name="path", value="/a")], histogram=histogram)],
    )
    return delimited(family)


async def test_float_native_histograms_are_kept_in_protobuf(
    start_target: StartTarget, make_rig: MakeRig
) -> None:
    body = _float_native_body()
    served = by_name(body)
    app = Target(body, PROTOBUF_CT)
    rig = await make_rig([target("app", await start_target(app))])
    response = await rig.client.get("/metrics", headers={"Accept": PROMETHEUS_NATIVE_ACCEPT})
    merged = by_name(await response.read())
    assert merged["weighted"] == served["weighted"]  # float counts and native part intact
    (dropped,) = merged[DROPPED].metric
    assert dropped.counter.value == 0
    text = await rig.scrape({"Accept": "text/plain;version=0.0.4"})
    assert value(text, "weighted_count", path="/a") == 7.5  # the classic part in text
    assert value(text, "weighted_bucket", path="/a", le="2.0") == 4.0


async def test_prometheus_stores_a_targets_float_native_histogram(
    start_target: StartTarget,
    make_rig: MakeRig,
    prometheus_factory: PrometheusFactory,
) -> None:
    body = _float_native_body()
    prom = await _prometheus_scraping(body, start_target, make_rig, prometheus_factory)
    assert (await prom.await_result("histogram_count(weighted)")).values() == [7.5]
    assert (await prom.aquery("histogram_sum(weighted)")).values() == [20.25]
    assert (await prom.aquery("weighted_bucket")).is_empty  # stored native, not classic
