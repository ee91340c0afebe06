"""The idempotency-key memory: which keys were seen within the dedup window."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

__all__ = ["IdempotencyMemory"]


class IdempotencyMemory:
    """Keys seen in the last `window` seconds, at most `max_keys` of them.

    A key is remembered from its first sighting: seeing it again within the window is a
    duplicate and does not extend it (like a server-side dedup record with a TTL). Keys
    are kept in first-seen order, so both expiry and the memory bound forget the oldest
    first. Times come from the caller's clock (seconds, monotonic).

    Built for whole batches: a set answers membership and a queue of generations (the
    keys first seen at one time, in order) gives the age order, so a batch of new keys
    costs a few set operations in C (`isdisjoint`, `update`, `difference_update`), not
    Python per key; only a batch holding a duplicate is walked key by key.
    """

    __slots__ = ("_generations", "_max_keys", "_seen", "_window", "forgotten")

    def __init__(self, window: float, max_keys: int) -> None:
        self._window = window
        self._max_keys = max_keys
        self._seen: set[str] = set()
        # (first-seen time, keys first seen then, oldest first); every key in `_seen`
        # is in exactly one generation
        self._generations: deque[tuple[float, list[str]]] = deque()
        self.forgotten = 0  # keys dropped by the memory bound before their window ended

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def expire(self, now: float) -> None:
        """Forget every key first seen `window` or more seconds before `now`."""
        generations = self._generations
        horizon = now - self._window
        while generations and generations[0][0] <= horizon:
            self._seen.difference_update(generations.popleft()[1])

    def observe(self, key: str, now: float) -> bool:
        """Remember `key`; True when it is a duplicate. Call `expire(now)` first."""
        if key in self._seen:
            return True
        self._remember(now, [key])
        return False

    def find_duplicates(self, keys: Sequence[str], now: float) -> list[int]:
        """Expire, then observe every key in order; the indices of the duplicates.

        `keys` are non-empty. The memory bound applies after the whole batch.
        """
        self.expire(now)
        seen = self._seen
        if seen.isdisjoint(keys):
            size = len(seen)
            seen.update(keys)
            if len(seen) - size == len(keys):  # all new, no repeat inside the batch
                self._add_generation(now, list(keys))
                return []
            seen.difference_update(keys)  # undo: walk the batch key by key
        found = []
        fresh = []
        for index, key in enumerate(keys):
            if key in seen:
                found.append(index)
            else:
                seen.add(key)
                fresh.append(key)
        self._add_generation(now, fresh)
        return found

    def _remember(self, now: float, keys: list[str]) -> None:
        self._seen.update(keys)
        self._add_generation(now, keys)

    def _add_generation(self, now: float, keys: list[str]) -> None:
        """Append keys already added to `_seen`, then apply the memory bound."""
        generations = self._generations
        if generations and generations[-1][0] == now:
            generations[-1][1].extend(keys)
        elif keys:
            generations.append((now, keys))
        excess = len(self._seen) - self._max_keys
        if excess > 0:
            self.forgotten += excess
            self._forget_oldest(excess)

    def _forget_oldest(self, count: int) -> None:
        generations = self._generations
        seen = self._seen
        while count > 0:
            keys = generations[0][1]
            if len(keys) <= count:
                generations.popleft()
                seen.difference_update(keys)
                count -= len(keys)
            else:
                seen.difference_update(keys[:count])
                del keys[:count]
                count = 0
