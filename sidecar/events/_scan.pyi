"""Types of the C extension `sidecar/events/_scan.c` (see its header comment)."""

from collections.abc import Sequence

class KeyMemory:
    """Idempotency keys seen in the last `window` seconds, at most `max_keys` of them."""

    def __init__(self, window: float, max_keys: int) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    @property
    def forgotten(self) -> int:
        """Keys dropped by the memory bound before their window ended."""

    def find_duplicates(self, keys: Sequence[str], now: float, /) -> list[int]:
        """Expire, then observe every key in order; the indices of the duplicates."""

    def expire(self, now: float, /) -> None:
        """Forget every key first seen `window` or more seconds before `now`."""

class BatchScanner:
    """Reads IngestEventBatchRequest bodies in C, with no Python object per event."""

    def __init__(
        self,
        batch_field: tuple[int, str],
        key_field: int,
        key_names: tuple[str, ...],
        members: tuple[tuple[int, str, str], ...],
        max_events: int,
        *,
        size_bounds: tuple[float, ...] | None = None,
    ) -> None: ...
    def scan(
        self, body: bytes | bytearray | memoryview, binary: bool, memory: KeyMemory, now: float, /
    ) -> int | None:
        """The envelope count, with the batch recorded; None (nothing recorded) off the
        plain path."""

    def take_sizes(self) -> tuple[list[int], float, float, float, float] | None:
        """(bucket counts, sum, min, max, last) of the batch sizes scanned since the last
        call, or None (none scanned, or no `size_bounds`)."""

    def totals(self) -> tuple[list[int], list[int], int]:
        """(events per type index, duplicates per type index, events without a key)."""

def response_count(
    body: bytes | bytearray | memoryview,
    binary: bool,
    field_number: int,
    camel_name: bytes,
    original_name: bytes,
    /,
) -> int | None:
    """The non-negative int32 count of an answer, 0 when absent; None off the plain path."""
