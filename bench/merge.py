"""Merge and export benchmark: what merging an app's /metrics adds, and what a push costs.

1. Merge: an app serving 20,000 series (10,000 counter + 10,000 gauge series, two labels)
   runs in its own process, and so does the real sidecar merging it (``python -m sidecar
   run``: uvloop, glibc's allocator thresholds pinned at start). Two kinds of app:
   ``render`` renders every scrape with prometheus_client (a Python app), ``static``
   serves pre-rendered bytes (an app whose exposition costs nothing: the worst case for
   the ratio). Both answer gzip when asked, as client_golang and prometheus_client do.

   Target of issue 8: a scrape via the sidecar at most 2x a direct scrape of the app. We
   time direct and merged scrapes in turn (direct, via, direct, ...), with Prometheus's
   headers (OpenMetrics preferred, or text 0.0.4; gzip), read two ways: as the body
   streams in, and with aiohttp's ``read()`` (which inflates gzip in small steps, ~2.5 ms
   more for 1.9 MB: the direct scrape costs more, the ratio looks better). Then a real
   Prometheus scrapes both every second for ``--prometheus-seconds`` and we take the
   median of its own ``scrape_duration_seconds`` (HTTP, gunzip, parsing and appending
   to its TSDB: the whole scrape as Prometheus times it). "added" is via minus direct;
   CPU per scrape is the app's process and the sidecar's process.
2. A real exporter: Debian's ``prometheus-node-exporter`` (client_golang, ~550 series, its
   default collectors) as the merge target; direct and merged scrapes in turn, as the
   body streams in, ``--exporter-rounds`` each. Target of issue 15: the merged scrape's
   median within the exporter's own median + `EXPORTER_BUDGET_MS`; the script exits 1
   when it is not (after printing every table).
3. Relabel (issue 20): the app through a sidecar without ``relabel:`` rules and one with
   each rule set of `RELABEL_SETS`, scraped in turn; the static app (``--static-rounds``)
   and the rendering one (``--rounds``). Target: the issue's rules add at most
   `RELABEL_BUDGET` to the merged scrape, and any rule set does for the rendering app.
4. Export: an ingest store holding 100,000 series (the real translator and store), read
   as the unified view and pushed by `OtlpPusher` to a sink process on loopback that
   answers 200; wall time and this process's CPU per push, by phase.

Median of ``--rounds`` each (``--static-rounds`` for the static app, whose ~5 ms scrapes need
more of them for a stable median). Everything on 127.0.0.1. On the shared 2-core VM the
numbers move with other people's load: the script prints the load average it ran under.

    .venv/bin/python bench/merge.py [--rounds 5] [--static-rounds 50] [--series 20000]
        [--apps render,static,node_exporter] [--exporter-rounds 40]
        [--prometheus-seconds 30] [--export-series 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from aiohttp import ClientSession, web  # noqa: E402
from common import counters, free_port, render_table, wait_port  # type: ignore[import-not-found]  # noqa: E402
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Gauge  # noqa: E402
from prometheus_client.exposition import choose_encoder, gzip_accepted  # noqa: E402

from sidecar.config import (  # noqa: E402
    Config,
    ExportConfig,
    IngestConfig,
    OtlpExportConfig,
)
from sidecar.export import (  # noqa: E402
    create_export,
    exposition_to_metrics_data,
    resource_rules,
    unified_view,
)
from sidecar.ingest import ingest_state  # noqa: E402
from sidecar.ingest.collector import OtlpCollector  # noqa: E402
from sidecar.observability import Module  # noqa: E402
from sidecar.unified import UnifiedCollector  # noqa: E402
from tests.support.node_exporter import running_node_exporter  # noqa: E402
from tests.support.prometheus import running_prometheus, static_scrape_config  # noqa: E402

PROMETHEUS_ACCEPT = (  # what Prometheus 2.x sends
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
TEXT_ACCEPT = "text/plain;version=0.0.4"
HEADERS = {"Accept-Encoding": "gzip", "X-Prometheus-Scrape-Timeout-Seconds": "30"}
GZIP_LEVEL = 6
EXPORTER_BUDGET_MS = 3.0  # a real exporter's merged scrape: its own time + this, at most


# ------------------------------------------------------------------ child processes


def app_registry(series: int) -> CollectorRegistry:
    """``series`` series: half counter, half gauge, two labels each."""
    registry = CollectorRegistry()
    requests = Counter("app_requests", "Requests", ["route", "code"], registry=registry)
    inflight = Gauge("app_inflight", "In flight", ["route", "code"], registry=registry)
    for i in range(series // 2):
        route, code = f"/api/items/{i}", ("200", "404", "500")[i % 3]
        requests.labels(route, code).inc(i)
        inflight.labels(route, code).set(i % 17)
    return registry


def serve_app(port: int, series: int, mode: str) -> None:
    """The app: renders per scrape (``render``) or serves pre-rendered bytes (``static``),
    gzipped when the request accepts gzip (as client_golang and prometheus_client do)."""
    registry = app_registry(series)
    rendered: dict[tuple[str, bool], bytes] = {}
    for accept in (PROMETHEUS_ACCEPT, TEXT_ACCEPT):
        encoder, content_type = choose_encoder(accept)
        plain = encoder(registry)
        rendered[content_type, False] = plain
        rendered[content_type, True] = gzip.compress(plain, GZIP_LEVEL)

    async def handle(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        gzipped = gzip_accepted(request.headers.get("Accept-Encoding", ""))
        if mode == "static":
            body = rendered[content_type, gzipped]
        else:
            body = encoder(registry)
            body = gzip.compress(body, GZIP_LEVEL) if gzipped else body
        headers = {"Content-Type": content_type}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/metrics", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


def serve_sink(port: int) -> None:
    """An OTLP/HTTP endpoint that reads the body and answers 200."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/v1/metrics", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


