"""A real Prometheus scrapes a sidecar merging an OpenMetrics app with duplicates and a type clash."""

from __future__ import annotations

from prometheus_client import Gauge

from tests.support.merge import OPENMETRICS_CT, MakeRig, StartTarget, Target, target
from tests.support.prometheus import prometheus_factory, static_scrape_config  # noqa: F401

APP = b"""\
# HELP shared Shared.
# TYPE shared gauge
shared{a="1"} 99.0
shared{a="2"} 2.0
# HELP clash Clash.
# TYPE clash counter
clash_total 5.0
# HELP app_latency_seconds Latency.
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le="0.1"} 1.0
app_latency_seconds_bucket{le="+Inf"} 4.0 # {trace_id="abc"} 2.0
app_latency_seconds_count 4.0
app_latency_seconds_sum 5.5
# HELP app_orders Orders.
# TYPE app_orders counter
app_orders_total{shop="x"} 7.0
# EOF
"""


async def test_prometheus_scrapes_the_merged_exposition(
    start_target: StartTarget,
    make_rig: MakeRig,
    prometheus_factory,  # noqa: F811
) -> None:
    app = Target(APP, OPENMETRICS_CT)
    url = await start_target(app)
    rig = await make_rig([target("app", url, source="app")])
    Gauge("shared", "Owned", ["a", "source"], registry=rig.module.registry).labels("1", "app").set(
        1
    )
    # a gauge of the counter's sample name: a real clash (a gauge "clash" would be none)
    Gauge("clash_total", "Owned", registry=rig.module.registry).set(3)
    server = rig.client.server
    prom = prometheus_factory([static_scrape_config("sidecar", f"{server.host}:{server.port}")])
    targets = await prom.await_targets_up()
    assert targets[0]["lastError"] == ""
    assert (await prom.await_result('app_orders_total{source="app",shop="x"}')).values() == [7.0]
    assert (await prom.await_result('app_latency_seconds_count{source="app"}')).values() == [4.0]
    shared = await prom.await_result('shared{a=~"1|2"}')
    assert sorted(shared.values()) == [
        1.0,
        2.0,
    ]  # the sidecar's own series won, the app's other one merged
    assert (await prom.await_result("clash_total")).values() == [3.0]  # the app's counter dropped
    conflicts = await prom.await_result('sidecar_merge_conflicts_total{kind="type"} > 0')
    assert not conflicts.is_empty
    scrapes = await prom.await_result('sidecar_merge_scrapes_total{target="app",result="success"}')
    assert scrapes.values()[0] >= 1
