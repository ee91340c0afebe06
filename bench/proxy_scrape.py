"""Proxied latency while /metrics is scraped: 100,000 ingested series, a scrape every second.

    .venv/bin/python bench/proxy_scrape.py [--duration 10 --runs 3]   # also run by bench/proxy.py
    .venv/bin/python bench/proxy_scrape.py --render-only [--protobuf]  # renders alone

The whole sidecar (``python -m sidecar run``: proxy, OTLP ingest, admin) runs pinned to
the proxy's core, in front of an upstream nginx serving 20 bytes. 100,000 series are
pushed to its ingest (90 % counters, 10 % histograms with 16 buckets, 5 attributes each,
as bench/ingest.py builds them), 100 distinct paths are proxied once (the own registry
of an app with 100 routes), and nginx also serves a 1,000-series app /metrics that the
sidecar merges: every scrape goes through the merge path. wrk loads the proxy at 1 and at
32 connections, once quietly and once while a scraper (in this process) fetches
``/metrics`` as Prometheus does (OpenMetrics, gzip) every second, and the status page
``/`` right after it. Runs alternate quiet / scraped; medians are printed side by side.
After the runs one scrape is parsed whole: it must hold every ingested and merged series.

Two scenarios: the store unchanged between scrapes, and a pusher (a thread of this
process, on wrk's core) pushing 10 % of the series again every second with new values,
in the quiet runs too, as SDKs exporting every 10 s would: what the render cache
(`sidecar.rendercache`) does not save shows there. Each also measures the sidecar's CPU
per scrape (/proc, scrapes vs none over the same seconds). ``--sidecar-root`` runs the
sidecar of another checkout (e.g. one without the render cache) for a before/after.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import http.client
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, WrkResult, free_port, median, render_table, run_wrk, wait_port
from ingest import build_request
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

SERIES = 100_000
HISTOGRAM_SHARE = 0.1
APP_SERIES = 1000
ROUTES = 100  # distinct proxied paths: the own registry's size
PUSH_POINTS = 1000
SCRAPE_INTERVAL = 1.0
CHURN_SHARE = 0.1  # of the series pushed again every second (the churn scenario)
CPU_SCRAPES = 10  # scrapes timed for CPU per scrape
STATUS_PAGE = "/?refresh=0"
SCENARIOS = (("unchanged", False), ("10 %/s pushed", True))
PROMETHEUS_ACCEPT = (  # what Prometheus 2.x sends
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROTOBUF_ACCEPT = (  # what it sends with native histograms on: protobuf first
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,*/*;q=0.1"
)
CASES = (("20 B, 1 conn", 1), ("20 B, 32 conns", 32))
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4194304", "MALLOC_TRIM_THRESHOLD_": "67108864"}
SIDECAR_CONFIG = """\
proxy: {{listen: "127.0.0.1:{proxy}", upstream: "http://127.0.0.1:{upstream}"}}
admin: {{listen: "127.0.0.1:{admin}"}}
ingest: {{listen: "127.0.0.1:{ingest}", max_series: 200000}}
merge:
  targets:
    - {{name: app, url: "http://127.0.0.1:{upstream}/metrics", timeout: 10s}}
"""


def app_metrics() -> str:
    """The merged app's exposition: ``APP_SERIES`` counter series."""
    lines = ["# HELP app_requests_total Requests.", "# TYPE app_requests_total counter"]
    lines += [f'app_requests_total{{path="/p{i}"}} {i}' for i in range(APP_SERIES)]
    return "\n".join(lines) + "\n"


@dataclass
class Sidecar:
    """The running sidecar: its process and ports."""

    process: subprocess.Popen[bytes]
    proxy: int
    admin: int
    ingest: int


