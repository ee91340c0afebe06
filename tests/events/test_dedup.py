"""The idempotency-key memory: window from first sighting, oldest forgotten first."""

from __future__ import annotations

import random
from collections import OrderedDict

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


def test_duplicates_of_a_batch_in_order() -> None:
    memory = IdempotencyMemory(window=10.0, max_keys=100)
    assert memory.find_duplicates(["a", "b", "a"], 0.0) == [2]
    assert memory.find_duplicates(["b", "c"], 5.0) == [0]
    assert memory.find_duplicates(["a", "c"], 10.0) == [1]  # "a" expired, "c" not


def test_duplicates_bound_applies_after_the_batch() -> None:
    memory = IdempotencyMemory(window=3600.0, max_keys=3)
    assert memory.find_duplicates(["a", "b", "c", "d", "a"], 0.0) == [4]
    assert len(memory) == 3
    assert memory.forgotten == 1
    assert "a" not in memory  # oldest forgotten first
    assert memory.find_duplicates(["a", "d"], 1.0) == [1]


# (time, keys) batches -> duplicate indices per batch, then what is remembered
FIND_CASES = [
    ("all-new", 10.0, 100, [(0, ["a", "b"]), (1, ["c"])], [[], []], "abc", 0),
    ("repeat-inside-batch", 10.0, 100, [(0, ["a", "b", "a", "a"])], [[2, 3]], "ab", 0),
    (
        "known-and-repeat",
        10.0,
        100,
        [(0, ["a"]), (1, ["b", "a", "b", "c"])],
        [[], [1, 2]],
        "abc",
        0,
    ),
    ("same-time-batches", 10.0, 100, [(5, ["a"]), (5, ["b"]), (5, ["a"])], [[], [], [0]], "ab", 0),
    (
        "expired-is-new",
        10.0,
        100,
        [(0, ["a", "b"]), (10, ["a"]), (12, ["a"])],
        [[], [], [0]],
        "a",
        0,
    ),
    ("bound-after-batch", 3600.0, 2, [(0, ["a", "b", "c", "a"])], [[3]], "bc", 1),
    ("bound-partial-generation", 3600.0, 3, [(0, ["a", "b"]), (1, ["c", "d"])], [[], []], "bcd", 1),
    (
        "bound-whole-generations",
        3600.0,
        2,
        [(0, ["a"]), (1, ["b"]), (2, ["c", "d"])],
        [[], [], []],
        "cd",
        2,
    ),
    ("forgotten-is-new", 3600.0, 2, [(0, ["a", "b", "c"]), (1, ["a", "c"])], [[], [1]], "ac", 2),
]


@pytest.mark.parametrize(
    ("window", "max_keys", "batches", "expected", "remembered", "forgotten"),
    [case[1:] for case in FIND_CASES],
    ids=[case[0] for case in FIND_CASES],
)
def test_find_duplicates(
    window: float,
    max_keys: int,
    batches: list[tuple[float, list[str]]],
    expected: list[list[int]],
    remembered: str,
    forgotten: int,
) -> None:
    memory = IdempotencyMemory(window=window, max_keys=max_keys)
    assert [memory.find_duplicates(keys, now) for now, keys in batches] == expected
    assert sorted(key for key in "abcd" if key in memory) == list(remembered)
    assert len(memory) == len(remembered)
    assert memory.forgotten == forgotten


class _Reference:
    """The memory's contract written plainly: an ordered dict in first-seen order."""

    def __init__(self, window: float, max_keys: int) -> None:
        self.window = window
        self.max_keys = max_keys
        self.keys: OrderedDict[str, float] = OrderedDict()
        self.forgotten = 0

    def find_duplicates(self, batch: list[str], now: float) -> list[int]:
        while self.keys and next(iter(self.keys.values())) <= now - self.window:
            self.keys.popitem(last=False)
        found = []
        for index, key in enumerate(batch):
            if key in self.keys:
                found.append(index)
            else:
                self.keys[key] = now
        while len(self.keys) > self.max_keys:
            self.keys.popitem(last=False)
            self.forgotten += 1
        return found


def test_find_duplicates_agrees_with_a_plain_reference() -> None:
    rng = random.Random("dedup")
    bulk = IdempotencyMemory(window=5.0, max_keys=20)
    reference = _Reference(window=5.0, max_keys=20)
    now = 0.0
    for _ in range(500):
        now += rng.choice([0.0, 0.5, 2.0, 6.0])
        keys = [f"k{rng.randint(0, 40)}" for _ in range(rng.randint(1, 25))]
        assert bulk.find_duplicates(keys, now) == reference.find_duplicates(keys, now)
        assert len(bulk) == len(reference.keys)
        assert all(key in bulk for key in reference.keys)
        assert bulk.forgotten == reference.forgotten
