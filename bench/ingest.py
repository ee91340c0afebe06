"""Ingest speed and /metrics memory (issue 4, "Speed and memory"): one command, one table.

1. Points per second decoded, translated and stored on one core, for requests of 1,000
   points (800 counter and 200 histogram points, 5 attributes each, cumulative, every
   request a new round of the same series), protobuf and OTLP/JSON. Target: protobuf
   >= 200,000 points/s.
2. /metrics with 100,000 ingested series (filled through the same decode path), text
   format and OpenMetrics: render time (target < 1 s) and resident memory per series
   (target < 1 KiB), for all-counter series and for a mix with 10 % 16-bucket histograms.
3. The in-process OpenTelemetry Prometheus exporter (SDK + PrometheusMetricReader +
   prometheus_client's encoder) rendering the same series, and the ratio.

Each /metrics scenario runs in a fresh child process so RSS deltas are its own. Times are
printed as wall clock and as CPU seconds of the (single-threaded) process: on a busy
shared machine the CPU figure is the one that says what one core does.
Pinned to one core with ``os.sched_setaffinity`` when the machine has more than one.

    .venv/bin/python bench/ingest.py [--rounds 3] [--series 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from google.protobuf import json_format  # noqa: E402
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb  # noqa: E402

from sidecar.config import config_from_dict  # noqa: E402  # (relabel rule sets)
from sidecar.ingest.codec import Encoding, decode_request  # noqa: E402
from sidecar.ingest.collector import OtlpCollector  # noqa: E402
from sidecar.ingest.store import MetricStore, StoreLimits  # noqa: E402
from sidecar.ingest.translate import TranslationRules, Translator  # noqa: E402
from sidecar.relabel.families import Relabeller  # noqa: E402
from sidecar.relabel.ingest import IngestRelabel  # noqa: E402
from sidecar.relabel.rules import compile_rules  # noqa: E402
from sidecar.unified import UnifiedCollector  # noqa: E402

POINTS_PER_REQUEST = 1000
COUNTER_SHARE = 0.8
BOUNDS = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]  # 16 buckets
PROMOTE = ("service.name", "service.namespace", "service.instance.id")
TEXT, OPENMETRICS = "text/plain", "application/openmetrics-text; version=1.0.0"
ROUNDS_PER_PASS = 40
WORKER_ATTRIBUTES = ("service.instance.id", "process.pid")
BENCH_WORKERS = 4


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _attrs(i: int) -> list[KeyValue]:
    return [
        _kv("method", ("GET", "POST", "PUT")[i % 3]),
        _kv("route", f"/api/v1/items/{i}"),
        _kv("status", str(200 + i % 5)),
        _kv("region", ("eu-west-1", "us-east-1")[i % 2]),
        _kv("instance", f"pod-{i % 17}"),
    ]


def build_request(
    first: int, points: int, histogram_share: float, t: int, worker: int | None = None
) -> ExportMetricsServiceRequest:
    """``points`` points for series ``first``...: per 1,000, counters then histograms
    (``worker``: pushed by that worker process of a pod, `WORKER_ATTRIBUTES` telling it)."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend([_kv("service.name", "bench"), _kv("service.instance.id", "i-1")])
    if worker is not None:
        rm.resource.attributes[1].value.string_value = f"i-{worker}"
        rm.resource.attributes.append(_kv("process.pid", str(1000 + worker)))
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = "bench", "1.0"
    for chunk in range(first, first + points, 1000):
        end = min(chunk + 1000, first + points)
        split = end - int((end - chunk) * histogram_share)
        counters = sm.metrics.add(name=f"bench.counter.{chunk // 1000}")
        counters.sum.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
        counters.sum.is_monotonic = True
        for i in range(chunk, split):
            counters.sum.data_points.add(
                attributes=_attrs(i), start_time_unix_nano=1, time_unix_nano=t, as_int=t * 10 + i
            )
        if split == end:
            continue
        histograms = sm.metrics.add(name=f"bench.histogram.{chunk // 1000}", unit="ms")
        histograms.histogram.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
        counts = [t % 7 + j for j in range(16)]
        for i in range(split, end):
            histograms.histogram.data_points.add(
                attributes=_attrs(i), start_time_unix_nano=1, time_unix_nano=t,
                explicit_bounds=BOUNDS, bucket_counts=counts, count=sum(counts), sum=123.0 * t,
            )  # fmt: skip
    return req


