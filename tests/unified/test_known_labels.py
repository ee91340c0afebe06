"""Counters with known label values are exposed at 0 before their first event."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sidecar.config import MergeTarget
from sidecar.export.pusher import FAILURE, SUCCESS, export_counter
from sidecar.ingest import store
from sidecar.ingest.instruments import IngestInstruments
from sidecar.instruments import merge_conflicts
from sidecar.known_labels import MERGE_CONFLICT_KINDS, OTLP_REJECT_REASONS
from sidecar.merge.fetch import Result
from sidecar.merge.scraper import MergeScraper, natives_dropped_counter, scrapes_counter
from sidecar.observability import Metrics, Module
from sidecar.proxy.metrics import ERROR_REASONS, ProxyMetrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def module():
    module = Module.new("zeroed-test")
    yield module
    module.provider.shutdown()


def _series(module: Module, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in module.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                labels = {k: v for k, v in sample.labels.items() if not k.startswith("otel_")}
                out[tuple(sorted(labels.items()))] = sample.value
    return out


def test_every_known_label_value_is_at_zero_before_any_event(module):
    merge_conflicts(module.meter)
    IngestInstruments.create(module.meter, lambda: 0)
    targets = [MergeTarget(name="app", url="http://127.0.0.1:1/metrics")]
    MergeScraper(
        targets,
        scrapes_counter(module.meter),
        natives_dropped=natives_dropped_counter(module.meter),
    )
    ProxyMetrics(module.meter, Metrics.create(module.meter), lambda: 0)
    export_counter(module.meter)

    assert _series(module, "sidecar_merge_conflicts_total") == {
        (("kind", kind),): 0.0 for kind in ("series", "type")
    }
    assert _series(module, "sidecar_otlp_data_points_rejected_total") == {
        (("reason", reason),): 0.0 for reason in OTLP_REJECT_REASONS
    }
    assert _series(module, "sidecar_merge_scrapes_total") == {
        (("result", r.value), ("target", "app")): 0.0 for r in Result
    }
    assert _series(module, "sidecar_merge_native_histograms_dropped_total") == {
        (("target", "app"),): 0.0
    }
    assert _series(module, "sidecar_proxy_errors_total") == {
        (("reason", reason),): 0.0 for reason in ERROR_REASONS
    }
    assert _series(module, "sidecar_export_total") == {
        (("result", SUCCESS),): 0.0,
        (("result", FAILURE),): 0.0,
    }


def test_the_known_values_are_the_ones_the_code_counts():
    """Every reason the ingest path rejects with is in the list (so none starts late)."""
    literals = set(
        re.findall(r'\.reject\("([a-z_]+)"', (ROOT / "sidecar/ingest/translate.py").read_text())
    )
    constants = {store.OUT_OF_ORDER, store.TYPE_CONFLICT, store.STORE_FULL, store.BOUNDS_MISMATCH}
    assert literals  # the pattern still finds them
    assert literals | constants == set(OTLP_REJECT_REASONS)
    from sidecar import unified

    assert {unified.CONFLICT_SERIES, unified.CONFLICT_TYPE} == set(MERGE_CONFLICT_KINDS)
