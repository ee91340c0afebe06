"""The proxy's design §6 metrics on a real PrometheusMetricReader, and the cardinality bound."""

from __future__ import annotations

import asyncio
import random
import string

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from sidecar import __version__
from sidecar.batching import mergeable_aggregations
from sidecar.config import ProxyConfig
from sidecar.observability import Metrics, Module
from sidecar.proxy.metrics import ProxyMetrics, proxy_views
from sidecar.unified import UnifiedCollector
from tests.support.observability import proxy_module
from tests.support.prometheus import check_metrics
from tests.support.proxy import RELEASE, ProxyFactory, wait_for

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


# Every family the proxy records HTTP exchanges into: each of their series says reporter="sidecar".
REPORTED_FAMILIES = PROXY_FAMILIES - {"sidecar_proxy_errors", "sidecar_cardinality_overflow"}
SCOPE = f'otel_scope_name="causality-sidecar",otel_scope_version="{__version__}"'
GOLDEN_TEXT = f"""\
# HELP http_request_duration_milliseconds HTTP request duration
# TYPE http_request_duration_milliseconds histogram
http_request_duration_milliseconds_bucket{{le="10.0",method="GET",{SCOPE},path="/users/{{id}}",reporter="sidecar",status="200"}} 1.0
http_request_duration_milliseconds_bucket{{le="100.0",method="GET",{SCOPE},path="/users/{{id}}",reporter="sidecar",status="200"}} 1.0
http_request_duration_milliseconds_bucket{{le="+Inf",method="GET",{SCOPE},path="/users/{{id}}",reporter="sidecar",status="200"}} 1.0
http_request_duration_milliseconds_count{{method="GET",{SCOPE},path="/users/{{id}}",reporter="sidecar",status="200"}} 1.0
http_request_duration_milliseconds_sum{{method="GET",{SCOPE},path="/users/{{id}}",reporter="sidecar",status="200"}} 5.0
http_request_duration_milliseconds_bucket{{le="10.0",method="POST",{SCOPE},path="/orders",reporter="sidecar",status="503"}} 0.0
http_request_duration_milliseconds_bucket{{le="100.0",method="POST",{SCOPE},path="/orders",reporter="sidecar",status="503"}} 1.0
http_request_duration_milliseconds_bucket{{le="+Inf",method="POST",{SCOPE},path="/orders",reporter="sidecar",status="503"}} 1.0
http_request_duration_milliseconds_count{{method="POST",{SCOPE},path="/orders",reporter="sidecar",status="503"}} 1.0
http_request_duration_milliseconds_sum{{method="POST",{SCOPE},path="/orders",reporter="sidecar",status="503"}} 50.0
# HELP http_request_total Total HTTP requests
# TYPE http_request_total counter
http_request_total{{method="GET",{SCOPE},path="/users/{{id}}",reporter="sidecar",status="200"}} 1.0
http_request_total{{method="POST",{SCOPE},path="/orders",reporter="sidecar",status="503"}} 1.0
# HELP http_request_errors_total HTTP request errors (4xx, 5xx)
# TYPE http_request_errors_total counter
http_request_errors_total{{method="POST",{SCOPE},path="/orders",reporter="sidecar",status="503"}} 1.0
# HELP http_requests_in_flight Requests being proxied
# TYPE http_requests_in_flight gauge
http_requests_in_flight{{{SCOPE},reporter="sidecar"}} 2.0
"""
GOLDEN_OPENMETRICS = (
    GOLDEN_TEXT.replace(
        "# TYPE http_request_duration_milliseconds histogram\n",
        "# TYPE http_request_duration_milliseconds histogram\n"
        "# UNIT http_request_duration_milliseconds milliseconds\n",
    )
    .replace("# HELP http_request_total ", "# HELP http_request ")
    .replace("# TYPE http_request_total ", "# TYPE http_request ")
    .replace("# HELP http_request_errors_total ", "# HELP http_request_errors ")
    .replace("# TYPE http_request_errors_total ", "# TYPE http_request_errors ")
)
GOLDEN_FAMILIES = (
    "http_request_duration_milliseconds",
    "http_request",
    "http_request_errors",
    "http_requests_in_flight",
)


