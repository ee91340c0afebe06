"""The direct text writer is byte for byte prometheus_client's encoders on the same families."""

from __future__ import annotations

import math

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from sidecar.ingest.store import StoreLimits
from tests.support.otlp import (
    DELTA,
    Harness,
    counter,
    epoint,
    exponential,
    gauge,
    histogram,
    hpoint,
    number,
    request,
    summary,
)


def _mixed() -> Harness:
    harness = Harness(StoreLimits(max_series_per_metric=3), scope_labels=True, target_info=True)
    harness.push(
        request(
            counter(
                "c",
                [number(i, {"k": f"v{i}", "z": 'q"\\\n'}) for i in range(5)],
                unit="By",
                description="help \\ with\nnewline",
            ),
            gauge(
                "g",
                [
                    number(math.nan),
                    number(math.inf, {"a": 1}),
                    number(1e300, {"a": 2}),
                    number(1e-7, {"a": 3}),
                ],
            ),
            histogram(
                "h",
                [
                    hpoint([0.5, 1e6], [1, 2, 3], 9.0, {"a": "x", "m": "y"}),
                    hpoint([], [4], 1.0, {"b": "1"}),
                ],
                temporality=DELTA,
            ),
            exponential(
                "e",
                [
                    epoint(2, (-3, [1, 0, 2]), negative=(1, [1]), zero_count=2),
                    epoint(-1, (5, [3]), labels={"p": "1"}),
                ],
            ),
            summary("s", [(0.0, 1.0), (1.0, 5.0)], 6.0, 2, {"r": "x"}),
        )
    )
    return harness


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_same_bytes_as_prometheus_client(openmetrics):
    harness = _mixed()
    if openmetrics:
        expected = generate_openmetrics(harness.collector).decode().removesuffix("# EOF\n")
    else:
        expected = generate_latest(harness.collector).decode()
    assert harness.text(openmetrics) == expected
    assert "otel_metric_overflow" in expected  # the overflow series is part of the comparison