@contextlib.contextmanager
def sidecar(workdir: Path, upstream: int, cores: str, root: Path = ROOT) -> Iterator[Sidecar]:
    """The real sidecar (of the checkout at ``root``) pinned to ``cores``, filled with
    ``SERIES`` ingested series."""
    ports = {"proxy": free_port(), "admin": free_port(), "ingest": free_port()}
    config = workdir / "sidecar.yaml"
    config.write_text(SIDECAR_CONFIG.format(upstream=upstream, **ports))
    command = ["taskset", "-c", cores, sys.executable, "-m", "sidecar", "run", "--config"]
    env = {**os.environ, **MALLOC_ENV, "PYTHONPATH": str(root)}
    log = workdir / "sidecar.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, str(config)], cwd=root, env=env, stdout=out, stderr=out
        )
    try:
        for port in ports.values():
            wait_port(port, timeout=60)
        car = Sidecar(process, **ports)
        fill(car)
        yield car
    except BaseException:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fill(car: Sidecar) -> None:
    """Push ``SERIES`` series, ``PUSH_POINTS`` per OTLP/HTTP request; proxy ``ROUTES``
    paths once each (nginx answers 404), so the sidecar's own series are those of an app
    with that many routes."""
    for route in range(ROUTES):
        with contextlib.suppress(urllib.error.HTTPError):  # the 404s
            # "route17" is no id segment (sidecar.proxy.routes): one path label each
            urllib.request.urlopen(f"http://127.0.0.1:{car.proxy}/route{route}", timeout=30)
    for first in range(0, SERIES, PUSH_POINTS):
        push(car, first, 2)


def push(car: Sidecar, first: int, t: int) -> None:
    """Push ``PUSH_POINTS`` series from ``first`` on, with values of time ``t``."""
    send(car, build_request(first, PUSH_POINTS, HISTOGRAM_SHARE, t).SerializeToString())


def send(car: Sidecar, body: bytes) -> None:
    """One OTLP/HTTP protobuf request."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{car.ingest}/v1/metrics",
        data=body,
        headers={"Content-Type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise SystemExit(f"bench: ingest answered {response.status}")


@contextlib.contextmanager
def each_second(name: str, step: Callable[[], None], cores: str | None = None) -> Iterator[None]:
    """``step()`` once a second in a thread (pinned to ``cores``) while inside."""
    stop = threading.Event()

    def run() -> None:
        if cores is not None:  # (pid 0: this thread only)
            os.sched_setaffinity(0, {int(core) for core in cores.split(",")})
        next_at = time.monotonic()
        while not stop.is_set():
            step()
            next_at += SCRAPE_INTERVAL
            stop.wait(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=run, name=name)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@functools.lru_cache(maxsize=1)
def churn_requests() -> list[ExportMetricsServiceRequest]:
    """A request per ``PUSH_POINTS`` series, built once: a push moves its values on
    (`advanced`); building them anew each second would take ~1 s of wrk's core."""
    return [
        build_request(first, PUSH_POINTS, HISTOGRAM_SHARE, 3)
        for first in range(0, SERIES, PUSH_POINTS)
    ]


@contextlib.contextmanager
def pushing(car: Sidecar, cores: str, on: bool = True) -> Iterator[list[int]]:
    """While inside (when ``on``), push ``CHURN_SHARE`` of the series every second with
    new values, the next share each second (as SDKs exporting on a 10 s interval);
    yields the list of pushes made. The pushing thread runs on ``cores``."""
    done: list[int] = []
    if not on:
        yield done
        return
    requests = churn_requests()
    per_second = int(SERIES * CHURN_SHARE) // PUSH_POINTS

    def step() -> None:
        for _ in range(per_second):
            turn = len(done)
            send(car, advanced(requests[turn % len(requests)]).SerializeToString())
            done.append(turn)

    with each_second("pusher", step, cores):
        yield done


