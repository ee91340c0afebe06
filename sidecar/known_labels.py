"""Counters whose label values the sidecar knows, exposed at 0 from the start.

A counter that appears only after its first event makes ``rate()`` and
``increase()`` miss that first event and leaves alerts on ``absent()`` guessing; every
counter here is created with one series per known label value at 0 (OTel's
``Counter.add(0, ...)`` creates the series without changing it):

- ``sidecar_merge_conflicts_total{kind}``: `MERGE_CONFLICT_KINDS`;
- ``sidecar_otlp_data_points_rejected_total{reason}``: `OTLP_REJECT_REASONS`;
- ``sidecar_merge_scrapes_total{target,result}``: every result of every target;
- ``sidecar_proxy_errors_total{reason}``: the proxy's error reasons;
- ``sidecar_export_total{result}``: success and failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry.metrics import Counter

__all__ = ["MERGE_CONFLICT_KINDS", "OTLP_REJECT_REASONS", "zeroed"]

MERGE_CONFLICT_KINDS = ("series", "type")  # sidecar.unified's CONFLICT_SERIES, CONFLICT_TYPE
# sidecar.ingest.translate's (a whole metric or point refused) and sidecar.ingest.store's
OTLP_REJECT_REASONS = (
    "no_data",
    "invalid_name",
    "unspecified_temporality",
    "invalid_point",
    "out_of_order",
    "type_conflict",
    "store_full",
    "bounds_mismatch",
)


def zeroed(
    counter: Counter,
    label: str,
    values: Iterable[str],
    other: Mapping[str, str] | None = None,
) -> Counter:
    """``counter`` with a series at 0 for every ``label`` value (and the ``other`` labels)."""
    for value in values:
        counter.add(0, {**(other or {}), label: value})
    return counter