def spawn(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    """This script as a child serving something; returns it and its port once it listens."""
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", *args, "--port", str(port)])
    wait_port(port, timeout=120)
    return child, port


# ------------------------------------------------------------------------ measuring


async def timed(rounds: int, once: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (this process) of ``once``."""
    await once()  # warm-up: pooled connections, caches
    walls, cpus = [], []
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        await once()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


async def timed_pairs(
    rounds: int, direct: Callable[[], Awaitable[object]], via: Callable[[], Awaitable[object]]
) -> tuple[float, float]:
    """Median wall seconds of ``direct`` and of ``via``, taken in turn (direct, via, direct,
    ...) so that a slow phase of the machine falls on both alike."""
    await direct()
    await via()  # warm-up: pooled connections, caches
    walls: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for once, out in ((direct, walls[0]), (via, walls[1])):
            start = time.perf_counter()
            await once()
            out.append(time.perf_counter() - start)
    return statistics.median(walls[0]), statistics.median(walls[1])


SIDECAR_CONFIG = """\
proxy: {{listen: "127.0.0.1:{proxy}", upstream: "http://127.0.0.1:{app}"}}
admin: {{listen: "127.0.0.1:{admin}"}}
ingest: {{listen: "127.0.0.1:{ingest}"}}
merge:
  targets:
    - {{name: app, url: "http://127.0.0.1:{app}/metrics", timeout: 60s, labels: {{{labels}}}}}
"""
LABELS = "source: app"  # the docs' example (merge-export.md): every merged series gets source="app"


def start_sidecar(
    workdir: Path, app_port: int, labels: str = "", relabel: str = ""
) -> tuple[subprocess.Popen[bytes], int]:
    """The real sidecar (``python -m sidecar run``: uvloop, allocator thresholds pinned)
    merging the app, with ``labels`` configured; returns it and its admin port once
    /metrics is served."""
    ports = {"proxy": free_port(), "admin": free_port(), "ingest": free_port()}
    workdir.mkdir(exist_ok=True)
    config = workdir / "sidecar.yaml"
    config.write_text(SIDECAR_CONFIG.format(app=app_port, labels=labels, **ports) + relabel)
    command = [sys.executable, "-m", "sidecar", "run", "--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = workdir / "sidecar.log"  # its JSON log lines, shown only if it does not start
    with log.open("wb") as out:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        wait_port(ports["admin"], timeout=60)
    except Exception:
        child.kill()
        print(log.read_text(), file=sys.stderr)
        raise
    return child, ports["admin"]


# How the scraping client reads the reply: all at once (aiohttp's read(), which inflates a
# gzipped reply in many small steps, ~2.5 ms more for 1.9 MB), or as it streams in.
READERS = ("streamed", "read()")


FORMATS = (("OpenMetrics", PROMETHEUS_ACCEPT), ("text 0.0.4", TEXT_ACCEPT))


async def scrape(session: ClientSession, url: str, accept: str, reader: str) -> int:
    """One scrape as Prometheus asks; the body's length."""
    async with session.get(url, headers={**HEADERS, "Accept": accept}) as response:
        assert response.status == 200
        if reader == "read()":
            return len(await response.read())
        size = 0
        async for chunk in response.content.iter_chunked(1 << 18):
            size += len(chunk)
        return size


async def bench_merge(
    series: int, mode: str, rounds: int, prometheus_seconds: float = 0
) -> list[tuple[str, ...]]:
    child, port = spawn("app", "--series", str(series), "--mode", mode)
    rows: list[tuple[str, ...]] = []
    # the static app also through a sidecar that adds a label (then its reply cannot be
    # passed on in its own compression: every line changes)
    variants = ("", LABELS) if mode == "static" else ("",)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for labels in variants:
                where = Path(workdir) / ("labelled" if labels else "plain")
                sidecar, admin = start_sidecar(where, port, labels)
                try:
                    rows += await scrape_pairs(child, sidecar, port, admin, mode, labels, rounds)
                    if prometheus_seconds and not labels:
                        rows += await asyncio.to_thread(
                            prometheus_rows, where, mode, port, admin, prometheus_seconds
                        )
                finally:
                    sidecar.terminate()
                    sidecar.wait(30)
    finally:
        child.terminate()
        child.wait(10)
    return rows


async def scrape_pairs(
    child: subprocess.Popen[bytes],
    sidecar: subprocess.Popen[bytes],
    port: int,
    admin: int,
    mode: str,
    labels: str,
    rounds: int,
) -> list[tuple[str, ...]]:
    """Direct and merged scrapes in turn, each format and reader: one row each."""
    direct_url = f"http://127.0.0.1:{port}/metrics"
    merged_url = f"http://127.0.0.1:{admin}/metrics"
    rows: list[tuple[str, ...]] = []
    async with ClientSession() as session:
        for (label, accept), reader in itertools.product(FORMATS, READERS):
            app_cpu, sidecar_cpu = counters(child.pid).cpu, counters(sidecar.pid).cpu
            direct, merged = await timed_pairs(
                rounds,
                partial(scrape, session, direct_url, accept, reader),
                partial(scrape, session, merged_url, accept, reader),
            )
            app_cpu = (counters(child.pid).cpu - app_cpu) / (2 * rounds + 2)
            sidecar_cpu = (counters(sidecar.pid).cpu - sidecar_cpu) / (rounds + 1)
            rows.append((
                f"{mode} app, {label}, {reader}" + (f", labels {{{labels}}}" if labels else ""),
                f"{direct * 1000:.1f} ms",
                f"{merged * 1000:.1f} ms",
                f"+{(merged - direct) * 1000:.1f} ms",
                f"{merged / direct:.2f}x",
                f"{app_cpu * 1000:.1f} ms",
                f"{sidecar_cpu * 1000:.1f} ms",
            ))  # fmt: skip
    return rows


# relabel rule sets (issue 20): the example, which changes no series of the app
# (every family is decided at once: kept), and one that rewrites a label of every series
RELABEL_SETS = (
    (
        "the issue's 4 rules (no series changed)",
        """\
relabel:
  - {action: drop, match: {__name__: "go_.*"}}
  - {action: keep, source: merge, match: {__name__: "app_.*|http_.*"}}
  - {action: labeldrop, regex: "otel_scope_.*"}
  - {action: replace, source_labels: [service_name], target_label: job}
""",
    ),
    (
        "code -> class on every series",
        """\
relabel:
  - {action: replace, source_labels: [code], regex: "(.).*", target_label: class,
     replacement: "${1}xx"}
""",
    ),
    (
        "labeldrop code on every series",
        """\
relabel:
  - {action: labeldrop, regex: code}
""",
    ),
)
RELABEL_BUDGET = 0.20  # issue 20: relabelling costs at most 20 % of the scrape


async def bench_relabel(
    series: int, rounds: int, mode: str = "static"
) -> tuple[list[tuple[str, ...]], bool]:
    """The app (``static``: pre-rendered bytes, a target that costs nothing; ``render``:
    prometheus_client renders and gzips every scrape, as a real Python app) through a
    sidecar without rules and one with each rule set, scraped in turn (plain,
    relabelled, plain, ...): one row per rule set and format, with each sidecar's CPU
    per scrape (less moved by a busy machine than the wall time). Held: the issue's rule
    set within `RELABEL_BUDGET` of the plain merged scrape, and for the rendering app
    every rule set."""
    child, port = spawn("app", "--series", str(series), "--mode", mode)
    rows: list[tuple[str, ...]] = []
    held = True
    try:
        with tempfile.TemporaryDirectory() as workdir:
            plain, plain_admin = start_sidecar(Path(workdir) / "plain", port)
            try:
                for index, (name, rules) in enumerate(RELABEL_SETS):
                    where = Path(workdir) / f"relabel-{index}"
                    sidecar, admin = start_sidecar(where, port, relabel=rules)
                    try:
                        # its first scrape (every label set new) against one without rules
                        first = await first_scrapes(plain_admin, admin, FORMATS[0][1])
                        for label, accept in FORMATS:
                            # a format's first scrape makes its plans: not in the CPU
                            await first_scrapes(plain_admin, admin, accept)
                            cpu = counters(plain.pid).cpu, counters(sidecar.pid).cpu
                            without, with_rules = await relabel_pair(
                                plain_admin, admin, accept, rounds
                            )
                            cpu_without = (counters(plain.pid).cpu - cpu[0]) / (rounds + 1)
                            cpu_with = (counters(sidecar.pid).cpu - cpu[1]) / (rounds + 1)
                            added = with_rules / without - 1
                            bound = index == 0 or mode == "render"
                            held = held and (not bound or added <= RELABEL_BUDGET)
                            rows.append((f"{mode} app: {name}, {label}",
                                         f"{without * 1000:.1f} ms",
                                         f"{with_rules * 1000:.1f} ms",
                                         f"{added:+.0%}",
                                         f"{cpu_without * 1000:.1f} / {cpu_with * 1000:.1f} ms",
                                         first))  # fmt: skip
                            first = ""
                    finally:
                        sidecar.terminate()
                        sidecar.wait(30)
            finally:
                plain.terminate()
                plain.wait(30)
    finally:
        child.terminate()
        child.wait(10)
    return rows, held


async def first_scrapes(plain: int, relabelled: int, accept: str) -> str:
    """Wall time of a sidecar's first scrape with rules, and of one without."""
    async with ClientSession() as session:
        walls = []
        for port in (plain, relabelled):
            start = time.perf_counter()
            await scrape(session, f"http://127.0.0.1:{port}/metrics", accept, "streamed")
            walls.append(time.perf_counter() - start)
    return f"{walls[0] * 1000:.1f} / {walls[1] * 1000:.1f} ms"


async def relabel_pair(
    plain: int, relabelled: int, accept: str, rounds: int
) -> tuple[float, float]:
    """Median merged scrape of the sidecar without rules and of the one with them."""
    async with ClientSession() as session:
        return await timed_pairs(
            rounds,
            partial(scrape, session, f"http://127.0.0.1:{plain}/metrics", accept, "streamed"),
            partial(scrape, session, f"http://127.0.0.1:{relabelled}/metrics", accept, "streamed"),
        )


async def bench_exporter(rounds: int) -> tuple[list[tuple[str, ...]], bool]:
    """node_exporter directly and through the sidecar merging it, in turn: one row per
    scrape format, and whether every merged median held the budget."""
    rows: list[tuple[str, ...]] = []
    held = True
    with (
        tempfile.TemporaryDirectory() as workdir,
        running_node_exporter(Path(workdir) / "node-exporter") as exporter,
    ):
        port = int(exporter.address.rsplit(":", 1)[1])
        sidecar, admin = start_sidecar(Path(workdir) / "sidecar", port)
        try:
            async with ClientSession() as session:
                for label, accept in FORMATS:
                    exporter_cpu = counters(exporter.process.pid).cpu
                    sidecar_cpu = counters(sidecar.pid).cpu
                    direct, merged = await timed_pairs(
                        rounds,
                        partial(scrape, session, exporter.url, accept, "streamed"),
                        partial(scrape, session, f"http://127.0.0.1:{admin}/metrics", accept,
                                "streamed"),
                    )  # fmt: skip
                    # the exporter answers both scrapes of a pair, the sidecar one
                    exporter_cpu = (counters(exporter.process.pid).cpu - exporter_cpu) / (
                        2 * rounds + 2
                    )
                    sidecar_cpu = (counters(sidecar.pid).cpu - sidecar_cpu) / (rounds + 1)
                    ok = (merged - direct) * 1000 <= EXPORTER_BUDGET_MS
                    held = held and ok
                    rows.append((
                        f"node_exporter {exporter_version()}, {label}, streamed",
                        f"{direct * 1000:.1f} ms",
                        f"{merged * 1000:.1f} ms",
                        f"+{(merged - direct) * 1000:.1f} ms",
                        f"{merged / direct:.2f}x",
                        f"{exporter_cpu * 1000:.1f} ms",
                        f"{sidecar_cpu * 1000:.1f} ms",
                        "yes" if ok else "NO",
                    ))  # fmt: skip
        finally:
            sidecar.terminate()
            sidecar.wait(30)
    return rows, held


def exporter_version() -> str:
    out = subprocess.run(
        ["prometheus-node-exporter", "--version"], capture_output=True, text=True
    ).stdout
    return out.split()[2] if out.startswith("node_exporter, version") else "?"


def prometheus_rows(
    workdir: Path, mode: str, app: int, admin: int, seconds: float
) -> list[tuple[str, ...]]:
    """A real Prometheus scraping the app and the sidecar every second for ``seconds``: the
    median of its own ``scrape_duration_seconds`` for each (HTTP, gunzip, parse and
    append to its TSDB: the whole scrape as Prometheus times it)."""
    jobs = [static_scrape_config("direct", f"127.0.0.1:{app}"),
            static_scrape_config("via", f"127.0.0.1:{admin}")]  # fmt: skip
    with running_prometheus(workdir / "prometheus", jobs) as prometheus:
        prometheus.wait_for_targets_up(count=2)
        time.sleep(seconds)  # a measurement window, not a synchronisation
        window = f"{seconds:.0f}s"
        result = prometheus.query(f"quantile_over_time(0.5, scrape_duration_seconds[{window}])")
        median = {series["job"]: value for series, value in zip(
            result.series, result.values(), strict=True)}  # fmt: skip
        count = prometheus.query(f"count_over_time(scrape_duration_seconds[{window}])")
        scrapes = min(count.values())
    direct, via = median["direct"], median["via"]
    return [(
        f"{mode} app, Prometheus {prometheus_version()} ({scrapes:.0f} scrapes each)",
        f"{direct * 1000:.1f} ms",
        f"{via * 1000:.1f} ms",
        f"+{(via - direct) * 1000:.1f} ms",
        f"{via / direct:.2f}x",
        "", "",
    )]  # fmt: skip


def prometheus_version() -> str:
    out = subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if out.startswith("prometheus, version") else "?"


def ingest_request(series: int) -> ExportMetricsServiceRequest:
    """``series`` cumulative counter points: 50 metrics x series/50, three attributes."""

    def kv(key: str, value: str) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(string_value=value))

    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "bench-app")])
    sm = rm.scope_metrics.add()
    sm.scope.name = "bench"
    per_metric = series // 50
    now = time.time_ns()
    for m in range(50):
        metric = sm.metrics.add(name=f"bench.metric.{m}")
        metric.sum.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
        metric.sum.is_monotonic = True
        for i in range(per_metric):
            metric.sum.data_points.add(
                attributes=[kv("route", f"/r/{i}"), kv("code", "200"), kv("pod", f"p{i % 9}")],
                start_time_unix_nano=now - 10**9,
                time_unix_nano=now,
                as_double=float(i),
            )
    return request