def _translator(workers: bool = False) -> Translator:
    return Translator(TranslationRules(PROMOTE, worker_attributes=WORKER_ATTRIBUTES * workers))


def ingest_rate(
    encoding: Encoding, rounds: int, workers: int = 0, aggregate: bool = False
) -> tuple[float, float]:
    """Median points/s of decode + translate + store over ``rounds`` passes: per wall-clock
    second and per CPU second of this (single-threaded) process, which a busy shared
    machine disturbs much less. ``workers``: requests come from that many worker processes
    in turn; ``aggregate``: with ``ingest.workers`` on (one pod-level series for all)."""
    bodies = []
    for t in range(2, 2 + ROUNDS_PER_PASS):
        worker = t % workers if workers else None
        req = build_request(0, POINTS_PER_REQUEST, 1 - COUNTER_SHARE, t // max(workers, 1), worker)
        if encoding is Encoding.PROTOBUF:
            bodies.append(req.SerializeToString())
        else:
            bodies.append(json_format.MessageToJson(req, indent=None).encode())
    rates, cpu_rates = [], []
    for _ in range(rounds):
        store, translator = MetricStore(StoreLimits()), _translator(aggregate)
        gc.collect()
        started, cpu_started = time.perf_counter(), time.process_time()
        for body in bodies:
            outcome = store.apply(translator.translate(decode_request(body, encoding)))
            assert outcome.accepted == POINTS_PER_REQUEST, outcome
        points = len(bodies) * POINTS_PER_REQUEST
        rates.append(points / (time.perf_counter() - started))
        cpu_rates.append(points / (time.process_time() - cpu_started))
    return statistics.median(rates), statistics.median(cpu_rates)


# relabel rule sets (issue 20) on the ingest path: the issue's example (its labeldrop
# and replace change every series: run before the store, remembered per label set) and
# a drop of the histograms by name
RELABEL_SETS = (
    ("the issue's 4 rules", [
        {"action": "drop", "match": {"__name__": "go_.*"}},
        {"action": "keep", "source": "merge", "match": {"__name__": "app_.*|http_.*"}},
        {"action": "labeldrop", "regex": "otel_scope_.*"},
        {"action": "replace", "source_labels": ["service_name"], "target_label": "job"},
    ]),
    ("drop the histograms by name", [
        {"action": "drop", "match": {"__name__": "bench_histogram_.*"}},
    ]),
)  # fmt: skip


def relabel_round(bodies: list[bytes], relabel: IngestRelabel | None) -> tuple[float, float]:
    """One pass of ``bodies`` through translation, the relabel rules before the store (as
    the receiver runs them; None: no rules) and a fresh store: (points/s, per CPU-s)."""
    store, translator = MetricStore(StoreLimits()), _translator()
    gc.collect()
    started, cpu_started = time.perf_counter(), time.process_time()
    for body in bodies:
        batch = translator.translate(decode_request(body, Encoding.PROTOBUF))
        if relabel is not None:
            relabel.apply(batch, store)
        store.apply(batch)
    points = len(bodies) * POINTS_PER_REQUEST
    return points / (time.perf_counter() - started), points / (time.process_time() - cpu_started)


def print_relabel_table(rounds: int) -> None:
    """Ingest points/s with each relabel rule set against none (target: cost <= 15 %).

    The rule sets' results are remembered across passes, as a running sidecar remembers
    them for a steady stream of pushes: the first pass relabels each of its 1,000 label
    sets once (shown apart), the median of the ``rounds`` passes after it is the steady
    state. Passes alternate between the rule sets, so a busy machine disturbs all alike.
    """
    bodies = [
        build_request(0, POINTS_PER_REQUEST, 1 - COUNTER_SHARE, t).SerializeToString()
        for t in range(2, 2 + ROUNDS_PER_PASS)
    ]
    sets: list[tuple[str, IngestRelabel | None]] = [("no rules", None)] + [
        (label, IngestRelabel(compile_rules(config_from_dict({"relabel": rules}).relabel)))
        for label, rules in RELABEL_SETS
    ]
    first = {label: relabel_round(bodies, relabel) for label, relabel in sets}
    passes: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in sets}
    for _ in range(rounds):
        for label, relabel in sets:
            passes[label].append(relabel_round(bodies, relabel))
    print(
        "\n| relabel rules on ingest (protobuf) | points/s (wall) | points per CPU-s"
        " | cost | first pass, per CPU-s |"
    )
    print("|---|---|---|---|---|")
    none = statistics.median(cpu for _, cpu in passes["no rules"])
    for label, _ in sets:
        rate = statistics.median(wall for wall, _ in passes[label])
        cpu_rate = statistics.median(cpu for _, cpu in passes[label])
        cost = 1 - cpu_rate / none
        verdict = f"{cost:.1%} ({'ok' if cost <= 0.15 else 'MISSED'}: <= 15 %)"
        shown = "-" if label == "no rules" else verdict
        print(f"| {label} | {rate:,.0f} | {cpu_rate:,.0f} | {shown} | {first[label][1]:,.0f} |")


