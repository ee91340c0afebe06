"""Stored families straight to protobuf MetricFamily bytes (the scrape's fast path).

The same messages `sidecar.protobuf.encode_family` writes from the family's `to_metric`,
without the prometheus_client objects in between. Labels cost once, not per scrape: a
`LabelBytes` keeps each series' encoded label pairs (keyed by its label text, which
changes only with the series), and builds them for a new series from the label pairs
it has seen before (``route="/a"``, ``method="GET"`` repeat across thousands of series),
so a scrape after a restart or after new series costs little more than the next one.
Lengths below 16,384 come from a table, not a varint loop.
"""

from __future__ import annotations

import functools
import math
import operator
import re
import struct
from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate, compress, repeat

from sidecar import extensions
from sidecar.exposition import parse_labels
from sidecar.ingest.model import Kind
from sidecar.ingest.store import ExponentialState, Family, Series
from sidecar.ingest.text import classic_buckets
from sidecar.protobuf import (
    SeriesParts,
    double,
    labels_bytes,
    length_field,
    text_field,
    varint_field,
)

__all__ = [
    "LabelBytes",
    "encode_series",
    "encode_stored",
    "family_head",
    "series_natives",
]

C_LABELS = extensions.enabled("sidecar.ingest._pblabels")
if C_LABELS:
    from sidecar.ingest import _pblabels
LABEL_CACHE_MAX = 1 << 18  # label texts kept; started afresh beyond (≥ ingest.max_series)
INF = math.inf
MIN_SCHEMA, MAX_SCHEMA = -4, 8  # the native histogram schemas Prometheus knows
_COUNTER, _GAUGE, _SUMMARY, _HISTOGRAM = 0, 1, 2, 4  # io.prometheus.client.MetricType
# one pair's text without its closing quote, backslash-free, as the store writes it
_PIECE = re.compile(r'(?:[a-zA-Z_][a-zA-Z0-9_]*|"[^"]*")="[^"]*')
_SMALL = 1 << 14  # the varints of 0 .. _SMALL-1 (one or two bytes), precomputed
_VARINT = tuple(
    bytes((n,)) if n < 0x80 else bytes(((n & 0x7F) | 0x80, n >> 7)) for n in range(_SMALL)
)
_SCALAR = 11  # a counter's or gauge's value message with its tag and length: 1 + 1 + 9
# a LabelPair field's head (tag 1, length) by its size
_PAIR_HEADS = tuple(b"\x0a" + varint for varint in _VARINT)
# a counter's or gauge's Metric head (tag 4, length) by the size of its label pairs
_SCALAR_HEADS = tuple(b"\x22" + _VARINT[size + _SCALAR] for size in range(_SMALL - _SCALAR))
# tag 1 (double) of the value message, behind the message's tag (counter 3, gauge 2)
_COUNTER_VALUE = struct.Struct("<3sd").pack
_COUNTER_HEAD, _GAUGE_HEAD = b"\x1a\x09\x09", b"\x12\x09\x09"
# a classic bucket: tag 3, length, cumulative_count (1, varint), then upper_bound (2, double)
_BUCKET_HEAD = tuple(bytes((0x1A, 10 + size, 0x08)) for size in range(11))


def _uvarint(value: int) -> bytes:
    """``value`` as a varint, negative ones as uint64 (as `varint_field`)."""
    if 0 <= value < _SMALL:
        return _VARINT[value]
    return varint_field(b"", value)


def _pair(name: str, value: str) -> bytes:
    """One ``LabelPair`` as field 1 of a Metric (`labels_bytes` of one label)."""
    v = value.encode()
    inner = _name_field(name) + _uvarint(len(v)) + v
    return b"\x0a" + _uvarint(len(inner)) + inner


def _new_pairs(pieces: list[str], pairs: dict[str, bytes], names: dict[str, str]) -> bool:
    """Encode the new pair texts ``pieces`` (``name="value``) into ``pairs`` and ``names``
    with C loops only (`map`: no Python frame a pair); False, with nothing added, when one
    is not as the store writes it, has a quoted name or too long a value or pair (then
    each is taken alone)."""
    if not all(map(_PIECE.fullmatch, pieces)):
        return False
    split = list(map(str.partition, pieces, repeat('="')))
    keys = list(map(operator.itemgetter(0), split))
    if any(map(operator.methodcaller("startswith", '"'), keys)):
        return False
    values = list(map(str.encode, map(operator.itemgetter(2), split)))
    try:
        inners = list(
            map(
                operator.add,
                map(_name_field, keys),
                map(operator.add, map(_VARINT.__getitem__, map(len, values)), values),
            )
        )
        encoded = list(map(operator.add, map(_PAIR_HEADS.__getitem__, map(len, inners)), inners))
    except IndexError:  # a length past the tables
        return False
    pairs.update(zip(pieces, encoded, strict=True))
    names.update(zip(pieces, keys, strict=True))
    return True


