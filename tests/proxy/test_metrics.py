"""The proxy's design §6 metrics on a real PrometheusMetricReader, and the cardinality bound."""

from __future__ import annotations

import asyncio
import random
import string

from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.conftest import RELEASE, ProxyFactory, wait_for

PROXY_FAMILIES = {
    "http_request_duration_milliseconds",
    "http_request",  # http_request_total's family name in the parser
    "http_request_errors",
    "http_request_time_to_first_byte_milliseconds",
    "http_request_body_size_bytes",
    "http_response_body_size_bytes",
    "http_requests_in_flight",
    "sidecar_proxy_errors",
    "sidecar_cardinality_overflow",
}


async def test_every_proxy_metric_has_its_name_type_and_labels(make_proxy: ProxyFactory) -> None:
    p = await make_proxy(routes=("/status/{code}",))
    async with p.session.post(p.url + "/echo", data=b"x" * 300) as r:
        assert await r.read() == b"x" * 300
    async with p.session.get(p.url + "/status/404") as r:
        assert r.status == 404
    families = {f.name: f for f in text_string_to_metric_families(p.metrics_text())}
    expected_types = {
        "http_request_duration_milliseconds": "histogram",
        "http_request": "counter",
        "http_request_errors": "counter",
        "http_request_time_to_first_byte_milliseconds": "histogram",
        "http_request_body_size_bytes": "histogram",
        "http_response_body_size_bytes": "histogram",
        "http_requests_in_flight": "gauge",
    }
    for name, kind in expected_types.items():
        assert families[name].type == kind, name
    assert p.sample("http_request_total", method="POST", path="/echo", status="200") == 1
    assert p.sample("http_request_errors_total", method="GET", path="/status/{code}", status="404")
    assert p.sample("http_request_errors_total", path="/echo") == 0
    assert p.sample("http_request_body_size_bytes_sum", method="POST", path="/echo") == 300
    assert p.sample("http_response_body_size_bytes_sum", method="POST", path="/echo") == 300
    assert p.sample("http_request_time_to_first_byte_milliseconds_count", path="/echo") == 1
    ttfb = p.sample("http_request_time_to_first_byte_milliseconds_sum", path="/echo")
    total = p.sample("http_request_duration_milliseconds_sum", path="/echo")
    assert 0 < ttfb <= total
    buckets = [
        float(s.labels["le"])
        for s in families["http_request_duration_milliseconds"].samples
        if s.name.endswith("_bucket") and s.labels["path"] == "/echo"
    ]
    assert buckets[:3] == [0.5, 1.0, 2.5]
    assert buckets[-2:] == [60000.0, float("inf")]
    ttfb_samples = families["http_request_time_to_first_byte_milliseconds"].samples
    assert all("status" not in s.labels for s in ttfb_samples)


async def test_methods_outside_the_standard_set_are_other(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    async with p.session.request("PROPFIND", p.url + "/count") as r:
        assert r.status == 200
    assert p.sample("http_request_total", method="_OTHER", path="/count") == 1


async def test_in_flight_gauge_counts_open_requests(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    assert p.upstream_app is not None
    tasks = [asyncio.ensure_future(p.session.get(p.url + "/slow")) for _ in range(3)]
    await wait_for(lambda: p.sample("http_requests_in_flight") == 3)
    p.upstream_app[RELEASE].set()
    for t in tasks:
        (await t).close()
    await wait_for(lambda: p.sample("http_requests_in_flight") == 0)


def _series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Distinct (family, label set without ``le``) among the proxy families."""
    out = set()
    for family in text_string_to_metric_families(text):
        if family.name not in PROXY_FAMILIES:
            continue
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            out.add((family.name, labels))
    return out


async def test_twenty_thousand_random_paths_stay_bounded(make_proxy: ProxyFactory) -> None:
    """Ids collapse; random names stop at max_route_labels; the rest is __other__."""
    p = await make_proxy(max_route_labels=40)
    rng = random.Random(7)
    paths = []
    for i in range(20_000):
        kind = i % 4
        if kind == 0:
            paths.append(f"/orders/{rng.randrange(10**12)}")
        elif kind == 1:
            paths.append(f"/blob/{rng.randbytes(16).hex()}")
        else:
            word = "".join(rng.choices(string.ascii_lowercase, k=10))
            paths.append(f"/{word}/x")
    statuses: list[int] = []

    async def worker(mine: list[str]) -> None:
        for path in mine:
            async with p.session.get(p.url + path) as r:
                statuses.append(r.status)

    await asyncio.gather(*(worker(paths[i::16]) for i in range(16)))
    assert len(statuses) == 20_000
    assert set(statuses) == {404}
    series = _series(p.metrics_text())
    assert len(series) < 300, len(series)
    paths_seen = {dict(labels).get("path") for _, labels in series}
    assert {"/orders/{id}", "/blob/{id}", "__other__"} <= paths_seen
    overflowed = p.sample("sidecar_cardinality_overflow_total", metric="http_request_path")
    assert overflowed >= 10_000 - 40
    assert p.sample("http_request_total", path="__other__", status="404") == overflowed
