"""The idempotency-key memory: which keys were seen within the dedup window."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import TypeVar

_L = TypeVar("_L")

__all__ = ["IdempotencyMemory"]


class IdempotencyMemory:
    """Keys seen in the last `window` seconds, at most `max_keys` of them.

    A key is remembered from its first sighting: seeing it again within the window is a
    duplicate and does not extend it (like a server-side dedup record with a TTL). Keys
    are kept in first-seen order, so both expiry and the memory bound forget the oldest
    first, at O(1) per key. Times come from the caller's clock (seconds, monotonic).
    """

    __slots__ = ("_keys", "_max_keys", "_window", "forgotten")

    def __init__(self, window: float, max_keys: int) -> None:
        self._window = window
        self._max_keys = max_keys
        self._keys: OrderedDict[str, float] = OrderedDict()
        self.forgotten = 0  # keys dropped by the memory bound before their window ended

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def expire(self, now: float) -> None:
        """Forget every key first seen `window` or more seconds before `now`."""
        keys = self._keys
        horizon = now - self._window
        while keys:
            first_seen = next(iter(keys.values()))
            if first_seen > horizon:
                return
            keys.popitem(last=False)

    def observe(self, key: str, now: float) -> bool:
        """Remember `key`; True when it is a duplicate. Call `expire(now)` first."""
        keys = self._keys
        if key in keys:
            return True
        keys[key] = now
        if len(keys) > self._max_keys:
            keys.popitem(last=False)
            self.forgotten += 1
        return False

    def duplicates(self, events: Iterable[tuple[_L, str]], now: float) -> list[_L]:
        """Expire, then observe every (label, key) in order; the labels of the duplicates.

        Empty keys are skipped. One call per batch: the loop stays free of method calls.
        """
        self.expire(now)
        keys = self._keys
        found = []
        for label, key in events:
            if not key:
                continue
            if key in keys:
                found.append(label)
            else:
                keys[key] = now
        excess = len(keys) - self._max_keys
        if excess > 0:
            self.forgotten += excess
            for _ in range(excess):
                keys.popitem(last=False)
        return found