@functools.lru_cache(maxsize=4096)
def _name_field(name: str) -> bytes:
    """A LabelPair's name field and the value's tag (names repeat: kept)."""
    n = name.encode()
    return b"\x0a" + _uvarint(len(n)) + n + b"\x12"


class LabelBytes:
    """Encoded ``LabelPair`` fields of label texts; bounded, kept between scrapes.

    Three maps, each started afresh when it reaches ``limit``: label text -> its pairs
    (histograms, summaries); label text -> a whole counter/gauge Metric's head (tag,
    length, pairs: only the value follows); and one label pair's text (``name="value``)
    -> its encoded pair, which is what makes a new series cheap.
    """

    def __init__(self, limit: int = LABEL_CACHE_MAX, *, use_c: bool = C_LABELS) -> None:
        self._limit = limit
        self._c = use_c and C_LABELS  # (tests run both ways)
        self._cache: dict[str, bytes] = {}
        self._scalar: dict[str, bytes] = {}
        self._pairs: dict[str, bytes] = {}
        self._names: dict[str, str] = {}  # a pair's text -> its name

    def __call__(self, text: str) -> bytes:
        encoded = self._cache.get(text)
        if encoded is None:
            encoded = self.encode(text)
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[text] = encoded
        return encoded

    def scalar(self, text: str) -> bytes:
        """The head of a counter's or gauge's Metric: tag 4, its length, its label pairs."""
        head = self._scalar.get(text)
        if head is None:
            encoded = self.encode(text)
            head = b"\x22" + _uvarint(len(encoded) + _SCALAR) + encoded
            if len(self._scalar) >= self._limit:
                self._scalar.clear()
            self._scalar[text] = head
        return head

    def prime(self, series: list[Series], *, scalar: bool) -> None:
        """Encode the label texts of one family's series that are not cached yet, all in
        one pass (the pure-Python path; the C encoder needs none): a first scrape, or one
        after many new series. Their pairs are split, looked up and joined for all of them
        at once, and the duplicate-name check is one comparison when they all name the
        same labels (as a family's series do) instead of a few calls per series. A text
        this pass does not take is encoded one by one, as before. ``scalar``: fill the
        counter/gauge heads (`scalar`), else the label pairs (`__call__`)."""
        cache = self._scalar if scalar else self._cache
        if self._c or not series or series[0].labels in cache:  # (cached: a later scrape)
            return
        fresh = [t for t in [s.labels for s in series] if t not in cache and t and "\\" not in t]
        if not fresh:
            return
        widths = [t.count('",') + 1 for t in fresh]
        flat = '",'.join([t[:-1] for t in fresh]).split('",')
        if len(flat) != sum(widths):  # (a text the split reads otherwise)
            return
        pairs, names = self._pairs, self._names
        if len(pairs) + len(flat) > self._limit:
            pairs.clear()
            names.clear()
        encoded = list(map(pairs.get, flat))
        bad: set[int] = set()  # texts not as the store writes them
        missing = list(compress(range(len(flat)), map(operator.is_, encoded, repeat(None))))
        if missing and _new_pairs(
            list(dict.fromkeys(map(flat.__getitem__, missing))), pairs, names
        ):
            encoded = list(map(pairs.get, flat))
        elif missing:
            starts = list(accumulate(widths, initial=0))
            for i in missing:
                piece = flat[i]
                hit = pairs.get(piece)  # (new in an earlier text of these)
                if hit is None:
                    if not _PIECE.fullmatch(piece):
                        bad.add(bisect_right(starts, i) - 1)
                        continue
                    name, _, value = piece.partition('="')
                    if name[:1] == '"':  # a quoted (UTF-8) name
                        name = name[1:-1]
                    names[piece] = name
                    hit = pairs[piece] = _pair(name, value)
                encoded[i] = hit
        named = list(map(names.get, flat))
        first = widths[0]
        # the same label names in every text, none twice: one check for all of them
        same = (
            widths.count(first) == len(widths)
            and named == named[:first] * len(widths)
            and len(set(named[:first])) == first
        )
        if len(cache) + len(fresh) > self._limit:
            cache.clear()
        if same and not bad:  # each text's bytes cut from one join, in C loops
            blob = b"".join(encoded)  # type: ignore[arg-type]
            bounds = list(accumulate(map(len, encoded), initial=0))[::first]  # type: ignore[arg-type]
            chunks: Iterable[bytes] = map(blob.__getitem__, map(slice, bounds, bounds[1:]))
            if scalar:
                sizes = list(map(operator.sub, bounds[1:], bounds))
                if max(sizes) < _SMALL - _SCALAR:
                    chunks = map(operator.add, map(_SCALAR_HEADS.__getitem__, sizes), chunks)
                else:
                    chunks = (b"\x22" + _uvarint(len(c) + _SCALAR) + c for c in list(chunks))
            cache.update(zip(fresh, chunks, strict=True))
            return
        at = 0
        for index, (text, width) in enumerate(zip(fresh, widths, strict=True)):
            end = at + width
            if index not in bad and (same or len(set(named[at:end])) == width):
                joined = b"".join(encoded[at:end])  # type: ignore[arg-type]
                if scalar:
                    joined = b"\x22" + _uvarint(len(joined) + _SCALAR) + joined
                cache[text] = joined
            at = end

    def encode(self, text: str) -> bytes:
        """``labels_bytes(parse_labels(text))``: in C (`_pblabels`) where it is built, else
        from the label pairs seen before."""
        if self._c:
            encoded = _pblabels.encode(text)
            if encoded is not None:
                return encoded
            return labels_bytes(parse_labels(text))
        return self._from_pairs(text)

    def _from_pairs(self, text: str) -> bytes:
        if not text:
            return b""
        if "\\" in text:  # escapes: the general parser (rare; only then can a pair's
            return labels_bytes(parse_labels(text))  # text hold '",' or '="')
        # without a backslash no quoted part holds a '"': '",' ends a pair, '="' ends its name
        pieces = text[:-1].split('",')
        pairs, names = self._pairs, self._names
        encoded = list(map(pairs.get, pieces))
        if None in encoded:
            if len(pairs) + len(pieces) > self._limit:
                pairs.clear()
                names.clear()
            for i, piece in enumerate(pieces):
                if piece not in pairs:
                    if not _PIECE.fullmatch(piece):  # not as the store writes it
                        return labels_bytes(parse_labels(text))
                    name, _, value = piece.partition('="')
                    if name[:1] == '"':  # a quoted (UTF-8) name
                        name = name[1:-1]
                    names[piece] = name
                    encoded[i] = pairs[piece] = _pair(name, value)
        if len(set(map(names.__getitem__, pieces))) < len(pieces):  # a name twice:
            return labels_bytes(parse_labels(text))  # the dict keeps one
        return b"".join(encoded)  # type: ignore[arg-type]


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
        deltas.append(_uvarint(_sint(count - previous_count)))
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
    return b"\x08" + _uvarint(_sint(offset)) + b"\x10" + _uvarint(length)


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