async def bench_export(series: int, rounds: int) -> list[tuple[str, ...]]:
    child, port = spawn("sink")
    config = Config(
        ingest=IngestConfig(max_series=series * 2, max_series_per_metric=series),
        export=ExportConfig(OtlpExportConfig(endpoint=f"http://127.0.0.1:{port}", interval=30.0)),
    )
    module = Module.new("bench")
    state = ingest_state(config, module)
    outcome = state.store.apply(state.translator.translate(ingest_request(series)))
    assert outcome.accepted == series, outcome
    unified = UnifiedCollector([module.registry, OtlpCollector(state.store)])
    pusher = create_export(config, module, unified)
    assert pusher is not None
    view = unified_view(unified)
    rules = resource_rules(config, module)
    holder: list[object] = []

    async def read_view() -> None:
        holder[:] = [await view()]

    async def convert() -> None:
        holder.append(exposition_to_metrics_data(holder[0], rules, time.time_ns(), 0))  # type: ignore[arg-type]

    async def send() -> None:
        assert pusher.exporter.export(holder[-1]).name == "SUCCESS"  # type: ignore[arg-type]

    async def push() -> None:
        assert await pusher.push()

    rows = []
    try:
        wall, cpu = await timed(rounds, read_view)
        rows.append(
            (
                f"export {series:,} series: render the unified view (loop)",
                f"{wall * 1000:.0f} ms",
                f"{cpu * 1000:.0f} ms",
            )
        )
        wall, cpu = await timed(rounds, convert)
        rows.append(
            (
                "  parse, convert to OTLP data (worker thread)",
                f"{wall * 1000:.0f} ms",
                f"{cpu * 1000:.0f} ms",
            )
        )
        wall, cpu = await timed(rounds, send)
        rows.append(
            (
                "  encode, gzip, POST (worker thread)",
                f"{wall * 1000:.0f} ms",
                f"{cpu * 1000:.0f} ms",
            )
        )
        wall, cpu = await timed(rounds, push)
        rows.append(
            ("  whole push (OtlpPusher.push)", f"{wall * 1000:.0f} ms", f"{cpu * 1000:.0f} ms")
        )
    finally:
        await asyncio.to_thread(pusher.exporter.shutdown)
        await module.shutdown()
        child.terminate()
        child.wait(10)
    return rows  # fmt: skip