def _recorded_module() -> Module:
    """A module with two exchanges recorded through `ProxyMetrics` (fixed values)."""
    module = Module.new("golden", views=proxy_views(ProxyConfig(latency_buckets_ms=(10.0, 100.0))))
    metrics = ProxyMetrics(
        module.meter,
        Metrics.create(module.meter),
        lambda: 2,
        aggregations=mergeable_aggregations(module),
    )
    metrics.exchange("GET", "/users/{id}", 200, 5.0, 2.0, 0, 10)
    metrics.exchange("POST", "/orders", 503, 50.0, 40.0, 7, 3)
    return module


def _blocks(text: str, families: tuple[str, ...]) -> str:
    """The HELP/TYPE/UNIT lines and samples of ``families``, in exposition order."""
    out: list[str] = []
    keep = False
    for line in text.splitlines(keepends=True):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            keep = name in families or name.removesuffix("_total") in families
        elif line == "# EOF\n":
            keep = False
        if keep:
            out.append(line)
    return "".join(out)


async def test_golden_exposition_has_the_reporter_and_no_empty_label() -> None:
    """Issue 15 (7, 9): reporter="sidecar" on the proxy's series, no otel_scope_schema_url=""."""
    module = _recorded_module()
    try:
        text = generate_latest(module.registry).decode()
        openmetrics = generate_openmetrics(module.registry).decode()
        assert _blocks(text, GOLDEN_FAMILIES) == GOLDEN_TEXT
        assert _blocks(openmetrics, GOLDEN_FAMILIES) == GOLDEN_OPENMETRICS
        for body in (text, openmetrics):
            assert '=""' not in body, [line for line in body.splitlines() if '=""' in line]
        check = check_metrics(text)
        assert check.passes, check.findings
    finally:
        await module.shutdown()


async def test_the_exporter_s_padding_is_left_out_too() -> None:
    """Points of one instrument with different attribute keys: no label padded with ""."""
    module = Module.new("padding")
    counter = module.meter.create_counter("things")
    counter.add(1, {"a": "x"})
    counter.add(2, {"b": "y"})
    counter.add(3, {"a": ""})
    try:
        text = generate_latest(module.registry).decode()
        samples = {
            tuple(sorted(s.labels.items()))
            for f in text_string_to_metric_families(text)
            if f.name == "things"
            for s in f.samples
        }
        scope = (("otel_scope_name", "causality-sidecar"), ("otel_scope_version", __version__))
        assert samples == {
            (("a", "x"), *scope),
            (("b", "y"), *scope),
            scope,
        }
        assert '=""' not in text
    finally:
        await module.shutdown()


async def test_every_proxy_http_series_says_reporter_sidecar(make_proxy: ProxyFactory) -> None:
    p = await make_proxy(routes=("/status/{code}",))
    async with p.session.post(p.url + "/echo", data=b"x" * 30) as r:
        assert r.status == 200
    async with p.session.get(p.url + "/status/500") as r:
        assert r.status == 500
    async with p.session.ws_connect(p.url + "/ws") as ws:
        await ws.close()
    seen: set[str] = set()
    for family in text_string_to_metric_families(p.metrics_text()):
        for s in family.samples:
            assert "" not in s.labels.values(), s
            if family.name in REPORTED_FAMILIES:
                assert s.labels.get("reporter") == "sidecar", s
                seen.add(family.name)
            else:
                assert "reporter" not in s.labels, s
    assert seen == REPORTED_FAMILIES
    assert p.sample("http_request_total", status="101", reporter="sidecar") == 1


# The own registry's collection keeps the samples (and their OpenMetrics lines) of every
# histogram series whose values did not change (issue 19): what it serves must be what
# a collection from nothing serves, after any sequence of changes.
OPENMETRICS = "application/openmetrics-text;version=1.0.0"
Step = tuple[str, str, int, float, int]  # method, path, status, duration ms, response bytes


def _module_of(steps: list[Step]) -> tuple[Module, ProxyMetrics]:
    """A new module with ``steps`` recorded through `ProxyMetrics`."""
    module, metrics = proxy_module("cached", in_flight=1)
    for method, path, status, duration, size in steps:
        metrics.exchange(method, path, status, duration, duration / 2, 0, size)
    return module, metrics