class _Bounds:
    """Each explicit bound's ``upper_bound`` field (None for ``+Inf``), by bounds tuple."""

    def __init__(self) -> None:
        self._known: dict[tuple[float, ...], list[bytes | None]] = {}
        self._ending: dict[tuple[float, ...], list[bytes | None]] = {}  # (``+Inf`` last)

    def __call__(self, bounds: tuple[float, ...]) -> list[bytes | None]:
        fields = self._known.get(bounds)
        if fields is None:
            fields = self._known[bounds] = _bound_fields([*bounds, INF])
        return fields

    def with_inf(self, bounds: list[float]) -> list[bytes | None]:
        """`__call__` for bounds that end in ``+Inf`` already (an exponential series'
        classic conversion: the series of one scale and offset share them)."""
        key = tuple(bounds)
        fields = self._ending.get(key)
        if fields is None:
            fields = self._ending[key] = _bound_fields(bounds)
        return fields


def _bound_fields(bounds: list[float]) -> list[bytes | None]:
    return [None if bound == INF else b"\x11" + double(bound) for bound in bounds]


def _histogram(series: Series, known: _Bounds) -> bytes:
    """A Metric's histogram field (7)."""
    extra = series.extra
    if extra is not None and not isinstance(extra, tuple):
        bounds, counts = classic_buckets(extra)
        fields, total = known.with_inf(bounds), extra.sum
    else:
        fields, counts, total = known(series.bounds), series.counts or [0], series.sum
    if len(fields) != len(counts):
        raise ValueError(f"{len(counts)} bucket counts for {len(fields)} bounds")
    running = [round(count) for count in accumulate(counts)]
    heads, small, varint = _BUCKET_HEAD, _SMALL, _VARINT
    # the +Inf bucket is sample_count; the others: head, cumulative count, upper bound
    buckets = [
        heads[len(v)] + v + field
        for v, field in zip(
            [varint[c] if 0 <= c < small else _uvarint(c) for c in running], fields, strict=True
        )
        if field is not None
    ]
    if isinstance(extra, ExponentialState):  # classic buckets and native ones
        buckets.append(native(extra))
    count = running[-1] if running else 0
    body = b"\x08" + _uvarint(count) + b"\x11" + double(total) + b"".join(buckets)
    return b"\x3a" + _uvarint(len(body)) + body


