"""Properties of pod-level aggregation across workers (``ingest.workers``, issue 20).

Hypothesis draws arbitrary interleavings of what a pre-fork server's workers do: count,
push (cumulative or delta), restart in place (same pid, a new start time, counting from
0 again), get recycled (a new pid takes the slot) and fall silent long enough to be
retired. Every worker's last act before it ends is a push, as the OpenTelemetry SDK's
shutdown flush does; a worker that is retired never pushes again (the documented
contract: ``ingest.workers.idle`` is longer than the export interval).

- The pod-level counter never decreases.
- After every step it equals the sum of every increment pushed so far.
- Nothing is kept for a retired worker: live streams = live (non-retired) workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.ingest.store import StoreLimits
from tests.support.otlp import CUMULATIVE, DELTA, Harness, counter, number, request

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IDLE = 30.0
SLOTS = 4


@dataclass
class Life:
    """One worker process: its pid, start time, counter and what it pushed."""

    pid: int
    start: int
    count: int = 0
    pushed: int = 0  # the cumulative value of its last push
    last_push: float | None = None  # the clock at its last push
    last_time: int = 0  # the time_ns of its last push (a delta's next start)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("count"), st.integers(0, SLOTS - 1), st.integers(0, 7)),
        st.tuples(st.just("push"), st.integers(0, SLOTS - 1), st.just(0)),
        st.tuples(st.just("restart"), st.integers(0, SLOTS - 1), st.just(0)),
        st.tuples(st.just("recycle"), st.integers(0, SLOTS - 1), st.just(0)),
        st.tuples(st.just("wait"), st.just(0), st.sampled_from([1, 10, 25, 40])),
    ),
    max_size=60,
)


class Pod:
    """The model: worker lives per slot, the clock, the expected pod-level total."""

    def __init__(self, temporality: int) -> None:
        self.h = Harness(StoreLimits(worker_idle=IDLE), workers=("process.pid",))
        self.temporality = temporality
        self.time_ns = 1
        self.next_pid = 100
        self.lives = [self._life() for _ in range(SLOTS)]
        self.expected = 0

    def _life(self) -> Life:
        self.next_pid += 1
        self.time_ns += 1
        return Life(self.next_pid, self.time_ns)

    def push(self, slot: int) -> None:
        life = self.lives[slot]
        if life.last_push is not None and self.h.now - life.last_push > IDLE:
            self.lives[slot] = life = self._life()  # it was retired: it has ended, a new one
        self.time_ns += 1
        if self.temporality == DELTA:
            start, value = max(life.start, life.last_time), life.count - life.pushed
        else:
            start, value = life.start, life.count
        point = number(value, start=start, time=self.time_ns)
        resource = {"service.name": "pod", "process.pid": life.pid}
        metric = counter("served", [point], temporality=self.temporality)
        _, outcome = self.h.push(request(metric, resource=resource))
        assert outcome.rejected == {}
        self.expected += life.count - life.pushed
        life.pushed, life.last_push, life.last_time = life.count, self.h.now, self.time_ns

    def value(self) -> float:
        family = self.h.store.families.get("served")
        if family is None:
            return 0.0
        (series,) = family.series.values()
        return series.value

    def live_workers(self) -> int:
        now = self.h.now
        return sum(1 for x in self.lives if x.last_push is not None and now - x.last_push <= IDLE)


def _run(temporality: int, program: list[tuple[str, int, int]]) -> None:
    pod = Pod(temporality)
    before = 0.0
    for action, slot, amount in program:
        if action == "count":
            pod.lives[slot].count += amount
        elif action == "push":
            pod.push(slot)
        elif action == "restart":  # flush, exit, start again under the same pid
            pod.push(slot)
            pid = pod.lives[slot].pid
            pod.time_ns += 1
            pod.lives[slot] = Life(pid, pod.time_ns)
        elif action == "recycle":  # flush, exit; the master forks a new pid for the slot
            pod.push(slot)
            pod.lives[slot] = pod._life()
        else:
            pod.h.now += amount
            pod.h.store.expire()
        value = pod.value()
        assert value >= before, (action, value, before)
        assert value == pod.expected
        before = value
    pod.h.now += IDLE + 1
    pod.h.store.expire()
    assert pod.h.store.streams == 0
    assert pod.value() == pod.expected


@SETTINGS
@given(steps)
def test_cumulative_pod_counter_is_monotonic_and_exact(program: list[tuple[str, int, int]]) -> None:
    _run(CUMULATIVE, program)


@SETTINGS
@given(steps)
def test_delta_pod_counter_is_monotonic_and_exact(program: list[tuple[str, int, int]]) -> None:
    _run(DELTA, program)


@SETTINGS
@given(steps)
def test_retired_workers_cost_nothing(program: list[tuple[str, int, int]]) -> None:
    pod = Pod(CUMULATIVE)
    for action, slot, amount in program:
        if action == "wait":
            pod.h.now += amount
            pod.h.store.expire()
        elif action != "count":
            pod.push(slot)
        else:
            pod.lives[slot].count += amount
        assert len(pod.h.store.workers) == pod.h.store.streams
        assert pod.h.store.streams <= pod.live_workers()
        assert pod.h.store.streams >= pod.live_workers() - (action == "wait") * SLOTS