async def test_a_collection_reuses_the_samples_of_unchanged_series() -> None:
    module, metrics = _module_of([("GET", "/a", 200, 3.0, 10), ("GET", "/b", 200, 7.0, 20)])
    try:

        def histogram_samples() -> dict[str, list[Sample]]:
            families = list(module.registry.collect())
            name = "http_request_duration_milliseconds"
            samples = next(f.samples for f in families if f.name == name)
            return {p: [s for s in samples if s.labels["path"] == p] for p in ("/a", "/b")}

        first = histogram_samples()
        metrics.exchange("GET", "/b", 200, 9.0, 4.5, 0, 20)
        second = histogram_samples()
        assert all(a is b for a, b in zip(first["/a"], second["/a"], strict=True))
        assert first["/a"]
        assert first["/b"] != second["/b"]
        assert second["/b"][-2].value == 2  # (its _count)
    finally:
        await module.shutdown()


async def test_cached_collections_serve_what_a_fresh_collection_serves() -> None:
    """Random exchanges between collections: each exposition of the long-lived module
    (samples and lines kept) equals, byte for byte, that of a module given the same
    exchanges and collected once, in OpenMetrics (written directly) and text 0.0.4."""
    rng = random.Random(19)
    steps: list[Step] = []
    module, metrics = _module_of([])
    try:
        for _ in range(12):
            for _ in range(rng.choice((0, 1, 5))):
                step = (
                    rng.choice(("GET", "POST")),
                    rng.choice(("/a", "/b", "/c", '/q"\\')),
                    rng.choice((200, 404, 503)),
                    rng.choice((0.3, 4.0, 80.0, 3000.0)),
                    rng.choice((0, 100, 5000)),
                )
                steps.append(step)
                metrics.exchange(*step[:4], step[3] / 2, 0, step[4])
            fresh, _ = _module_of(steps)
            try:
                for accept in (OPENMETRICS, "text/plain;version=0.0.4"):
                    got = UnifiedCollector([module.registry]).render(accept, "").body
                    want = UnifiedCollector([fresh.registry]).render(accept, "").body
                    assert got == want, accept
                encoded = generate_openmetrics(module.registry)
                assert encoded == generate_openmetrics(fresh.registry)
            finally:
                await fresh.shutdown()
            assert UnifiedCollector([module.registry]).render(OPENMETRICS, "").body == encoded
    finally:
        await module.shutdown()


async def test_a_histogram_two_scopes_fill_is_written_whole() -> None:
    """Two instruments of one name (two meters) fill one family: the lines kept for its
    series are those of both, in order, collection after collection."""
    module = Module.new("scopes")
    first = module.meter.create_histogram("work.time", unit="ms")
    second = module.provider.get_meter("other", "1").create_histogram("work.time", unit="ms")
    try:
        for turn in range(3):
            first.record(turn + 1.0, {"k": "a"})
            if turn != 1:  # (the second unchanged in one collection)
                second.record(turn + 2.0, {"k": "b"})
            got = UnifiedCollector([module.registry]).render(OPENMETRICS, "").body
            assert got == generate_openmetrics(module.registry)
            assert got.count(b"work_time_milliseconds_count{") == 2
    finally:
        await module.shutdown()


def test_a_batched_histogram_reads_its_exemplars_only_once_offered() -> None:
    """Batches carry no exemplars, so the reservoirs are not read for them; a value
    recorded directly inside a sampled span still brings its exemplar (the SDK's
    trace-based filter)."""
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import View
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from sidecar.batching import MergeableHistogramAggregation

    reader = InMemoryMetricReader()
    view = View(instrument_name="h", aggregation=MergeableHistogramAggregation((1.0, 10.0)))
    provider = MeterProvider(metric_readers=[reader], views=[view])
    histogram = provider.get_meter("t").create_histogram("h")
    histogram.record(2.0, {"path": "/a"})  # no span: nothing offered

    def exemplars() -> list[object]:
        data = reader.get_metrics_data()
        points = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
        return [e for p in points for e in p.exemplars]

    assert exemplars() == []
    span = SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with trace.use_span(NonRecordingSpan(span)):
        histogram.record(5.0, {"path": "/a"})
    (exemplar,) = exemplars()
    assert exemplar.value == 5.0  # type: ignore[attr-defined]
    assert exemplar.trace_id == 0x1234  # type: ignore[attr-defined]
    provider.shutdown()
