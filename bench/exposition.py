"""/metrics in protobuf beside text (issue 17, "Speed"): one command, one table.

100,000 ingested series (10 % 16-bucket histograms, filled through the OTLP decode path as
bench/ingest.py fills them), rendered by `UnifiedCollector.render` as text 0.0.4 and as
delimited protobuf MetricFamily (what Prometheus with native histograms asks for): the
first scrape's CPU seconds (protobuf encodes every label set once and keeps it), then best
of three, wall clock and CPU seconds of this single-threaded process, and the body sizes.

    .venv/bin/python bench/exposition.py [--series 100000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def fill(series: int) -> MetricStore:
    """A store holding ``series`` series, filled through the protobuf decode path."""
    store = MetricStore(StoreLimits(max_series=2 * series, max_series_per_metric=1000))
    translator = Translator(TranslationRules(("service.name",)))
    for first in range(0, series, 10_000):
        req = build_request(first, min(10_000, series - first), HISTOGRAM_SHARE, 2)
        body = req.SerializeToString()
        store.apply(translator.translate(decode_request(body, Encoding.PROTOBUF)))
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    args = parser.parse_args()
    store = fill(args.series)
    unified = UnifiedCollector([OtlpCollector(store)])
    print(f"| /metrics, {len(store):,} series (10 % histograms) | wall s | CPU s | body bytes |")
    print("|---|---|---|---|")
    for name, accept in FORMATS.items():
        gc.collect()
        cpu_started = time.process_time()
        unified.render(accept, "")  # the first scrape: protobuf fills its label cache
        print(f"| {name}, first scrape | | {time.process_time() - cpu_started:.3f} | |")
        walls, cpus = [], []
        for _ in range(3):
            gc.collect()
            started, cpu_started = time.perf_counter(), time.process_time()
            body = unified.render(accept, "").body
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu_started)
        print(f"| {name} | {min(walls):.3f} | {min(cpus):.3f} | {len(body):,} |")


if __name__ == "__main__":
    main()
