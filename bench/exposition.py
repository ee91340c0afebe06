"""/metrics in protobuf beside text (issue 17, "Speed"): one command, two tables.

100,000 ingested series (10 % 16-bucket histograms, filled through the OTLP decode path as
bench/ingest.py fills them; a second table with those histograms exponential, so native
in protobuf, classic in text, as issue 17's "10 % native histograms" says), rendered by
`UnifiedCollector.render` as text 0.0.4 and as
delimited protobuf MetricFamily (what Prometheus with native histograms asks for): the
first scrape's CPU seconds (protobuf encodes every label set once and keeps it; both fill
the render cache, `sidecar.rendercache`), then best of three, wall clock and CPU seconds
of this single-threaded process, and the body sizes: the store unchanged, without gzip
(the cached pieces inflated) and with it (as Prometheus asks), and with 10 % of the series
pushed again since the last scrape (gzip).

    .venv/bin/python bench/exposition.py [--series 100000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb  # noqa: E402

from bench.ingest import build_request  # noqa: E402
from sidecar.ingest.codec import Encoding, decode_request  # noqa: E402
from sidecar.ingest.collector import OtlpCollector  # noqa: E402
from sidecar.ingest.store import MetricStore, StoreLimits  # noqa: E402
from sidecar.ingest.translate import TranslationRules, Translator  # noqa: E402
from sidecar.unified import UnifiedCollector  # noqa: E402

HISTOGRAM_SHARE = 0.1
FORMATS = {
    "text 0.0.4": "text/plain;version=0.0.4",
    "protobuf": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited",
}


def exponential(req: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest:
    """``req`` with each histogram point an exponential one (scale 3, 16 positive buckets
    and a zero bucket), attributes and time kept."""
    for metric in req.resource_metrics[0].scope_metrics[0].metrics:
        if not metric.HasField("histogram"):
            continue
        points = list(metric.histogram.data_points)
        metric.ClearField("histogram")
        exp = metric.exponential_histogram
        exp.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
        for p in points:
            point = exp.data_points.add(
                attributes=p.attributes,
                start_time_unix_nano=1,
                time_unix_nano=p.time_unix_nano,
                scale=3,
            )
            point.zero_count = p.time_unix_nano  # (moves on with each push)
            point.positive.offset = 10
            point.positive.bucket_counts.extend([1 + j % 5 for j in range(16)])
            point.count = sum(point.positive.bucket_counts) + point.zero_count
            point.sum = p.sum
    return req


BATCH = 10_000  # series a push holds (10 % of the default 100,000)


def fill(series: int, native: bool = False) -> tuple[MetricStore, Callable[[int, int], None]]:
    """A store holding ``series`` series, filled through the protobuf decode path, and
    what pushes batch ``n`` of them again at time ``t`` (new values)."""
    store = MetricStore(StoreLimits(max_series=2 * series, max_series_per_metric=1000))
    translator = Translator(TranslationRules(("service.name",)))

    def push(batch: int, t: int) -> None:
        first = batch * BATCH % series
        req = build_request(first, min(BATCH, series - first), HISTOGRAM_SHARE, t)
        if native:
            req = exponential(req)
        body = req.SerializeToString()
        store.apply(translator.translate(decode_request(body, Encoding.PROTOBUF)))

    for batch in range(-(-series // BATCH)):
        push(batch, 2)
    return store, push


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    args = parser.parse_args()
    for native in (False, True):
        table(*fill(args.series, native), "native" if native else "classic")


def table(store: MetricStore, push: Callable[[int, int], None], histograms: str) -> None:
    """One table: every format's first scrape, then best of three: unchanged, without
    and with gzip, then with a batch of series pushed again before each scrape."""
    unified = UnifiedCollector([OtlpCollector(store)])
    print(f"\n| /metrics, {len(store):,} series (10 % {histograms} histograms) | wall s | CPU s "
          "| body bytes |")  # fmt: skip
    print("|---|---|---|---|")
    t = 3
    for name, accept in FORMATS.items():
        gc.collect()
        cpu_started = time.process_time()
        unified.render(accept, "")  # the first scrape: protobuf fills its label cache
        print(f"| {name}, first scrape | | {time.process_time() - cpu_started:.3f} | |")
        for row, encoding in ((name, ""), (f"{name}, gzip", "gzip")):
            walls, cpus = [], []
            for _ in range(3):
                gc.collect()
                started, cpu_started = time.perf_counter(), time.process_time()
                body = unified.render(accept, encoding).body
                walls.append(time.perf_counter() - started)
                cpus.append(time.process_time() - cpu_started)
            print(f"| {row} | {min(walls):.3f} | {min(cpus):.3f} | {len(body):,} |")
        walls, cpus = [], []
        for _ in range(3):
            push(t, t)  # (another 10 % each time, new values)
            t += 1
            gc.collect()
            started, cpu_started = time.perf_counter(), time.process_time()
            body = unified.render(accept, "gzip").body
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu_started)
        print(f"| {name}, gzip, 10 % pushed since | {min(walls):.3f} | {min(cpus):.3f} | "
              f"{len(body):,} |")  # fmt: skip


if __name__ == "__main__":
    main()