def relabel_scrape_cpu(series: int, rules: list[dict[str, object]]) -> tuple[float, float]:
    """CPU seconds of one text scrape of ``series`` ingested series with ``rules``: (as
    stored before the store relabelled them, relabelled at the scrape as before)."""
    compiled = compile_rules(config_from_dict({"relabel": rules}).relabel)
    bodies = [
        build_request(first, min(10_000, series - first), 0.0, 2).SerializeToString()
        for first in range(0, series, 10_000)
    ]
    out = []
    for prestore in (True, False):
        store = MetricStore(StoreLimits(max_series=2 * series, max_series_per_metric=1000))
        translator, relabel = _translator(), IngestRelabel(compiled if prestore else ())
        for body in bodies:
            batch = translator.translate(decode_request(body, Encoding.PROTOBUF))
            relabel.apply(batch, store)
            store.apply(batch)
        unified = UnifiedCollector(
            [OtlpCollector(store, relabel=relabel)], relabel=Relabeller(compiled)
        )
        cpu = []
        for _ in range(3):
            cpu_started = time.process_time()
            unified.render(TEXT, "")
            cpu.append(time.process_time() - cpu_started)
        out.append(min(cpu))
    return out[0], out[1]


def print_relabel_scrape(series: int) -> None:
    """One scrape of ``series`` ingested series with the issue's rules, and without."""
    none, _ = relabel_scrape_cpu(series, [])
    issue = cast(list[dict[str, object]], RELABEL_SETS[0][1])
    before, at_scrape = relabel_scrape_cpu(series, issue)
    print(
        f"\n| scrape of {series:,} ingested series (text, CPU) | no rules | the issue's rules |"
        "\n|---|---|---|"
        f"\n| relabelled before the store | {none * 1000:.0f} ms | {before * 1000:.0f} ms |"
        f"\n| relabelled at the scrape (before this change) | {none * 1000:.0f} ms"
        f" | {at_scrape * 1000:.0f} ms |"
    )


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child_ours(series: int, histogram_share: float) -> dict[str, float]:
    """Fill a store through the decode path, then render it (text and OpenMetrics)."""
    requests = [
        build_request(first, min(10_000, series - first), histogram_share, 2).SerializeToString()
        for first in range(0, series, 10_000)
    ]
    gc.collect()
    before = _rss()
    store = MetricStore(StoreLimits(max_series=2 * series, max_series_per_metric=1000))
    translator = _translator()
    for body in requests:
        store.apply(translator.translate(decode_request(body, Encoding.PROTOBUF)))
    del requests
    gc.collect()
    rss = _rss() - before
    unified = UnifiedCollector([OtlpCollector(store)])
    out = {"rss_per_series": rss / len(store), "series": float(len(store))}
    for name, accept in (("text", TEXT), ("openmetrics", OPENMETRICS)):
        times = []
        cpu_times = []
        for _ in range(3):
            started, cpu_started = time.perf_counter(), time.process_time()
            body = unified.render(accept, "").body
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
        out[name] = min(times)
        out[name + "_cpu"] = min(cpu_times)
        out[name + "_bytes"] = float(len(body))
    return out


