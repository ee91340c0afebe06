"""Per-source data point totals (the status page's ingest table): exact per resource."""

from __future__ import annotations

from sidecar.ingest.store import StoreLimits
from sidecar.status.inventory import store_sources
from tests.support.otlp import DELTA, Harness, counter, gauge, number, request


def resource(name: str, instance: str) -> dict[str, str]:
    return {"service.name": name, "service.instance.id": instance}


def test_points_are_counted_per_resource_even_in_one_request() -> None:
    harness = Harness(StoreLimits(series_ttl=60), scope_labels=True, target_info=True)
    store = harness.store
    first = request(
        counter("jobs", [number(3), number(4, {"q": "b"})]), resource=resource("a", "1")
    )
    second = request(
        gauge("depth", [number(1)]),
        # a delta point older than the one already stored is rejected (out of order) below
        counter("ticks", [number(5, start=10, time=20)], temporality=DELTA),
        resource=resource("b", "2"),
    )
    first.resource_metrics.extend(second.resource_metrics)  # two resources, one request
    harness.push(first)
    late = request(
        counter("ticks", [number(1, start=1, time=5)], temporality=DELTA),
        resource=resource("b", "2"),
    )
    harness.push(late)

    sources = {(s.service_name, s.service_instance_id): s for s in store_sources(store)}
    assert (sources["a", "1"].accepted, sources["a", "1"].rejected) == (2, 0)
    assert (sources["b", "2"].accepted, sources["b", "2"].rejected) == (2, 1)

    harness.now = 61.0  # idle past the TTL: the totals go with the source's series
    store.expire()
    assert store.sources == {}


def test_translation_rejects_count_for_their_resource() -> None:
    harness = Harness(scope_labels=True, target_info=True)
    store = harness.store
    bad = counter("", [number(1), number(2)])  # no name: both points rejected at translation
    harness.push(request(bad, resource=resource("c", "3")))
    assert (store.sources["c", "3"].accepted, store.sources["c", "3"].rejected) == (0, 2)
