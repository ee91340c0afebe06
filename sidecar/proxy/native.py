"""The proxy's latency histograms as native histograms too (``proxy.native_histograms``).

With the option on, the fold of the exchange log (`sidecar.proxy.metrics`) also puts every
duration and time to first byte into an exponential histogram per label set, at schema 3
(a bucket factor of 2^(1/8) ≈ 1.09, client_golang's ``NativeHistogramBucketFactor: 1.1``),
cumulative. The hot path is untouched (it only appends to the log), and with the option
off nothing of this runs at all.

The batched pending part is swapped out with the batched classic histograms under the
batcher's one lock (a `NativeHistogram` is one of the batcher's instruments), so a
collection hands the same exchanges to both. The encoded native fields are published per
family and label set with their observation count; the protobuf encoder
(`sidecar.protobuf.encode_family`) adds them to a classic series only when that series'
count is the same (a collection on another thread between the two reads would otherwise
pair classic and native parts of different exchanges: that scrape then gets the classic
part only). Text and OpenMetrics answers never see them.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from sidecar.ingest.pbencode import native
from sidecar.ingest.store import ExponentialState
from sidecar.protobuf import NativeParts, SeriesParts

__all__ = ["SCHEMA", "ZERO_THRESHOLD", "NativeHistogram", "bucket_index"]

SCHEMA = 3
ZERO_THRESHOLD = 2.0**-128  # client_golang's default
_SCALE = 2.0**SCHEMA

Attrs = dict[str, str | int]


def bucket_index(value: float) -> int:
    """The OTLP-style index ``k`` of a positive value at `SCHEMA`:
    base**k < value <= base**(k+1), base = 2**(2**-SCHEMA)."""
    return math.ceil(math.log2(value) * _SCALE) - 1


class NativeHistogram:
    """One latency instrument's native histogram per label set (a batcher instrument:
    `record` under the batcher's lock, `flush` with the swapped-out ``pending``)."""

    def __init__(self, family: str, label_names: tuple[str, ...], parts: NativeParts) -> None:
        self._family = family
        self._label_names = label_names
        self._parts = parts
        # id(attrs) -> [attrs, {index: count}, zero count, sum, count]
        self.pending: dict[int, list[Any]] = {}
        self._lock = threading.Lock()
        self._states: dict[frozenset[tuple[str, str]], ExponentialState] = {}
        self._encoded: SeriesParts = {}

    def record(self, value: float, attrs: Attrs) -> None:
        """Count one value (caller holds the batcher's lock)."""
        entry = self.pending.get(id(attrs))
        if entry is None:
            entry = self.pending[id(attrs)] = [attrs, {}, 0, 0.0, 0]
        if value > ZERO_THRESHOLD:
            buckets: dict[int, int] = entry[1]
            index = bucket_index(value)
            buckets[index] = buckets.get(index, 0) + 1
        else:
            entry[2] += 1
        entry[3] += value
        entry[4] += 1

    def flush(self, pending: dict[int, list[Any]]) -> None:
        """Add a swapped-out batch to the cumulative states; publish them encoded."""
        with self._lock:  # (two collections may flush at once)
            states, encoded = self._states, self._encoded
            for attrs, buckets, zeros, total, count in pending.values():
                key = frozenset((name, str(value)) for name, value in attrs.items())
                state = states.get(key)
                if state is None:
                    state = states[key] = ExponentialState(
                        SCHEMA, 0, ZERO_THRESHOLD, {}, {}, 0.0, 0
                    )
                positive = state.positive
                for index, n in buckets.items():
                    positive[index] = positive.get(index, 0) + n
                state.zero_count += zeros
                state.sum += total
                state.count += count
                encoded[key] = (state.count, native(state))  # only the label sets that changed
            self._parts.publish(self._family, self._label_names, dict(encoded))