def child_exporter(series: int, histogram_share: float) -> dict[str, float]:
    """The same series recorded in-process and rendered by the OTel Prometheus exporter."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    gc.collect()
    before = _rss()
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(
        registry=registry, cardinality_limits={Counter: series + 1, Histogram: series + 1}
    )
    view = View(instrument_type=Histogram, aggregation=ExplicitBucketHistogramAggregation(BOUNDS))
    provider = MeterProvider(metric_readers=[reader], views=[view])
    meter = provider.get_meter("bench", "1.0")
    histograms = int(series * histogram_share)
    for start in range(0, series, 1000):
        is_histogram = start >= series - histograms
        name = f"bench.metric.{start // 1000}"
        instrument = (
            meter.create_histogram(name, unit="ms") if is_histogram else meter.create_counter(name)
        )
        for i in range(start, min(series, start + 1000)):
            attrs = {kv.key: kv.value.string_value for kv in _attrs(i)}
            if is_histogram:
                instrument.record(7.0, attrs)
            else:
                instrument.add(i, attrs)
    gc.collect()
    rss = _rss() - before
    times, cpu_times = [], []
    for _ in range(2):
        started, cpu_started = time.perf_counter(), time.process_time()
        body = generate_latest(registry)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    provider.shutdown()
    return {
        "text": min(times),
        "text_cpu": min(cpu_times),
        "rss_per_series": rss / series,
        "text_bytes": float(len(body)),
    }


def _run_child(kind: str, series: int, share: float) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--series", str(series),
         "--histograms", str(share)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--histograms", type=float, default=0.0)
    parser.add_argument("--child", choices=["ours", "exporter"])
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.child:
        fn = child_ours if args.child == "ours" else child_exporter
        print(json.dumps(fn(args.series, args.histograms)))
        return
    print(
        f"# ingest bench: python {sys.version.split()[0]}, 1 core,"
        f" load average {os.getloadavg()[0]:.2f} (a shared machine disturbs the numbers)"
    )
    print(
        "\n| ingest (1,000-point requests, 80 % counters / 20 % histograms)"
        " | points/s (wall) | points per CPU-s | target |"
    )
    print("|---|---|---|---|")
    for encoding in (Encoding.PROTOBUF, Encoding.JSON):
        rate, cpu_rate = ingest_rate(encoding, args.rounds)
        target = ">= 200,000" if encoding is Encoding.PROTOBUF else "-"
        verdict = "" if encoding is Encoding.JSON else (" ok" if cpu_rate >= 200_000 else " MISSED")
        print(f"| {encoding.label} | {rate:,.0f} | {cpu_rate:,.0f} | {target}{verdict} |")
    print(
        f"\n| {BENCH_WORKERS} workers of one pod in turn (protobuf) | points/s (wall)"
        " | points per CPU-s | cost of aggregation |"
    )
    print("|---|---|---|---|")
    apart = ingest_rate(Encoding.PROTOBUF, args.rounds, BENCH_WORKERS, aggregate=False)
    together = ingest_rate(Encoding.PROTOBUF, args.rounds, BENCH_WORKERS, aggregate=True)
    cost = 1 - together[1] / apart[1]  # per CPU second
    verdict = f"{cost:.1%} of points/s ({'ok' if cost <= 0.15 else 'MISSED'}: <= 15 %)"
    for label, (rate, cpu_rate), says in (
        ("`ingest.workers` off: one series per worker", apart, "-"),
        ("`ingest.workers` on: one pod-level series", together, verdict),
    ):
        print(f"| {label} | {rate:,.0f} | {cpu_rate:,.0f} | {says} |")
    print_relabel_table(args.rounds)  # relabel
    print_relabel_scrape(min(args.series, 20_000))
    print(
        f"\n| /metrics, {args.series:,} series | text render | OpenMetrics render | RSS/series"
        " | OTel exporter text render | exporter RSS/series | exporter ÷ ours |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, share in (("all counters", 0.0), ("10 % histograms (16 buckets)", 0.1)):
        ours = _run_child("ours", args.series, share)
        theirs = _run_child("exporter", args.series, share)
        ok = "ok" if ours["text_cpu"] < 1 and ours["rss_per_series"] < 1024 else "MISSED"
        ratio = theirs["text_cpu"] / ours["text_cpu"]
        print(
            f"| {label} | {ours['text']:.3f} s ({ours['text_cpu']:.3f} CPU)"
            f" | {ours['openmetrics']:.3f} s ({ours['openmetrics_cpu']:.3f} CPU)"
            f" | {ours['rss_per_series']:.0f} B"
            f" | {theirs['text']:.3f} s ({theirs['text_cpu']:.3f} CPU)"
            f" | {theirs['rss_per_series']:.0f} B | {ratio:.1f}x ({ok}) |"
        )


if __name__ == "__main__":
    main()
