"""Where a scrape renders: a small one on the loop, a large or first one in a thread.

`sidecar.offloop.RenderClock` keeps a render on the event loop when the last one took
under `INLINE_RENDER_S` and no gated state (the ingest store) holds more than
`INLINE_MAX_GATED` items: a worker thread's hand-off costs ~1 ms, more than a small
render (a merged node_exporter) takes. Everything else keeps rendering off the loop
(tests/proxy/test_scrape_off_loop.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from sidecar.config import config_from_dict
from sidecar.offloop import INLINE_MAX_GATED, INLINE_RENDER_S, RenderClock, WriteGate
from sidecar.server import Sidecar
from tests.support.families import OneFamilySource

pytestmark = pytest.mark.xdist_group("render-clock")

NAME = "render_thread_probe"


class _Gated:
    """A source with a write gate of a given size (as the ingest collector has)."""

    def __init__(self, size: int) -> None:
        self.write_gate = WriteGate(lambda: size)

    def collect(self) -> list[Metric]:
        return []


@pytest.mark.parametrize(
    ("last", "sizes", "inline"),
    [
        (float("inf"), [], False),  # the first render: nothing known, off the loop
        (INLINE_RENDER_S / 2, [], True),
        (INLINE_RENDER_S, [], False),
        (INLINE_RENDER_S / 2, [INLINE_MAX_GATED], True),
        (INLINE_RENDER_S / 2, [INLINE_MAX_GATED + 1], False),  # the store grew at once
        (INLINE_RENDER_S / 2, [10, INLINE_MAX_GATED + 1], False),
    ],
    ids=["first", "cheap", "at-limit", "store-at-limit", "store-grew", "any-store"],
)
def test_where_the_next_render_runs(last: float, sizes: list[int], inline: bool) -> None:
    clock = RenderClock()
    clock.last = last
    assert clock.inline([_Gated(n) for n in sizes]) is inline


def test_timed_records_how_long_the_work_took() -> None:
    clock = RenderClock()
    assert clock.timed(lambda: 7)() == 7
    assert 0 <= clock.last < INLINE_RENDER_S
    with pytest.raises(ZeroDivisionError):
        clock.timed(lambda: 1 / 0)()
    assert clock.last < INLINE_RENDER_S  # recorded also when the work failed


def test_the_clock_counts_cpu_time_not_waiting() -> None:
    """A render that waits (for the GIL, in the thread) is judged by its own CPU time."""
    clock = RenderClock()
    never = threading.Event()
    clock.timed(lambda: never.wait(3 * INLINE_RENDER_S))()
    assert clock.last < INLINE_RENDER_S

    def busy() -> None:
        until = time.thread_time() + 2 * INLINE_RENDER_S
        while time.thread_time() < until:
            pass

    clock.timed(busy)()
    assert clock.last >= 2 * INLINE_RENDER_S


class _ThreadProbe:
    """A self-rendering family that records the thread it is rendered in."""

    name = NAME
    type = "gauge"

    def __init__(self) -> None:
        self.threads: list[int] = []

    def render(self, openmetrics: bool, out: list[str]) -> None:
        self.threads.append(threading.get_ident())
        out.append(f"# HELP {NAME} probe\n# TYPE {NAME} gauge\n{NAME} 1.0\n")

    def to_metric(self) -> Metric:
        return GaugeMetricFamily(NAME, "probe", value=1.0)


@pytest.fixture
async def car() -> AsyncIterator[Sidecar]:
    any_port = "127.0.0.1:0"
    config = config_from_dict(
        {
            "proxy": {"enabled": False},
            "admin": {"listen": any_port},
            "ingest": {"listen": any_port},
            "shutdown": {"drain_delay": 0, "drain_timeout": "1s"},
        }
    )
    sidecar = Sidecar(config)
    await sidecar.start()
    yield sidecar
    await sidecar.drain_and_stop()


async def test_the_clock_decides_where_a_real_scrape_renders(car: Sidecar) -> None:
    """Set before each scrape (a render's own duration depends on the machine's load)."""
    assert car.unified is not None
    probe = _ThreadProbe()
    car.unified.sources = (*car.unified.sources, OneFamilySource(probe))
    car.unified.kinds = (*car.unified.kinds, "sidecar")
    admin = car.component("admin").addresses[0]
    loop_thread = threading.get_ident()
    lasts = [float("inf"), 0.0, 0.0, INLINE_RENDER_S * 10]  # first, cheap, cheap, slow
    async with aiohttp.ClientSession() as session:
        for last in lasts:
            car.unified.clock.last = last
            async with session.get(f"http://{admin.host}:{admin.port}/metrics") as response:
                assert response.status == 200
                assert f"{NAME} 1.0" in await response.text()
    on_loop = [thread == loop_thread for thread in probe.threads]
    assert on_loop == [False, True, True, False]
    assert car.unified.clock.last < float("inf")  # each render records its time
