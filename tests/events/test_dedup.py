"""The idempotency-key memory: window from first sighting, oldest forgotten first, against
a plain reference. Both implementations, whichever runs (`sidecar.extensions`): the C one
(`_scan.KeyMemory`) and the pure-Python one (`pyscan.KeyMemory`)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.events import _scan, pyscan
from sidecar.events.scan import KeyMemory
from tests.support.events import ReferenceMemory

pytestmark = pytest.mark.parametrize(
    "memory_class", [_scan.KeyMemory, pyscan.KeyMemory], ids=["c", "python"]
)


def _observe(memory: KeyMemory, key: str, now: float) -> bool:
    return memory.find_duplicates([key], now) == [0]


@pytest.mark.parametrize(
    ("second_at", "duplicate"),
    [(0.0, True), (5.0, True), (9.999, True), (10.0, False), (60.0, False)],
    ids=["same-time", "inside", "just-inside", "at-window", "long-after"],
)
def test_window(second_at: float, duplicate: bool, memory_class: type[KeyMemory]) -> None:
    memory = memory_class(window=10.0, max_keys=100)
    assert _observe(memory, "k", 100.0) is False
    assert _observe(memory, "k", 100.0 + second_at) is duplicate


def test_a_duplicate_does_not_extend_the_window(memory_class: type[KeyMemory]) -> None:
    memory = memory_class(window=10.0, max_keys=100)
    assert [_observe(memory, "k", t) for t in (0, 6, 9, 10, 15, 19.5, 20)] == [
        False, True, True, False, True, True, False,
    ]  # fmt: skip


def test_expiry_forgets_only_old_keys(memory_class: type[KeyMemory]) -> None:
    memory = memory_class(window=10.0, max_keys=100)
    for t, key in enumerate("abcde"):
        _observe(memory, key, float(t))
    memory.expire(12.0)
    assert [key in memory for key in "abcde"] == [False, False, False, True, True]
    assert len(memory) == 2


def test_bound_forgets_oldest_first(memory_class: type[KeyMemory]) -> None:
    memory = memory_class(window=3600.0, max_keys=3)
    for t, key in enumerate("abcd"):
        assert _observe(memory, key, float(t)) is False
    assert len(memory) == 3
    assert memory.forgotten == 1
    assert "a" not in memory
    assert _observe(memory, "b", 10.0) is True
    assert _observe(memory, "a", 11.0) is False  # forgotten, so new again (evicts "b")
    assert "b" not in memory
    assert len(memory) == 3


def test_zero_window_never_finds_duplicates(memory_class: type[KeyMemory]) -> None:
    memory = memory_class(window=0.0, max_keys=10)
    assert [_observe(memory, "k", 1.0) for _ in range(3)] == [False, False, False]


def test_duplicates_of_a_batch_in_order(memory_class: type[KeyMemory]) -> None:
    memory = memory_class(window=10.0, max_keys=100)
    assert memory.find_duplicates(["a", "b", "a"], 0.0) == [2]
    assert memory.find_duplicates(["b", "c"], 5.0) == [0]
    assert memory.find_duplicates(["a", "c"], 10.0) == [1]  # "a" expired, "c" not


def test_duplicates_bound_applies_after_the_batch(memory_class: type[KeyMemory]) -> None:
    memory = memory_class(window=3600.0, max_keys=3)
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
    memory_class: type[KeyMemory],
    window: float,
    max_keys: int,
    batches: list[tuple[float, list[str]]],
    expected: list[list[int]],
    remembered: str,
    forgotten: int,
) -> None:
    memory = memory_class(window=window, max_keys=max_keys)
    assert [memory.find_duplicates(keys, now) for now, keys in batches] == expected
    assert sorted(key for key in "abcd" if key in memory) == list(remembered)
    assert len(memory) == len(remembered)
    assert memory.forgotten == forgotten


def test_find_duplicates_agrees_with_a_plain_reference(memory_class: type[KeyMemory]) -> None:
    rng = random.Random("dedup")
    bulk = memory_class(window=5.0, max_keys=20)
    reference = ReferenceMemory(window=5.0, max_keys=20)
    now = 0.0
    for _ in range(500):
        now += rng.choice([0.0, 0.5, 2.0, 6.0])
        keys = [f"k{rng.randint(0, 40)}" for _ in range(rng.randint(1, 25))]
        assert bulk.find_duplicates(keys, now) == reference.find_duplicates(keys, now)
        assert len(bulk) == len(reference.keys)
        assert all(key in bulk for key in reference.keys)
        assert bulk.forgotten == reference.forgotten


# Keys that take every path of the C memory: inline (up to 40 bytes) and heap-held keys,
# non-ASCII and lone surrogates (kept apart from their UTF-8 look-alikes), the empty key.
_KEYS = st.sampled_from(
    ["a", "b", "k" * 40, "k" * 41, "ключ", "\ud800", "\u00e9", "e\u0301", "", "x" * 300]
) | st.text(max_size=50)


@given(
    window=st.sampled_from([0.0, 1.0, 5.0, 1e9]),
    max_keys=st.integers(0, 60),
    batches=st.lists(
        st.tuples(st.sampled_from([0.0, 0.5, 1.0, 6.0]), st.lists(_KEYS, max_size=40)),
        max_size=40,
    ),
)
@settings(max_examples=200, deadline=None)
def test_agrees_with_the_reference_on_any_sequence(
    memory_class: type[KeyMemory],
    window: float,
    max_keys: int,
    batches: list[tuple[float, list[str]]],
) -> None:
    memory = memory_class(window=window, max_keys=max_keys)
    reference = ReferenceMemory(window=window, max_keys=max_keys)
    now = 0.0
    for step, keys in batches:
        now += step
        assert memory.find_duplicates(keys, now) == reference.find_duplicates(keys, now)
        assert len(memory) == len(reference.keys)
        assert all(key in memory for key in reference.keys)
        assert memory.forgotten == reference.forgotten


def test_growth_and_evictions_keep_every_key(memory_class: type[KeyMemory]) -> None:
    """Far more keys than the first ring (1,024) and many evictions: the ring and table
    grow, and deletions by backward shift run many times over."""
    memory = memory_class(window=1e9, max_keys=5_000)
    reference = ReferenceMemory(window=1e9, max_keys=5_000)
    rng = random.Random("growth")
    for step in range(300):
        keys = [f"key-{rng.randint(0, 12_000)}" for _ in range(rng.choice([1, 50, 1000]))]
        assert memory.find_duplicates(keys, float(step)) == reference.find_duplicates(
            keys, float(step)
        )
    assert len(memory) == len(reference.keys) == 5_000
    assert all(key in memory for key in reference.keys)
    assert memory.forgotten == reference.forgotten


def test_expire_alone_and_contains(memory_class: type[KeyMemory]) -> None:
    memory = memory_class(window=10.0, max_keys=10)
    memory.find_duplicates(["a", "b"], 0.0)
    memory.find_duplicates(["c"], 5.0)
    memory.expire(10.0)
    assert ("a" in memory, "b" in memory, "c" in memory) == (False, False, True)
    assert 5 not in memory  # not a str: simply absent
    assert len(memory) == 1


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m: m(window=1.0, max_keys=-1), ValueError),
        (lambda m: m(window=1.0, max_keys=2**40), ValueError),
        (lambda m: m(1.0, 1).find_duplicates(["a", 5], 0.0), TypeError),
        (lambda m: m(1.0, 1).find_duplicates(5, 0.0), TypeError),
    ],
    ids=[
        "negative-bound",
        "huge-bound",
        "non-str-key",
        "not-a-sequence",
    ],
)
def test_misuse_raises(
    call: Callable[[type[KeyMemory]], object],
    error: type[Exception],
    memory_class: type[KeyMemory],
) -> None:
    with pytest.raises(error):
        call(memory_class)


def test_a_failed_batch_records_nothing(memory_class: type[KeyMemory]) -> None:
    memory = memory_class(window=10.0, max_keys=10)
    with pytest.raises(TypeError):
        memory.find_duplicates(["a", None], 0.0)  # type: ignore[list-item]
    assert len(memory) == 0
