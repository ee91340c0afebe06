"""The store: TTL expiry (controllable clock and the real timer), overflow, limits, monotonicity."""

from __future__ import annotations

import asyncio
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.ingest.store import StoreLimits
from tests.support.otlp import (
    CUMULATIVE,
    DELTA,
    PROTOBUF_HEADERS,
    Harness,
    counter,
    epoint,
    exponential,
    gauge,
    histogram,
    hpoint,
    number,
    request,
)


def _values(text: str, prefix: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_ttl_expiry_with_a_controllable_clock():
    harness = Harness(StoreLimits(series_ttl=60.0), target_info=True)
    harness.push(request(gauge("a", [number(1)])))
    harness.now = 30.0
    harness.push(request(gauge("b", [number(1)])))
    harness.now = 61.0
    assert harness.store.expire() == 1  # a is 61 s idle: gone; b and target_info stay
    text = harness.text()
    assert "a{" not in text
    assert "b{" in text
    assert harness.expired == [1]
    harness.now = 200.0
    harness.store.expire()
    assert harness.text() == ""
    assert len(harness.store) == 0
    assert harness.expired == [1, 2]  # b and the target_info series


def test_written_series_stay_alive():
    harness = Harness(StoreLimits(series_ttl=10.0))
    for step in range(5):
        harness.now = step * 8.0
        harness.push(request(gauge("a", [number(step, time=step + 2)])))
        harness.store.expire()
    assert 'a{service_name="shop"} 4.0' in harness.text()


async def test_the_timer_expires_without_scrapes(ingest_factory):
    ingest = await ingest_factory(series_ttl=0.2)
    response = await ingest.client.post(
        "/v1/metrics",
        data=request(gauge("a", [number(1)])).SerializeToString(),
        headers=PROTOBUF_HEADERS,
    )
    assert response.status == 200
    assert len(ingest.state.store) == 2  # the series and target_info
    deadline = time.monotonic() + 10
    while len(ingest.state.store) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(ingest.state.store) == 0


def test_overflow_keeps_totals_right_for_cumulative_counters():
    harness = Harness(StoreLimits(max_series_per_metric=2))
    users = [f"u{i}" for i in range(5)]
    harness.push(request(counter("c", [number(10, {"user": u}, time=2) for u in users])))
    harness.push(request(counter("c", [number(15, {"user": u}, time=3) for u in users])))
    _, outcome = harness.push(
        request(counter("c", [number(7, {"user": "u4"}, start=5, time=6)]))
    )  # a reset
    values = _values(harness.text(), "c_total")
    assert values['c_total{service_name="shop",user="u0"}'] == 15
    # u2..u4 reached 15 each (45), then u4 restarted and counted 7 more: increases add up
    assert values['c_total{otel_metric_overflow="true"}'] == 15 * 3 + 7
    assert outcome.overflowed == {}  # u4 was counted once, at its first point


def test_overflow_counts_new_series_once():
    harness = Harness(StoreLimits(max_series_per_metric=1))
    _, outcome = harness.push(
        request(
            counter(
                "c", [number(1, {"k": i}, start=i, time=i + 1) for i in range(4)], temporality=DELTA
            )
        )
    )
    assert outcome.overflowed == {"c": 3}
    _, outcome = harness.push(
        request(counter("c", [number(1, {"k": 3}, start=9, time=10)], temporality=DELTA))
    )
    assert outcome.overflowed == {}
    values = _values(harness.text(), "c_total")
    assert values == {
        'c_total{k="0",service_name="shop"}': 1.0,
        'c_total{otel_metric_overflow="true"}': 4.0,
    }


def test_overflow_histograms_keep_totals():
    harness = Harness(StoreLimits(max_series_per_metric=1))
    harness.push(request(histogram("h", [hpoint([1.0], [1, 1], 3.0, {"k": i}) for i in range(3)])))
    harness.push(
        request(histogram("h", [hpoint([1.0], [2, 2], 6.0, {"k": i}, time=3) for i in range(3)]))
    )
    text = harness.text()
    assert 'h_count{otel_metric_overflow="true"} 8.0' in text
    assert 'h_sum{otel_metric_overflow="true"} 12.0' in text


def test_max_series_bounds_the_store():
    harness = Harness(StoreLimits(max_series=3))
    _, outcome = harness.push(request(gauge("g", [number(1, {"k": i}) for i in range(5)])))
    assert outcome.accepted == 3
    assert outcome.rejected == {"store_full": 2}
    assert len(harness.store) == 3


def test_a_rejected_point_leaves_its_series_untouched():
    harness = Harness()
    harness.push(
        request(histogram("h", [hpoint([1.0], [1, 1], 3.0, start=1, time=2)], temporality=DELTA))
    )
    before = harness.text()
    _, outcome = harness.push(
        request(histogram("h", [hpoint([2.0], [5, 5], 3.0, start=2, time=3)], temporality=DELTA))
    )
    assert outcome.rejected == {"bounds_mismatch": 1}
    assert harness.text() == before
    _, outcome = harness.push(
        request(histogram("h", [hpoint([1.0], [1, 1], 1.0, start=2, time=3)], temporality=DELTA))
    )
    assert outcome.accepted == 1


# ------------------------------------------------------------ monotonicity property

_push = st.tuples(
    st.sampled_from(["delta", "cumulative", "histogram"]),
    st.integers(min_value=0, max_value=3),  # label set
    st.integers(min_value=0, max_value=50),  # time offset (may go backwards: out of order)
    st.integers(min_value=0, max_value=1000),  # increment
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_push, min_size=1, max_size=40), st.integers(min_value=1, max_value=4))
def test_no_exposed_counter_ever_decreases(pushes, per_metric):
    """Over any sequence of valid pushes without resets, no exposed counter value goes down."""
    harness = Harness(StoreLimits(max_series_per_metric=per_metric))
    cumulative: dict[tuple[str, int], int] = {}
    clock: dict[tuple[str, int], int] = {}
    seen: dict[str, float] = {}
    for kind, label, offset, increment in pushes:
        key = (kind, label)
        start = 1_000
        time_ns = start + offset + 1
        if kind == "delta":
            last = clock.get(key, start)
            req = request(
                counter(
                    "d",
                    [number(increment, {"k": label}, start=last, time=last + offset + 1)],
                    temporality=DELTA,
                )
            )
            clock[key] = last + offset + 1
        elif kind == "cumulative":
            # a valid cumulative stream never goes down; an older point (out of order) carries an older, smaller value
            total = cumulative.get(key, 0) + increment
            cumulative[key] = total
            value = total if time_ns >= clock.get(key, 0) else 0
            clock[key] = max(clock.get(key, 0), time_ns)
            req = request(
                counter(
                    "c",
                    [number(value, {"k": label}, start=start, time=time_ns)],
                    temporality=CUMULATIVE,
                )
            )
        else:
            req = request(
                histogram(
                    "h",
                    [
                        hpoint(
                            [1.0],
                            [increment, 1],
                            float(increment),
                            {"k": label},
                            start=clock.get(key, start),
                            time=clock.get(key, start) + 1,
                        )
                    ],
                    temporality=DELTA,
                )
            )
            clock[key] = clock.get(key, start) + 1
        harness.push(req)
        for prefix in ("d_total", "c_total", "h_count", "h_bucket", "h_sum"):
            for name, value in _values(harness.text(), prefix).items():
                assert value >= seen.get(name, float("-inf")), name
                seen[name] = value


def test_overflow_of_cumulative_exponential_histograms_adds_increases():
    harness = Harness(StoreLimits(max_series_per_metric=1))
    for t, counts in ((2, [1, 1]), (3, [2, 3])):
        harness.push(
            request(
                exponential(
                    "e",
                    [
                        epoint(0, (0, counts), total=float(sum(counts)), labels={"k": i}, time=t)
                        for i in range(3)
                    ],
                )
            )
        )
    text = harness.text()
    # two series folded into the overflow, each at (2, 3) now: 4 and 6 per bucket, not 2*(1+1+2+3)
    assert 'e_bucket{le="2.0",otel_metric_overflow="true"} 4.0' in text
    assert 'e_count{otel_metric_overflow="true"} 10.0' in text


def test_overflow_of_gauges_shows_the_last_value():
    harness = Harness(StoreLimits(max_series_per_metric=1))
    harness.push(request(gauge("g", [number(5, {"k": i}) for i in range(3)])))
    harness.push(request(gauge("g", [number(7, {"k": 2}, time=3)])))
    assert 'g{otel_metric_overflow="true"} 7.0' in harness.text()
