"""The pure-Python stand-ins of `_scan` (the C extension), for when it is off or not built
(`sidecar.extensions`).

`KeyMemory` keeps the same contract in an ordered dict: keys in first-seen order, the
window counted from the first sighting, expiry before a batch, the bound applied after
it, oldest forgotten first. `BatchScanner` and `response_count` decline every body, so
the exact decoder (`codec.decode_batch_request`, `codec.decode_batch_response`) reads
them all: the counts are the same, only slower (tests/events run in both modes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["BatchScanner", "KeyMemory", "response_count"]

MAX_KEYS = 0x7FFFFFF0 // 2  # the C memory's bound on max_keys


class KeyMemory:
    """Idempotency keys seen in the last `window` seconds, at most `max_keys` of them."""

    __slots__ = ("_keys", "forgotten", "max_keys", "window")

    def __init__(self, window: float, max_keys: int) -> None:
        if not 0 <= max_keys <= MAX_KEYS:
            raise ValueError("max_keys out of range")
        self.window = float(window)
        self.max_keys = max_keys
        self.forgotten = 0  # keys dropped by the bound before their window ended
        self._keys: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def find_duplicates(self, keys: Sequence[str], now: float, /) -> list[int]:
        """Expire, then observe every key in order; the indices of the duplicates."""
        if isinstance(keys, str) or not isinstance(keys, Sequence):
            raise TypeError("keys must be a sequence")
        if not all(isinstance(key, str) for key in keys):
            raise TypeError("keys must be str")
        self.expire(now)
        seen = self._keys
        found = []
        for index, key in enumerate(keys):
            if key in seen:
                found.append(index)
            else:
                seen[key] = now
        while len(seen) > self.max_keys:
            seen.popitem(last=False)
            self.forgotten += 1
        return found

    def expire(self, now: float, /) -> None:
        """Forget every key first seen `window` or more seconds before `now`."""
        seen, horizon = self._keys, now - self.window
        while seen and next(iter(seen.values())) <= horizon:
            seen.popitem(last=False)


class BatchScanner:
    """Declines every body (`scan` returns None): the exact decoder reads them all."""

    __slots__ = ("_kinds",)

    def __init__(
        self,
        batch_field: tuple[int, str],
        key_field: int,
        key_names: tuple[str, ...],
        members: tuple[tuple[int, str, str], ...],
        max_events: int,
        *,
        size_bounds: tuple[float, ...] | None = None,
    ) -> None:
        if size_bounds is not None and list(size_bounds) != sorted(set(size_bounds)):
            raise ValueError("size_bounds must increase")
        self._kinds = len(members) + 1  # the payload members, then no payload

    def scan(
        self, body: bytes | bytearray | memoryview, binary: bool, memory: KeyMemory, now: float, /
    ) -> int | None:
        """None: nothing recorded, the exact decoder answers."""
        return None

    def take_sizes(self) -> tuple[list[int], float, float, float, float] | None:
        """None: no batch was scanned."""
        return None

    def totals(self) -> tuple[list[int], list[int], int]:
        """Zero counts: (events per type index, duplicates per type index, without a key)."""
        return [0] * self._kinds, [0] * self._kinds, 0


def response_count(
    body: bytes | bytearray | memoryview,
    binary: bool,
    field_number: int,
    camel_name: bytes,
    original_name: bytes,
    /,
) -> int | None:
    """None: the exact reader reads the count."""
    return None