def _summary(series: Series) -> bytes:
    quantiles = series.extra if isinstance(series.extra, tuple) else ()
    parts = [length_field(b"\x1a", b"\x09" + double(q) + b"\x11" + double(v)) for q, v in quantiles]
    head = varint_field(b"\x08", round(series.value)) + b"\x11" + double(series.sum)
    return length_field(b"\x22", head + b"".join(parts))


def _metric(labels: bytes, body: bytes) -> bytes:
    """A Metric (tag 4, length) of label pairs and one value field."""
    return b"\x22" + _uvarint(len(labels) + len(body)) + labels + body


def family_head(family: Family) -> bytes:
    """A stored family's MetricFamily fields before its ``metric`` entries: name, help,
    type."""
    d = family.descriptor
    kind = d.kind
    if kind is Kind.COUNTER:
        name, wire = d.name + "_total", _COUNTER
    elif kind is Kind.GAUGE:
        name, wire = d.name, _GAUGE
    else:
        name, wire = d.name, _HISTOGRAM if kind is Kind.HISTOGRAM else _SUMMARY
    return text_field(b"\x0a", name) + text_field(b"\x12", d.help) + varint_field(b"\x18", wire)


def encode_series(family: Family, series: list[Series], labels: LabelBytes) -> bytes:
    """The ``metric`` entries (field 4: tag, length, Metric) of some of a stored family's
    series, in order. Repeated entries concatenate, so the entries of a family's chunks,
    each encoded alone, join to the entries of all of them (`sidecar.rendercache`)."""
    kind = family.descriptor.kind
    if kind is Kind.COUNTER or kind is Kind.GAUGE:
        value_head = _COUNTER_HEAD if kind is Kind.COUNTER else _GAUGE_HEAD
        scalar, pack = labels.scalar, _COUNTER_VALUE
        labels.prime(series, scalar=True)
        return b"".join([scalar(s.labels) + pack(value_head, s.value) for s in series])
    labels.prime(series, scalar=False)
    if kind is Kind.HISTOGRAM:
        known = _Bounds()
        return b"".join([_metric(labels(s.labels), _histogram(s, known)) for s in series])
    return b"".join([_metric(labels(s.labels), _summary(s)) for s in series])


def encode_stored(family: Family, labels: LabelBytes) -> bytes:
    """One stored family as MetricFamily bytes (not delimited)."""
    return family_head(family) + encode_series(family, list(family.all_series()), labels)


def series_natives(family: Family) -> SeriesParts:
    """The native parts of a stored histogram family's exponential series, by each
    series' labels, with the count of their classic conversion (`text.to_metric`'s
    ``+Inf`` bucket): what the family's `Metric` carries (`sidecar.protobuf.DerivedNatives`)
    when it is built anew (merged, relabelled, escaped)."""
    if family.descriptor.kind is not Kind.HISTOGRAM:
        return {}
    out: SeriesParts = {}
    for series in family.all_series():
        extra = series.extra
        if isinstance(extra, ExponentialState):
            fields = native(extra)
            if fields:
                count = sum(classic_buckets(extra)[1])
                out[frozenset(parse_labels(series.labels).items())] = (count, fields)
    return out