async def main_async(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    print(f"# bench/merge.py  python {sys.version.split()[0]}  cpus {os.cpu_count()}  "
          f"load average {load:.2f} (shared machine: numbers move with it)")  # fmt: skip
    rows = []
    apps = args.apps.split(",")
    for mode in (app for app in apps if app in ("render", "static")):
        rounds = args.rounds if mode == "render" else args.static_rounds
        rows += await bench_merge(args.series, mode, rounds, args.prometheus_seconds)
    if rows:
        header = (f"merge {args.series:,} series", "direct", "via sidecar", "added", "ratio",
                  "app CPU", "sidecar CPU")  # fmt: skip
        print(render_table(header, rows))
        print()
    held = True
    if "relabel" in apps:
        relabel_rows, held = await bench_relabel(args.series, args.static_rounds)
        render_rows, render_held = await bench_relabel(args.series, args.rounds, "render")
        relabel_rows += render_rows
        held = held and render_held
        relabel_header = (f"relabel a {args.series:,}-series merged target", "no rules",
                          "rules",
                          f"added (≤ {RELABEL_BUDGET:.0%}: static, issue's rules; render, all)",
                          "sidecar CPU a scrape (no rules / rules)",
                          "first scrape (no rules / rules)")  # fmt: skip
        print(render_table(relabel_header, relabel_rows))
        print()
    if "node_exporter" in apps:
        exporter_rows, exporter_held = await bench_exporter(args.exporter_rounds)
        held = held and exporter_held
        header = (f"merge a real exporter ({args.exporter_rounds} scrapes each)", "direct",
                  "via sidecar", "added", "ratio", "exporter CPU", "sidecar CPU",
                  f"within +{EXPORTER_BUDGET_MS:.0f} ms")  # fmt: skip
        print(render_table(header, exporter_rows))
        print()
    if args.export_series:
        print(
            render_table(
                ("push", "wall", "CPU"), await bench_export(args.export_series, args.rounds)
            )
        )
    if not held:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--static-rounds", type=int, default=50)
    parser.add_argument("--series", type=int, default=20_000)
    parser.add_argument("--apps", default="render,static,relabel,node_exporter",
                        help="any of render, static, relabel, node_exporter")  # fmt: skip
    parser.add_argument("--exporter-rounds", type=int, default=40)
    parser.add_argument("--prometheus-seconds", type=float, default=30.0,
                        help="how long a real Prometheus scrapes both (0: not at all)")  # fmt: skip
    parser.add_argument("--export-series", type=int, default=100_000, help="0: no push")
    parser.add_argument("--serve", choices=("app", "sink"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="render", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "app":
        serve_app(args.port, args.series, args.mode)
    elif args.serve == "sink":
        serve_sink(args.port)
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