def advanced(request: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest:
    """``request`` (as `build_request` built it) 10 s later: every point's time, counter
    value and first bucket moved on."""
    for metric in request.resource_metrics[0].scope_metrics[0].metrics:
        for point in metric.sum.data_points or metric.histogram.data_points:
            point.time_unix_nano += 10
        for number in metric.sum.data_points:
            number.as_int += 1
        for bucketed in metric.histogram.data_points:
            bucketed.bucket_counts[0] += 1
            bucketed.count += 1
    return request


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape_cpu(
    car: Sidecar,
    cores: str,
    churn: bool,
    path: str = "/metrics",
    headers: dict[str, str] | None = None,
) -> float:
    """The sidecar's CPU seconds per GET of ``path`` (a ``/metrics`` scrape, or the status
    page): ``CPU_SCRAPES`` seconds with one each second minus as many seconds without (the
    pusher on in both if ``churn``)."""
    headers = METRICS_HEADERS if headers is None else headers
    with pushing(car, cores, churn):
        spent = []
        for scraped in (False, True):
            before = cpu_seconds(car.process.pid)
            next_at = time.monotonic()
            for _ in range(CPU_SCRAPES):
                if scraped:
                    scrape(car.admin, path, headers)
                next_at += SCRAPE_INTERVAL
                time.sleep(max(0.0, next_at - time.monotonic()))  # pacing, not a wait
            spent.append(cpu_seconds(car.process.pid) - before)
    return (spent[1] - spent[0]) / CPU_SCRAPES


@dataclass
class Scrapes:
    """What the scraper saw during one wrk run."""

    seconds: list[float] = field(default_factory=list)
    page_seconds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    failures: int = 0


def scrape(admin: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One GET on a fresh connection (as a Prometheus that scrapes many targets)."""
    connection = http.client.HTTPConnection("127.0.0.1", admin, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


METRICS_HEADERS = {
    "Accept": PROMETHEUS_ACCEPT,
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}


@contextlib.contextmanager
def scraping(admin: int) -> Iterator[Scrapes]:
    """Scrape /metrics (then the status page) every ``SCRAPE_INTERVAL`` while inside."""
    seen = Scrapes()

    def step() -> None:
        start = time.perf_counter()
        status, body = scrape(admin, "/metrics", METRICS_HEADERS)
        seen.seconds.append(time.perf_counter() - start)
        seen.sizes.append(len(body))
        start = time.perf_counter()
        page, _ = scrape(admin, STATUS_PAGE, {})
        seen.page_seconds.append(time.perf_counter() - start)
        seen.failures += status != 200 or page != 200

    with each_second("scraper", step):
        yield seen


def check_exposition(admin: int) -> str:
    """One scrape parsed whole: every ingested and merged series is there, once."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    status, body = scrape(admin, "/metrics", METRICS_HEADERS)
    text = gzip.decompress(body).decode()
    counters = histograms = merged = 0
    for family in text_string_to_metric_families(text):
        if family.name.startswith("bench_counter"):
            counters += sum(s.name.endswith("_total") for s in family.samples)
        elif family.name.startswith("bench_histogram"):
            histograms += sum(s.name.endswith("_count") for s in family.samples)
        elif family.name == "app_requests":
            merged += len(family.samples)
    want = (int(SERIES * (1 - HISTOGRAM_SHARE)), int(SERIES * HISTOGRAM_SHARE), APP_SERIES)
    got = (counters, histograms, merged)
    verdict = "complete" if status == 200 and got == want else f"WRONG (want {want})"
    return (
        f"one scrape parsed (OpenMetrics, {len(body):,} B gzipped, {len(text):,} B): "
        f"{counters:,} counter + {histograms:,} histogram ingested series, "
        f"{merged:,} merged: {verdict}"
    )


@dataclass
class Row:
    """Medians of one case, quiet and scraped."""

    quiet: list[WrkResult] = field(default_factory=list)
    scraped: list[WrkResult] = field(default_factory=list)
    scrapes: list[Scrapes] = field(default_factory=list)
    cpu_per_scrape: float = 0.0  # sidecar CPU seconds (`scrape_cpu`)
    cpu_per_page: float = 0.0  # the same, per status page fetch
    pushes: int = 0  # requests of the pusher (the churn scenario)


def measure(
    car: Sidecar, args: argparse.Namespace, load_cores: str, churn: bool = False
) -> dict[str, Row]:
    """Quiet and scraped runs, alternating, of every case (with the pusher on throughout
    when ``churn``); the first row also holds the CPU per scrape."""
    url = f"http://127.0.0.1:{car.proxy}/small"
    rows = {case: Row() for case, _ in CASES}
    for _, conns in CASES:
        run_wrk(url, conns, 1, load_cores)  # warm-up
    scrape(car.admin, "/metrics", METRICS_HEADERS)
    first = rows[CASES[0][0]]
    first.cpu_per_scrape = scrape_cpu(car, load_cores, churn)
    first.cpu_per_page = scrape_cpu(car, load_cores, churn, STATUS_PAGE, {})
    print(
        f"  CPU per scrape: {first.cpu_per_scrape * 1000:.0f} ms, "
        f"per status page: {first.cpu_per_page * 1000:.0f} ms",
        flush=True,
    )
    if getattr(args, "cpu_only", False):
        return rows
    for run in range(args.runs):
        for case, conns in CASES:
            row = rows[case]
            for scraped in (run % 2 == 1, run % 2 == 0):  # alternate which comes first
                with pushing(car, load_cores, churn) as pushes:
                    if scraped:
                        with scraping(car.admin) as seen:
                            result = run_wrk(url, conns, args.duration, load_cores)
                        row.scraped.append(result)
                        row.scrapes.append(seen)
                    else:
                        result = run_wrk(url, conns, args.duration, load_cores)
                        row.quiet.append(result)
                row.pushes += len(pushes)
                label = "scraped" if scraped else "quiet"
                print(
                    f"  run {run + 1}: {case:16} {label:8} {result.rps:10,.0f} req/s "
                    f"p99 {result.p99_us / 1000:.2f} ms",
                    flush=True,
                )
    return rows


def pair(quiet: list[float], scraped: list[float], form: str) -> str:
    """``quiet / scraped`` medians."""
    return f"{form.format(median(quiet))} / {form.format(median(scraped))}"


def report(scenarios: dict[str, dict[str, Row]]) -> tuple[str, list[tuple[str, bool]]]:
    """The side-by-side table and the target's verdicts."""
    table = []
    checks = []
    cells = [
        (scenario, case, row) for scenario, rows in scenarios.items() for case, row in rows.items()
    ]
    for scenario, case, row in cells:
        quiet_p99 = median([r.p99_us for r in row.quiet])
        scraped_p99 = median([r.p99_us for r in row.scraped])
        durations = [s for seen in row.scrapes for s in seen.seconds]
        pages = [s for seen in row.scrapes for s in seen.page_seconds]
        failures = sum(seen.failures for seen in row.scrapes)
        cpu = f"{row.cpu_per_scrape * 1000:.0f}" if row.cpu_per_scrape else ""
        table.append(
            [
                scenario,
                case,
                pair([r.rps for r in row.quiet], [r.rps for r in row.scraped], "{:,.0f}"),
                pair([r.p50_us for r in row.quiet], [r.p50_us for r in row.scraped], "{:.0f}"),
                f"{quiet_p99 / 1000:.2f} / {scraped_p99 / 1000:.2f}",
                f"{(scraped_p99 - quiet_p99) / 1000:+.2f}",
                f"{len(durations)}, {median(durations) * 1000:.0f} / {max(durations) * 1000:.0f}",
                f"{median(pages) * 1000:.0f}",
                str(failures + sum(r.errors for r in row.quiet + row.scraped)),
                cpu,
            ]
        )
        added = (scraped_p99 - quiet_p99) / 1000
        checks.append(
            (
                f"{scenario}, {case}: p99 {scraped_p99 / 1000:.2f} ms with a scrape every "
                f"second vs {quiet_p99 / 1000:.2f} ms without ({added:+.2f} ms; target within "
                "2 ms)",
                added <= 2.0,
            )
        )
    headers = [
        "store between scrapes",
        f"{SERIES:,} ingested series + {APP_SERIES:,} merged, quiet / scraped",
        "req/s",
        "p50 µs",
        "p99 ms",
        "p99 added ms",
        "scrapes, median / max ms",
        "status page ms",
        "errors",
        "CPU ms per scrape",
    ]
    return render_table(headers, table), checks


def run(args: argparse.Namespace, workdir: Path, upstream: int, load_cores: str, cores: str) -> str:
    """The scenario against an upstream nginx already serving /small and /metrics."""
    root = Path(getattr(args, "sidecar_root", None) or ROOT)
    scenarios = {}
    for scenario, churn in SCENARIOS:
        with sidecar(workdir, upstream, cores, root) as car:
            print(f" {scenario}:", flush=True)
            scenarios[scenario] = measure(car, args, load_cores, churn)
            if not churn:
                parsed = check_exposition(car.admin)
    if getattr(args, "cpu_only", False):
        return (
            "\n".join(
                f"{scenario}: CPU per scrape {rows[CASES[0][0]].cpu_per_scrape * 1000:.0f} ms, "
                f"per status page {rows[CASES[0][0]].cpu_per_page * 1000:.0f} ms"
                for scenario, rows in scenarios.items()
            )
            + f"\n{parsed}"
        )
    table, checks = report(scenarios)
    verdicts = "\n".join(f"- [{'x' if ok else ' '}] {text}" for text, ok in checks)
    return f"{table}\n\n{parsed}\n{verdicts}"


def render_cpu(protobuf: bool = False) -> str:
    """CPU of rendering the ``SERIES`` ingested series alone, in this process (OpenMetrics,
    or protobuf when ``protobuf``; gzip): without the render cache, with it (first,
    unchanged, ``CHURN_SHARE`` pushed)."""
    from ingest import _translator

    from sidecar.ingest.codec import Encoding, decode_request
    from sidecar.ingest.collector import OtlpCollector
    from sidecar.ingest.store import MetricStore, StoreLimits
    from sidecar.unified import UnifiedCollector

    store, translator = MetricStore(StoreLimits(max_series=2 * SERIES)), _translator()
    requests = [
        build_request(f, PUSH_POINTS, HISTOGRAM_SHARE, 3) for f in range(0, SERIES, PUSH_POINTS)
    ]

    def apply(request: ExportMetricsServiceRequest) -> None:
        store.apply(
            translator.translate(decode_request(request.SerializeToString(), Encoding.PROTOBUF))
        )

    for request in requests:
        apply(request)
    plain = UnifiedCollector([OtlpCollector(store, cache=False)])
    cached = UnifiedCollector([OtlpCollector(store)])

    accept = PROTOBUF_ACCEPT if protobuf else PROMETHEUS_ACCEPT

    def timed(view: UnifiedCollector) -> float:
        started = time.process_time()
        view.render(accept, "gzip")
        return time.process_time() - started

    rows = [["no cache", f"{min(timed(plain) for _ in range(3)) * 1000:.0f}"]]
    rows.append(["cache, first render", f"{timed(cached) * 1000:.0f}"])
    rows.append(["cache, nothing changed", f"{min(timed(cached) for _ in range(3)) * 1000:.1f}"])
    changed = []
    for turn in range(3):
        share = int(len(requests) * CHURN_SHARE)
        for request in requests[turn * share : (turn + 1) * share]:
            apply(advanced(request))
        changed.append(timed(cached))
    rows.append(
        [f"cache, {CHURN_SHARE:.0%} of the series pushed since", f"{min(changed) * 1000:.0f}"]
    )
    form = "protobuf" if protobuf else "OpenMetrics"
    headers = [f"render of {SERIES:,} ingested series ({form}, gzip)", "CPU ms"]
    return render_table(headers, rows)


def main() -> int:
    """Standalone: start an upstream nginx and run the scenario."""
    from common import congestion_control, cpu_layout, ensure_tools
    from proxy import nginx, running, upstream_conf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 10))
    )
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 3)))
    parser.add_argument(
        "--sidecar-root", type=Path, help="run the sidecar of this checkout (a before/after)"
    )
    parser.add_argument(
        "--render-only", action="store_true", help="only time renders in this process"
    )
    parser.add_argument(
        "--cpu-only",
        action="store_true",
        help="only the sidecar's CPU per scrape and per status page (no wrk runs)",
    )
    parser.add_argument(
        "--protobuf",
        action="store_true",
        help="with --render-only: ask for protobuf (Prometheus with native histograms on)",
    )
    args = parser.parse_args()
    if args.render_only:
        print(render_cpu(args.protobuf))
        return 0
    ensure_tools("wrk:wrk", "nginx:nginx")
    load_cores, proxy_cores = cpu_layout()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp, congestion_control() as cc:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        (workdir / "big").write_bytes(b"")
        (workdir / "app-metrics").write_text(app_metrics())
        upstream = free_port()
        print(f"tcp_congestion_control={cc}; {args.runs} runs x {args.duration:g}s", flush=True)
        conf = upstream_conf(workdir, upstream)
        with running(nginx(conf, workdir, "upstream", load_cores), upstream):
            print(run(args, workdir, upstream, load_cores, proxy_cores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
