"""Stored families straight to protobuf MetricFamily bytes (the scrape's fast path).

The same messages `sidecar.protobuf.encode_family` writes from the family's `to_metric`,
without the prometheus_client objects in between: the encoded label pairs of each series'
label text are kept in a `LabelBytes` cache from scrape to scrape (label text changes
only with the series), so a series costs its value's few bytes.
"""

from __future__ import annotations

import math

from sidecar.ingest.model import Kind
from sidecar.ingest.store import ExponentialState, Family, Series
from sidecar.ingest.text import classic_buckets, parse_labels
from sidecar.protobuf import double, labels_bytes, length_field, text_field, varint_field

__all__ = ["LabelBytes", "encode_stored"]

LABEL_CACHE_MAX = 1 << 18  # label texts kept; started afresh beyond (≥ ingest.max_series)
INF = math.inf
MIN_SCHEMA, MAX_SCHEMA = -4, 8  # the native histogram schemas Prometheus knows
_COUNTER, _GAUGE, _SUMMARY, _HISTOGRAM = 0, 1, 2, 4  # io.prometheus.client.MetricType


class LabelBytes:
    """Encoded ``LabelPair`` fields of label texts; bounded, kept between scrapes."""

    def __init__(self, limit: int = LABEL_CACHE_MAX) -> None:
        self._limit = limit
        self._cache: dict[str, bytes] = {}

    def __call__(self, text: str) -> bytes:
        encoded = self._cache.get(text)
        if encoded is None:
            encoded = labels_bytes(parse_labels(text))
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[text] = encoded
        return encoded


def _sint(value: int) -> int:
    """ZigZag, for sint32/sint64 fields."""
    return (value << 1) ^ (value >> 63)


def _side(buckets: dict[int, int], by: int) -> tuple[list[bytes], bytes]:
    """The spans (each a BucketSpan payload) and packed deltas of one side of a native
    histogram. OTLP bucket ``k`` (upper bound base**(k+1)) is Prometheus bucket ``k+1``;
    ``by`` halvings of the scale merge buckets first."""
    if by:
        merged: dict[int, int] = {}
        for index, count in buckets.items():
            merged[index >> by] = merged.get(index >> by, 0) + count
        buckets = merged
    spans: list[bytes] = []
    deltas: list[bytes] = []
    previous_count = 0
    previous: int | None = None
    offset = length = 0
    for index in sorted(buckets):
        count = buckets[index]
        deltas.append(varint_field(b"", _sint(count - previous_count)))
        previous_count = count
        if previous is not None and index == previous + 1:
            length += 1
        else:
            if length:
                spans.append(_span(offset, length))
            # the first span starts at its bucket; the next ones after a gap
            offset = index + 1 if previous is None else index - previous - 1
            length = 1
        previous = index
    if length:
        spans.append(_span(offset, length))
    return spans, b"".join(deltas)


def _span(offset: int, length: int) -> bytes:
    return varint_field(b"\x08", _sint(offset)) + varint_field(b"\x10", length)


def native(state: ExponentialState) -> bytes:
    """The native-histogram fields of an exponential state (schema at most 8, down-scaled
    past it); empty below schema -4, which native histograms cannot carry."""
    if state.scale < MIN_SCHEMA:
        return b""
    by = max(state.scale - MAX_SCHEMA, 0)
    out = [
        varint_field(b"\x28", _sint(state.scale - by)),
        b"\x31" + double(state.zero_threshold),
        varint_field(b"\x38", state.zero_count),
    ]
    # (negative_span 9, negative_delta 10), (positive_span 12, positive_delta 13)
    for side, span_tag, delta_tag in (
        (state.negative, b"\x4a", b"\x52"),
        (state.positive, b"\x62", b"\x6a"),
    ):
        if side:
            spans, deltas = _side(side, by)
            out.extend(length_field(span_tag, span) for span in spans)
            out.append(length_field(delta_tag, deltas))
    return b"".join(out)


def _histogram(series: Series) -> bytes:
    if series.extra is not None and not isinstance(series.extra, tuple):
        bounds, counts = classic_buckets(series.extra)
        total = series.extra.sum
    else:
        bounds, counts = [*series.bounds, INF], series.counts or [0]
        total = series.sum
    parts = []
    running = 0
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        if bound != INF:  # the +Inf bucket is sample_count
            parts.append(
                length_field(
                    b"\x1a", varint_field(b"\x08", round(running)) + b"\x11" + double(bound)
                )
            )
    head = varint_field(b"\x08", round(running)) + b"\x11" + double(total)
    if isinstance(series.extra, ExponentialState):  # classic buckets and native ones
        parts.append(native(series.extra))
    return length_field(b"\x3a", head + b"".join(parts))


def _summary(series: Series) -> bytes:
    quantiles = series.extra if isinstance(series.extra, tuple) else ()
    parts = [length_field(b"\x1a", b"\x09" + double(q) + b"\x11" + double(v)) for q, v in quantiles]
    head = varint_field(b"\x08", round(series.value)) + b"\x11" + double(series.sum)
    return length_field(b"\x22", head + b"".join(parts))


def encode_stored(family: Family, labels: LabelBytes) -> bytes:
    """One stored family as MetricFamily bytes (not delimited)."""
    d = family.descriptor
    kind = d.kind
    out: list[bytes] = []
    if kind is Kind.COUNTER or kind is Kind.GAUGE:
        counter = kind is Kind.COUNTER
        name, wire, field = (
            (d.name + "_total", _COUNTER, b"\x1a") if counter else (d.name, _GAUGE, b"\x12")
        )
        for s in family.all_series():
            value = length_field(field, b"\x09" + double(s.value))
            out.append(length_field(b"\x22", labels(s.labels) + value))
    elif kind is Kind.HISTOGRAM:
        name, wire = d.name, _HISTOGRAM
        out = [length_field(b"\x22", labels(s.labels) + _histogram(s)) for s in family.all_series()]
    else:
        name, wire = d.name, _SUMMARY
        out = [length_field(b"\x22", labels(s.labels) + _summary(s)) for s in family.all_series()]
    head = text_field(b"\x0a", name) + text_field(b"\x12", d.help) + varint_field(b"\x18", wire)
    return head + b"".join(out)
