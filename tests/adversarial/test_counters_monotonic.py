"""Case 11: counters never go backwards across scrapes (a hypothesis state machine).

The machine mixes delta and cumulative counter pushes, delta histogram pushes, clock
advances with expiry, overflow (a per-metric limit of 3 series for 6 label sets) and
scrapes. Invariant: between two scrapes, every counter-like sample (``_total``,
``_count``, ``_bucket``, the ``_sum`` of non-negative observations) present in both is
not smaller in the second. A series that expiry removed in between is a new series and
starts a new history (its absence is observed at expiry time, so a quick re-creation
between scrapes cannot hide a reset). The streams are valid (no resets, no decreasing
cumulative values), so any decrease is the store's doing.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from prometheus_client.parser import text_string_to_metric_families

from sidecar.ingest.store import StoreLimits
from tests.support.otlp import DELTA, Harness, counter, histogram, hpoint, number, request

TTL = 10.0
LABEL_SETS = st.integers(min_value=0, max_value=5)
MONOTONIC_SUFFIXES = ("_total", "_count", "_bucket", "_sum")

Key = tuple[str, frozenset[tuple[str, str]]]


def _counter_samples(text: str) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        if family.type not in ("counter", "histogram"):
            continue
        for s in family.samples:
            if s.name.endswith(MONOTONIC_SUFFIXES):
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


class CounterMachine(RuleBasedStateMachine):
    """Pushes, expiry, overflow and scrapes against one store."""

    def __init__(self) -> None:
        super().__init__()
        self.harness = Harness(StoreLimits(max_series_per_metric=3, series_ttl=TTL))
        self.clock_ns = 1_000
        self.delta_end: dict[tuple[str, int], int] = {}
        self.cumulative: dict[int, int] = {}
        self.last: dict[Key, float] = {}
        self.scrapes = 0

    def _tick(self) -> int:
        self.clock_ns += 1
        return self.clock_ns

    @rule(label=LABEL_SETS, increment=st.integers(min_value=0, max_value=1000))
    def push_delta_counter(self, label: int, increment: int) -> None:
        start = self.delta_end.get(("d", label), self.clock_ns)
        end = self._tick()
        self.delta_end[("d", label)] = end
        self.harness.push(
            request(
                counter(
                    "d", [number(increment, {"k": label}, start=start, time=end)], temporality=DELTA
                )
            )
        )

    @rule(label=LABEL_SETS, increment=st.integers(min_value=0, max_value=1000))
    def push_cumulative_counter(self, label: int, increment: int) -> None:
        self.cumulative[label] = self.cumulative.get(label, 0) + increment
        point = number(self.cumulative[label], {"k": label}, start=1, time=self._tick())
        self.harness.push(request(counter("c", [point])))

    @rule(
        label=LABEL_SETS,
        counts=st.tuples(st.integers(0, 50), st.integers(0, 50)),
        total=st.floats(min_value=0, max_value=1e6),
    )
    def push_delta_histogram(self, label: int, counts: tuple[int, int], total: float) -> None:
        start = self.delta_end.get(("h", label), self.clock_ns)
        end = self._tick()
        self.delta_end[("h", label)] = end
        point = hpoint([1.0], list(counts), total, {"k": label}, start=start, time=end)
        self.harness.push(request(histogram("h", [point], temporality=DELTA)))

    @rule(seconds=st.floats(min_value=0, max_value=2 * TTL))
    def advance_and_expire(self, seconds: float) -> None:
        self.harness.now += seconds
        if self.harness.store.expire():
            present = _counter_samples(self.harness.text())
            self.last = {k: v for k, v in self.last.items() if k in present}

    @rule()
    def scrape(self) -> None:
        current = _counter_samples(self.harness.text())
        for key, value in current.items():
            before = self.last.get(key)
            assert before is None or value >= before, (key, before, value)
        self.last = current
        self.scrapes += 1

    @invariant()
    def store_within_limits(self) -> None:
        for family in self.harness.store.families.values():
            assert len(family.series) <= 3


CounterMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestCountersNeverGoBackwards = CounterMachine.TestCase
