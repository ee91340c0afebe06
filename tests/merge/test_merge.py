"""Merging apps' /metrics into the sidecar's: each of Istio's failure cases, and more.

Istio's metrics merging concatenates the app's text after its own, which breaks on
duplicate series, OpenMetrics-only apps and protobuf replies; each has a test here,
and every merged exposition is checked with ``promtool check metrics``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics.exposition import generate_latest as render_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from sidecar.merge import ACCEPT, TEXT_ACCEPT, rawtext
from sidecar.merge.scraper import SMALL_REPLY, budget
from tests.support.merge import (
    OPENMETRICS_CT,
    PROTOBUF_CT,
    MakeRig,
    StartTarget,
    Target,
    samples,
    target,
    value,
)
from tests.support.prometheus import check_metrics

OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

APP_TEXT = b"""\
# HELP app_jobs_total Jobs done
# TYPE app_jobs_total counter
app_jobs_total{queue="a"} 3
app_jobs_total{queue="b"} 4
# HELP app_temperature Temperature
# TYPE app_temperature gauge
app_temperature 21.5
"""

APP_OPENMETRICS = b"""\
# HELP app_orders Orders placed.
# TYPE app_orders counter
app_orders_total{shop="x"} 7.0 # {trace_id="abc"} 1.0 1700000000.0
app_orders_created{shop="x"} 1.7e+09
# HELP app_latency_seconds Latency.
# TYPE app_latency_seconds histogram
# UNIT app_latency_seconds seconds
app_latency_seconds_bucket{le="0.1"} 1.0
app_latency_seconds_bucket{le="1.0"} 3.0
app_latency_seconds_bucket{le="+Inf"} 4.0
app_latency_seconds_count 4.0
app_latency_seconds_sum 5.5
# HELP app_build Build.
# TYPE app_build info
app_build_info{version="1.2.3"} 1.0
# HELP app_state State.
# TYPE app_state stateset
app_state{app_state="ready"} 1.0
app_state{app_state="down"} 0.0
# EOF
"""


def scrapes(text: str, target_name: str, result: str) -> float | None:
    return value(text, "sidecar_merge_scrapes_total", target=target_name, result=result)


def conflicts(text: str, kind: str) -> float | None:
    """Conflicts are counted while rendering, after the sidecar's own families were read:
    a scrape shows those of the scrapes before it."""
    return value(text, "sidecar_merge_conflicts_total", kind=kind)


def assert_promtool_passes(text: str) -> None:
    check = check_metrics(text)
    assert check.passes, check.findings


async def test_text_target_merged_with_labels_and_counted(
    start_target: StartTarget, make_rig: MakeRig
) -> None:
    app = Target(APP_TEXT)
    url = await start_target(app)
    rig = await make_rig([target("app", url, source="app")])
    text = await rig.scrape()
    assert value(text, "app_jobs_total", queue="a", source="app") == 3
    assert value(text, "app_jobs_total", queue="b", source="app") == 4
    assert value(text, "app_temperature", source="app") == 21.5
    assert scrapes(text, "app", "success") == 1
    assert app.requests[0]["Accept"] == TEXT_ACCEPT  # the scraper asked for text
    assert "# HELP app_jobs_total Jobs done" in text
    assert_promtool_passes(text)


async def test_configured_label_keeps_the_scraped_one_as_exported(
    start_target: StartTarget, make_rig: MakeRig
) -> None:
    url = await start_target(Target(b'app_up{source="inner",x="1"} 1\n'))
    rig = await make_rig([target("app", url, source="app")])
    text = await rig.scrape()
    assert value(text, "app_up", source="app", exported_source="inner", x="1") == 1


async def test_duplicate_series_dropped_and_counted(
    start_target: StartTarget, make_rig: MakeRig
) -> None:
    url = await start_target(
        Target(b'# HELP shared S\n# TYPE shared gauge\nshared{a="1"} 99\nshared{a="2"} 2\n')
    )
    rig = await make_rig([target("app", url)])
    own = Gauge("shared", "Owned by the sidecar", ["a"], registry=rig.module.registry)
    own.labels("1").set(1)
    text = await rig.scrape()
    assert value(text, "shared", a="1") == 1  # the sidecar's own wins
    assert value(text, "shared", a="2") == 2  # the app's other series merges in
    assert conflicts(await rig.scrape(), "series") == 1
    assert "# HELP shared Owned by the sidecar" in text
    assert text.count("# TYPE shared gauge") == 1
    assert_promtool_passes(text)


async def test_duplicates_between_two_targets_first_one_wins(
    start_target: StartTarget, make_rig: MakeRig
) -> None:
    first = await start_target(Target(b"# HELP dup D\n# TYPE dup gauge\ndup 1\n"))
    second = await start_target(Target(b"# HELP dup D\n# TYPE dup gauge\ndup 2\n"))
    rig = await make_rig([target("first", first), target("second", second)])
    text = await rig.scrape()
    assert value(text, "dup") == 1
    assert conflicts(await rig.scrape(), "series") == 1
    assert_promtool_passes(text)


@pytest.mark.parametrize(
    ("own_kind", "app_body"),
    [
        pytest.param("gauge", b"# HELP things T\n# TYPE things untyped\nthings 5\n", id="untyped-vs-gauge"),
        pytest.param("counter", b"# HELP things_total T\n# TYPE things_total gauge\nthings_total 5\n", id="gauge-on-counter-sample-name"),
        pytest.param("histogram", b"# HELP things T\n# TYPE things summary\nthings_sum 5\nthings_count 5\n", id="summary-vs-histogram"),
    ],
)  # fmt: skip
async def test_type_conflict_drops_the_family_and_counts(
    start_target: StartTarget, make_rig: MakeRig, own_kind: str, app_body: bytes
) -> None:
    url = await start_target(
        Target(app_body + b"# HELP app_ok OK\n# TYPE app_ok gauge\napp_ok 1\n")
    )
    rig = await make_rig([target("app", url)])
    kinds = {"gauge": Gauge, "counter": Counter, "histogram": Histogram}
    kinds[own_kind]("things", "Owned", registry=rig.module.registry)
    text = await rig.scrape()
    assert conflicts(await rig.scrape(), "type") == 1
    assert value(text, "app_ok") == 1  # the rest of the target still merges
    assert 5 not in {v for (n, _), v in samples(text).items() if n.startswith("things")}
    assert_promtool_passes(text)


async def test_openmetrics_only_app(start_target: StartTarget, make_rig: MakeRig) -> None:
    url = await start_target(Target(APP_OPENMETRICS, OPENMETRICS_CT))
    rig = await make_rig([target("app", url)])
    text = await rig.scrape()
    assert value(text, "app_orders_total", shop="x") == 7
    assert value(text, "app_latency_seconds_bucket", le="1.0") == 3
    assert value(text, "app_latency_seconds_sum") == 5.5
    assert value(text, "app_build_info", version="1.2.3") == 1
    assert value(text, "app_state", app_state="ready") == 1
    assert scrapes(text, "app", "success") == 1
    assert_promtool_passes(text)

    response = await rig.client.get("/metrics", headers={"Accept": OPENMETRICS_ACCEPT})
    om = await response.text()
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in parse_openmetrics(om)}  # raises when invalid
    assert families["app_orders"].type == "counter"
    assert families["app_latency_seconds"].unit == "seconds"
    assert families["app_state"].type == "stateset"
    assert om.endswith("# EOF\n")
    assert om.count("# EOF") == 1


async def test_python_text_app_created_gauges_are_not_conflicts(
    start_target: StartTarget, make_rig: MakeRig
) -> None:
    # prometheus_client in text format writes each counter's _created as a gauge family
    body = (
        b"# HELP reqs_total Requests\n# TYPE reqs_total counter\nreqs_total 2.0\n"
        b"# HELP reqs_created Requests\n# TYPE reqs_created gauge\nreqs_created 1.7e+09\n"
    )
    url = await start_target(Target(body))
    rig = await make_rig([target("app", url)])
    text = await rig.scrape()
    assert value(text, "reqs_total") == 2
    assert value(text, "reqs_created") == 1.7e9
    text = await rig.scrape()
    assert conflicts(text, "type") == 0  # exposed at 0 from the start
    assert conflicts(text, "series") == 0
    assert_promtool_passes(text)


@pytest.mark.parametrize(
    ("scraper_accept", "asked"),
    [
        (OPENMETRICS_ACCEPT, ACCEPT),  # Prometheus's default: OpenMetrics first
        ("text/plain;version=0.0.4", TEXT_ACCEPT),
        ("", TEXT_ACCEPT),  # no Accept: text, as prometheus_client answers it
        ("application/json", TEXT_ACCEPT),
    ],
)
async def test_targets_are_asked_for_the_scrapers_format_first(
    start_target: StartTarget, make_rig: MakeRig, scraper_accept: str, asked: str
) -> None:
    app = Target(APP_TEXT)
    rig = await make_rig([target("app", await start_target(app))])
    await rig.scrape({"Accept": scraper_accept} if scraper_accept else {})
    assert app.requests[-1]["Accept"] == asked


async def test_gzip_reply(start_target: StartTarget, make_rig: MakeRig) -> None:
    app = Target(APP_TEXT, gzip_when_asked=True)
    url = await start_target(app)
    rig = await make_rig([target("app", url)])
    text = await rig.scrape()
    assert "gzip" in app.requests[0]["Accept-Encoding"]
    assert value(text, "app_temperature") == 21.5


async def test_missing_content_type_is_read_as_text(make_rig: MakeRig) -> None:
    # aiohttp's server always sends a Content-Type, so this app is a raw HTTP/1.1 socket
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(APP_TEXT)}\r\n\r\n"
        writer.write(head.encode() + APP_TEXT)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        rig = await make_rig([target("app", f"http://127.0.0.1:{port}/metrics")])
        assert value(await rig.scrape(), "app_temperature") == 21.5
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("reply", "result"),
    [
        pytest.param(Target(b"\x0a\x05hello\x12\x01x", PROTOBUF_CT), "malformed", id="truncated-protobuf"),
        pytest.param(Target(b"\x03\x0a\x01x", "application/vnd.google.protobuf; proto=other.Message; encoding=delimited"), "unsupported_format", id="other-protobuf"),
        pytest.param(Target(b"<html>oops</html>", "text/html"), "unsupported_format", id="html"),
        pytest.param(Target(b"this is { not metrics\n"), "malformed", id="garbage-text"),
        pytest.param(Target(b"# TYPE x counter\nx_total{a=1} 1\n# EOF\n", OPENMETRICS_CT), "malformed", id="bad-openmetrics"),
        pytest.param(Target(b"x 1\n", OPENMETRICS_CT), "malformed", id="openmetrics-without-eof"),
        pytest.param(Target(b"\xff\xfe x 1\n"), "malformed", id="not-utf8"),
        pytest.param(Target(APP_TEXT, status=500), "error", id="http-500"),
    ],
)  # fmt: skip
async def test_bad_target_skipped_and_counted(
    start_target: StartTarget, make_rig: MakeRig, reply: Target, result: str
) -> None:
    bad = await start_target(reply)
    good = await start_target(Target(APP_TEXT))
    rig = await make_rig([target("bad", bad), target("good", good)])
    rig.module.meter.create_counter("own_work", description="Own work").add(1)
    text = await rig.scrape()
    assert scrapes(text, "bad", result) == 1
    assert scrapes(text, "good", "success") == 1
    assert value(text, "own_work_total") == 1  # the sidecar's own metrics are always served
    assert value(text, "app_temperature") == 21.5
    assert_promtool_passes(text)


async def test_connection_refused_is_an_error(make_rig: MakeRig) -> None:
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rig = await make_rig([target("gone", f"http://127.0.0.1:{port}/metrics")])
    text = await rig.scrape()
    assert scrapes(text, "gone", "error") == 1


async def test_slow_target_cut_by_the_scrapers_timeout(
    start_target: StartTarget, make_rig: MakeRig
) -> None:
    gate = asyncio.Event()
    slow = Target(APP_TEXT, gate=gate)
    url = await start_target(slow)
    rig = await make_rig([target("slow", url, timeout=30.0)])
    start = time.monotonic()
    try:
        text = await rig.scrape({"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    finally:
        gate.set()
    elapsed = time.monotonic() - start
    assert slow.requests, "the target was asked"
    assert 0.85 <= elapsed < 3.0  # budget 0.9 s (1 s minus the margin), not the target's 30 s
    assert scrapes(text, "slow", "timeout") == 1
    assert value(text, "app_temperature") is None


async def test_slow_target_cut_by_its_own_timeout(
    start_target: StartTarget, make_rig: MakeRig
) -> None:
    gate = asyncio.Event()
    url = await start_target(Target(APP_TEXT, gate=gate))
    rig = await make_rig([target("slow", url, timeout=0.3)])
    start = time.monotonic()
    try:
        text = await rig.scrape({"X-Prometheus-Scrape-Timeout-Seconds": "10"})
    finally:
        gate.set()
    assert 0.25 <= time.monotonic() - start < 3.0  # 0.3 s, not the scraper's 9 s
    assert scrapes(text, "slow", "timeout") == 1


async def test_targets_fetched_concurrently(start_target: StartTarget, make_rig: MakeRig) -> None:
    gate = asyncio.Event()
    apps = [Target(APP_TEXT, gate=gate) for _ in range(3)]
    urls = [await start_target(app) for app in apps]
    rig = await make_rig([target(f"t{i}", url) for i, url in enumerate(urls)])
    scrape = asyncio.create_task(rig.scrape())
    deadline = time.monotonic() + 5
    while not all(app.requests for app in apps):  # all three asked before any answered
        assert time.monotonic() < deadline, "targets were not fetched concurrently"
        await asyncio.sleep(0.01)
    gate.set()
    text = await scrape
    assert all(scrapes(text, f"t{i}", "success") == 1 for i in range(3))


async def test_counts_accumulate_and_a_recovered_target_returns(
    start_target: StartTarget, make_rig: MakeRig
) -> None:
    app = Target(APP_TEXT, status=503)
    url = await start_target(app)
    rig = await make_rig([target("app", url)])
    first = await rig.scrape()
    assert value(first, "app_temperature") is None
    app.status = 200
    await rig.scrape()
    third = await rig.scrape()
    assert value(third, "app_temperature") == 21.5
    assert scrapes(third, "app", "error") == 1
    assert scrapes(third, "app", "success") == 2


@pytest.mark.parametrize("gzip_reply", [False, True], ids=["plain", "gzip"])
async def test_large_reply_is_read_whole(
    start_target: StartTarget, make_rig: MakeRig, gzip_reply: bool
) -> None:
    lines = [f'big{{i="{i}",pad="{"x" * 40}"}} {i}' for i in range(20_000)]
    body = ("# HELP big Big\n# TYPE big gauge\n" + "\n".join(lines) + "\n").encode()
    assert len(body) > 1_000_000  # arrives in many reads
    url = await start_target(Target(body, gzip_when_asked=gzip_reply))
    rig = await make_rig([target("app", url)])
    text = await rig.scrape()
    assert scrapes(text, "app", "success") == 1
    merged = [v for (n, _), v in samples(text).items() if n == "big"]
    assert len(merged) == 20_000
    assert sum(merged) == sum(range(20_000))


@pytest.mark.parametrize(
    ("target_timeout", "header", "expected"),
    [
        pytest.param(5.0, None, 5.0, id="no-header-own-timeout"),
        pytest.param(5.0, 10.0, 5.0, id="own-timeout-shorter"),
        pytest.param(30.0, 10.0, 9.0, id="header-minus-10-percent"),
        pytest.param(30.0, 1.0, 0.9, id="margin-at-least-0.1s"),
        pytest.param(30.0, 0.5, 0.4, id="short-header"),
        pytest.param(30.0, 60.0, 30.0, id="own-timeout-below-header"),
        pytest.param(90.0, 60.0, 59.0, id="margin-at-most-1s"),
        pytest.param(30.0, 0.1, 0.05, id="floor"),
    ],
)  # fmt: skip
def test_budget(target_timeout: float, header: float | None, expected: float) -> None:
    assert budget(
        target("t", "http://127.0.0.1:1/", timeout=target_timeout), header
    ) == pytest.approx(expected)


@pytest.mark.parametrize("answer", ["text", "openmetrics"])
async def test_large_openmetrics_app_takes_whole_runs_and_stays_valid(
    start_target: StartTarget, make_rig: MakeRig, answer: str, c_runs: list[tuple[str, ...]]
) -> None:
    # a prometheus_client app of 3,000 series: its runs are long enough for the whole-run path (proven in C)
    app = CollectorRegistry()
    requests = Counter("app_requests", "Requests", ["route"], registry=app)
    inflight = Gauge("app_inflight", "In flight", ["route"], registry=app)
    shared = Gauge("shared", "The app's", ["route"], registry=app)
    for i in range(1_000):
        requests.labels(f"/r/{i}").inc(i)
        inflight.labels(f"/r/{i}").set(i % 7)
        shared.labels(f"/r/{i}").set(i)
    url = await start_target(Target(render_openmetrics(app), OPENMETRICS_CT))
    rig = await make_rig([target("app", url, source="app")])
    own = Gauge("shared", "Owned by the sidecar", ["route", "source"], registry=rig.module.registry)
    own.labels("/r/3", "app").set(-1)  # a higher source's series: the app's one is dropped
    accept = OPENMETRICS_ACCEPT if answer == "openmetrics" else "text/plain;version=0.0.4"
    response = await rig.client.get("/metrics", headers={"Accept": accept})
    body = await response.text()
    text = body if answer == "text" else await rig.scrape()
    assert value(text, "app_requests_total", route="/r/999", source="app") == 999
    assert value(text, "app_inflight", route="/r/10", source="app") == 3
    assert value(text, "shared", route="/r/3", source="app") == -1
    assert value(text, "shared", route="/r/4", source="app") == 4
    assert len([n for n, _ in samples(text) if n == "app_requests_created"]) == 1_000
    assert "# HELP shared Owned by the sidecar" in text
    scraped = 1 if answer == "text" else 2  # conflicts show those of the scrapes before
    assert conflicts(await rig.scrape(), "series") == scraped
    assert bool(c_runs) == rawtext.C_RUNS  # whole runs, proven in C (not when C is off)
    assert_promtool_passes(text)
    if answer == "openmetrics":
        families = {f.name: f for f in parse_openmetrics(body)}  # raises when invalid
        assert families["app_requests"].type == "counter"
        assert len(families["app_requests"].samples) == 2_000  # _total and _created
        assert body.endswith("# EOF\n")
        assert body.count("# EOF") == 1


# client_golang's reply with EnableOpenMetrics (promhttp.HandlerOpts), as its expfmt
# encoder writes it: the counter go_memstats_alloc_bytes_total becomes family
# go_memstats_alloc_bytes, beside the gauge of that name. No such app runs here (Debian's
# node_exporter and Prometheus answer text), so this target replays its two answers.
GO_TEXT = b"""\
# HELP go_memstats_alloc_bytes Number of bytes allocated and still in use.
# TYPE go_memstats_alloc_bytes gauge
go_memstats_alloc_bytes 857928
# HELP go_memstats_alloc_bytes_total Total number of bytes allocated, even if freed.
# TYPE go_memstats_alloc_bytes_total counter
go_memstats_alloc_bytes_total 1.2e+06
"""
GO_OPENMETRICS = b"""\
# HELP go_memstats_alloc_bytes Number of bytes allocated and still in use.
# TYPE go_memstats_alloc_bytes gauge
go_memstats_alloc_bytes 857928.0
# HELP go_memstats_alloc_bytes Total number of bytes allocated, even if freed.
# TYPE go_memstats_alloc_bytes counter
go_memstats_alloc_bytes_total 1.2e+06
# EOF
"""


async def test_a_clashing_openmetrics_reply_is_asked_again_as_text(
    aiohttp_server: Any, make_rig: MakeRig
) -> None:
    accepts: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        accepts.append(accept)
        if "openmetrics" in accept:
            return web.Response(body=GO_OPENMETRICS, headers={"Content-Type": OPENMETRICS_CT})
        return web.Response(body=GO_TEXT, headers={"Content-Type": "text/plain; version=0.0.4"})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    rig = await make_rig([target("go", str(server.make_url("/metrics")))])
    for _ in range(2):
        om = await rig.scrape({"Accept": OPENMETRICS_ACCEPT})
        families = {f.name: f.type for f in parse_openmetrics(om)}  # raises when invalid
        assert families["go_memstats_alloc_bytes"] == "gauge"
        assert families["go_memstats_alloc_bytes_total"] == "unknown"  # see test_naming
    assert accepts == [ACCEPT, TEXT_ACCEPT, TEXT_ACCEPT]  # text first from then on
    text = await rig.scrape()
    assert value(text, "go_memstats_alloc_bytes") == 857928
    assert value(text, "go_memstats_alloc_bytes_total") == 1.2e6
    assert scrapes(text, "go", "success") == 3
    assert conflicts(text, "type") == 0  # exposed at 0 from the start
    assert_promtool_passes(text)


@pytest.mark.parametrize(
    ("big", "labels", "asked"),
    [
        (False, {}, ["gzip", "identity", "identity"]),
        (True, {}, ["gzip"] * 3),
        (True, {"source": "app"}, ["identity"] * 3),
    ],
    ids=["small", "big", "big, labels added"],
)
async def test_a_small_target_is_asked_without_gzip_after_its_first_reply(
    start_target: StartTarget,
    make_rig: MakeRig,
    big: bool,
    labels: dict[str, str],
    asked: list[str],
) -> None:
    """Compressing on the fly costs a small target more than sending its plain body over
    loopback; a big reply may come pre-compressed and be passed on in its compression,
    unless configured labels rewrite every series of it (then never)."""
    lines = [f'app_x{{i="{i}"}} {i}\n'.encode() for i in range(20_000 if big else 3)]
    body = b"# HELP app_x X\n# TYPE app_x gauge\n" + b"".join(lines)
    assert (len(body) > SMALL_REPLY) == big
    app = Target(body, gzip_when_asked=True)
    rig = await make_rig([target("app", await start_target(app), **labels)])
    for _ in range(3):
        assert value(await rig.scrape(), "app_x", i="2") == 2
    encodings = [request["Accept-Encoding"] for request in app.requests]
    assert encodings == asked
