"""The idempotency-key memory: window from first sighting, oldest forgotten first."""

from __future__ import annotations

import pytest

from sidecar.events.dedup import IdempotencyMemory


def _observe(memory: IdempotencyMemory, key: str, now: float) -> bool:
    memory.expire(now)
    return memory.observe(key, now)


@pytest.mark.parametrize(
    ("second_at", "duplicate"),
    [(0.0, True), (5.0, True), (9.999, True), (10.0, False), (60.0, False)],
    ids=["same-time", "inside", "just-inside", "at-window", "long-after"],
)
def test_window(second_at: float, duplicate: bool) -> None:
    memory = IdempotencyMemory(window=10.0, max_keys=100)
    assert _observe(memory, "k", 100.0) is False
    assert _observe(memory, "k", 100.0 + second_at) is duplicate


def test_a_duplicate_does_not_extend_the_window() -> None:
    memory = IdempotencyMemory(window=10.0, max_keys=100)
    assert [_observe(memory, "k", t) for t in (0, 6, 9, 10, 15, 19.5, 20)] == [
        False, True, True, False, True, True, False,
    ]  # fmt: skip


def test_expiry_forgets_only_old_keys() -> None:
    memory = IdempotencyMemory(window=10.0, max_keys=100)
    for t, key in enumerate("abcde"):
        _observe(memory, key, float(t))
    memory.expire(12.0)
    assert [key in memory for key in "abcde"] == [False, False, False, True, True]
    assert len(memory) == 2


def test_bound_forgets_oldest_first() -> None:
    memory = IdempotencyMemory(window=3600.0, max_keys=3)
    for t, key in enumerate("abcd"):
        assert _observe(memory, key, float(t)) is False
    assert len(memory) == 3
    assert memory.forgotten == 1
    assert "a" not in memory
    assert _observe(memory, "b", 10.0) is True
    assert _observe(memory, "a", 11.0) is False  # forgotten, so new again (evicts "b")
    assert "b" not in memory
    assert len(memory) == 3


def test_zero_window_never_finds_duplicates() -> None:
    memory = IdempotencyMemory(window=0.0, max_keys=10)
    assert [_observe(memory, "k", 1.0) for _ in range(3)] == [False, False, False]


def test_duplicates_of_a_batch_in_order_with_labels() -> None:
    memory = IdempotencyMemory(window=10.0, max_keys=100)
    assert memory.duplicates([("x", "a"), ("y", "b"), ("z", "a"), ("w", ""), ("v", "")], 0.0) == [
        "z"
    ]
    assert memory.duplicates([("x", "b"), ("y", "c")], 5.0) == ["x"]
    assert memory.duplicates([("x", "a"), ("y", "c")], 10.0) == ["y"]  # "a" expired, "c" not


def test_duplicates_bound_applies_after_the_batch() -> None:
    memory = IdempotencyMemory(window=3600.0, max_keys=3)
    assert memory.duplicates([(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "a")], 0.0) == [5]
    assert len(memory) == 3
    assert memory.forgotten == 1
    assert "a" not in memory  # oldest forgotten first
    assert memory.duplicates([(6, "a"), (7, "d")], 1.0) == [7]
