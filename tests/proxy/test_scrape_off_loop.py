"""A /metrics scrape (and the status page) never stalls proxied traffic, and still sees one
state of the store.

A whole `Sidecar` (proxy, ingest, admin) runs in this process. A source whose family
blocks while it is rendered (a `threading.Event`, released by the test) is added to the
unified view: while that render is held, a proxied request must complete, which it cannot
if the render runs on the event loop. No timing is measured: the request either
completes during the render or only after the render's deadline has passed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable
from functools import partial

import aiohttp
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer
from opentelemetry.metrics import CallbackOptions, Observation
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from sidecar.config import config_from_dict
from sidecar.observability import Module, SnapshotRegistry
from sidecar.offloop import WriteGate, off_loop, writers_first
from sidecar.server import Sidecar
from sidecar.status.routes import Memo
from tests.support.families import OneFamilySource
from tests.support.otlp import gauge, number, request
from tests.support.proxy import ProxyFactory, wait_for

DEADLINE = 10.0  # seconds; reached only when the behaviour under test is broken
HOOK = "test_render_hook"
SERIES = 2000  # ingest.max_series_per_metric by default


class BlockingFamily:
    """A family whose render waits for ``release`` (in whichever thread renders it)."""

    name = HOOK
    type = "gauge"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.released_in_time: bool | None = None

    def render(self, openmetrics: bool, out: list[str]) -> None:
        self.started.set()
        self.released_in_time = self.release.wait(DEADLINE)
        out.append(f"# HELP {HOOK} hook\n# TYPE {HOOK} gauge\n{HOOK} 1.0\n")

    def to_metric(self) -> Metric:
        return GaugeMetricFamily(HOOK, "hook", value=1.0)


def url(car: Sidecar, component: str) -> str:
    bound = car.component(component).addresses[0]
    return f"http://{bound.host}:{bound.port}"


@pytest.fixture
async def car(aiohttp_server: AiohttpServer) -> AsyncIterator[Sidecar]:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/hello", hello)
    upstream = await aiohttp_server(app)
    any_port = "127.0.0.1:0"
    config = config_from_dict(
        {
            "proxy": {"listen": any_port, "upstream": f"http://127.0.0.1:{upstream.port}"},
            "admin": {"listen": any_port},
            "ingest": {"listen": any_port},
            "shutdown": {"drain_delay": 0, "drain_timeout": "1s"},
        }
    )
    sidecar = Sidecar(config)
    await sidecar.start()
    yield sidecar
    await sidecar.drain_and_stop()


def hook_at(car: Sidecar, index: int) -> BlockingFamily:
    """Insert a blocking source into the unified view at ``index``."""
    assert car.unified is not None
    family = BlockingFamily()
    sources = list(car.unified.sources)
    sources.insert(index, OneFamilySource(family))
    car.unified.sources = tuple(sources)
    kinds = list(car.unified.kinds)  # each source's name for relabel rules
    kinds.insert(index, "sidecar")
    car.unified.kinds = tuple(kinds)
    return family


async def push(session: aiohttp.ClientSession, car: Sidecar, value: float) -> None:
    """``SERIES`` gauge series ``big{i}``, all with ``value``, as one OTLP/HTTP request."""
    body = request(gauge("big", [number(value, {"i": i}) for i in range(SERIES)]))
    async with session.post(
        url(car, "ingest") + "/v1/metrics",
        data=body.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    ) as response:
        assert response.status == 200, await response.text()


def big_values(text: str) -> set[float]:
    """Every value of the ingested ``big`` family."""
    return {
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "big"
        for sample in family.samples
    }


async def scrape(session: aiohttp.ClientSession, car: Sidecar) -> str:
    async with session.get(url(car, "admin") + "/metrics") as response:
        assert response.status == 200
        return await response.text()


async def test_a_proxied_request_completes_while_a_scrape_renders(car: Sidecar) -> None:
    hook = hook_at(car, len(car.unified.sources) if car.unified else 0)
    async with aiohttp.ClientSession() as session:
        await push(session, car, 1.0)
        scraping = asyncio.create_task(scrape(session, car))
        # the render has begun (in some thread) and is held there
        assert await asyncio.to_thread(hook.started.wait, DEADLINE)
        async with session.get(url(car, "proxy") + "/hello") as response:
            assert response.status == 200
            assert await response.text() == "hello"
        assert not scraping.done()
        hook.release.set()
        text = await scraping
    assert hook.released_in_time  # the render waited for the proxied request, not its deadline
    assert f"{HOOK} 1.0" in text
    assert big_values(text) == {1.0}
    assert text.count("\nbig{") == SERIES


async def test_a_push_during_a_scrape_waits_and_the_scrape_sees_one_state(car: Sidecar) -> None:
    assert car.unified is not None
    async with aiohttp.ClientSession() as session:
        await push(session, car, 1.0)
        hook = hook_at(car, 1)  # rendered after the own registry, before the ingest store
        scraping = asyncio.create_task(scrape(session, car))
        assert await asyncio.to_thread(hook.started.wait, DEADLINE)
        pushing = asyncio.create_task(push(session, car, 2.0))
        gate = car.unified.sources[2].write_gate  # type: ignore[attr-defined]
        await wait_for(lambda: gate.waiting > 0, DEADLINE)  # the push arrived, waits for the render
        assert not pushing.done()
        hook.release.set()
        first = await scraping
        await asyncio.wait_for(pushing, DEADLINE)
        second = await scrape(session, car)
    assert hook.released_in_time
    assert big_values(first) == {1.0}  # the store as it was when the scrape began
    assert big_values(second) == {2.0}


async def test_the_status_page_walks_the_store_off_the_loop() -> None:
    gate = WriteGate()
    started, release = threading.Event(), threading.Event()

    def walk() -> bool:  # stands for store_sources: every series' labels
        started.set()
        return release.wait(DEADLINE)

    task = asyncio.create_task(Memo().get_off_loop("sources", walk, [gate]))
    assert await asyncio.to_thread(started.wait, DEADLINE)
    assert gate.reading  # the store's writers wait meanwhile
    release.set()
    assert await task is True  # released by this loop, while the walk was running
    assert not gate.reading


async def test_a_waiting_writer_goes_before_the_next_scrape() -> None:
    gate = WriteGate()
    first_started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first_render() -> None:
        first_started.set()
        release.wait(DEADLINE)

    async def write() -> None:
        async with gate.write():
            order.append("write")

    async def second_scrape() -> None:
        await writers_first([GatedStore(gate)])
        order.append("second scrape")

    first = asyncio.create_task(off_loop([gate], first_render))
    assert await asyncio.to_thread(first_started.wait, DEADLINE)
    writer = asyncio.create_task(write())
    await wait_for(lambda: gate.waiting > 0, DEADLINE)
    second = asyncio.create_task(second_scrape())
    release.set()
    await asyncio.wait_for(asyncio.gather(first, writer, second), DEADLINE)
    assert order == ["write", "second scrape"]


class GatedStore:
    """A source whose writers wait on ``gate`` (as the ingest collector)."""

    def __init__(self, gate: WriteGate) -> None:
        self.write_gate = gate


async def test_the_own_registry_is_read_in_the_render_thread() -> None:
    module = Module.new("offloop-test")
    started, release = threading.Event(), threading.Event()

    def hook(_options: CallbackOptions) -> Iterable[Observation]:
        started.set()
        yield Observation(1.0 if release.wait(DEADLINE) else 0.0)

    module.meter.create_observable_gauge("render_hook", callbacks=[hook])
    registry = module.registry
    assert isinstance(registry, SnapshotRegistry)
    try:
        taken = registry.snapshot()  # on the loop: must not collect (the hook would block)
        reading = asyncio.create_task(off_loop((), partial(text_of, taken)))
        assert await asyncio.to_thread(started.wait, DEADLINE)
        release.set()  # by this loop, while the collection runs
        text = await reading
    finally:
        module.provider.shutdown()
    assert sample_value(text, "render_hook") == 1.0


async def test_the_proxys_counts_read_in_a_thread_are_exact(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    registry = proxy.module.registry
    assert isinstance(registry, SnapshotRegistry)
    for _ in range(3):
        async with proxy.session.get(proxy.url + "/download?size=10") as response:
            assert response.status == 200
            await response.read()
    in_thread = await off_loop((), partial(text_of, registry.snapshot()))
    assert sample_value(in_thread, "http_request_total", path="/download") == 3
    assert in_thread == proxy.metrics_text()  # the same exposition as a read on the loop


def text_of(collector: object) -> str:
    class Fixed:
        def collect(self) -> list[Metric]:
            return list(collector.collect())  # type: ignore[attr-defined]

    return generate_latest(Fixed()).decode()  # type: ignore[arg-type]


def sample_value(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def test_a_scrape_waits_for_a_write_running_in_a_thread() -> None:
    """A push is stored in the decoder thread (`WriteGate.write_off_loop`): a scrape that
    begins meanwhile does not enter the gate until that thread is done."""
    gate = WriteGate()
    writing, release = threading.Event(), threading.Event()
    state = {"written": False}

    def write() -> str:
        writing.set()
        release.wait(DEADLINE)
        state["written"] = True
        return "stored"

    writer = asyncio.create_task(gate.write_off_loop(None, write))
    assert await asyncio.to_thread(writing.wait, DEADLINE)
    assert gate.writing
    reader = asyncio.create_task(off_loop([gate], lambda: state["written"]))
    for _ in range(3):
        await asyncio.sleep(0)  # the reader's turns on the loop: it must stay out
    assert not gate.reading
    release.set()
    assert await asyncio.wait_for(reader, DEADLINE) is True  # it read the written state
    assert await writer == "stored"
    assert not gate.writing


async def test_a_cancelled_writer_holds_the_gate_until_its_thread_is_done() -> None:
    gate = WriteGate()
    writing, release = threading.Event(), threading.Event()

    def write() -> None:
        writing.set()
        release.wait(DEADLINE)

    writer = asyncio.create_task(gate.write_off_loop(None, write))
    assert await asyncio.to_thread(writing.wait, DEADLINE)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert gate.writing  # the thread still writes: no reader may enter
    assert gate.waiting == 1
    release.set()
    await asyncio.wait_for(gate.written(), DEADLINE)
    assert gate.waiting == 0


async def test_writers_take_turns() -> None:
    """A write on the loop (expiry, a reload) waits for one running in a thread."""
    gate = WriteGate()
    writing, release = threading.Event(), threading.Event()
    order: list[str] = []

    def thread_write() -> None:
        writing.set()
        release.wait(DEADLINE)
        order.append("thread write")

    async def loop_write() -> None:
        async with gate.write():
            order.append("loop write")

    first = asyncio.create_task(gate.write_off_loop(None, thread_write))
    assert await asyncio.to_thread(writing.wait, DEADLINE)
    second = asyncio.create_task(loop_write())
    for _ in range(3):
        await asyncio.sleep(0)
    assert order == []
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), DEADLINE)
    assert order == ["thread write", "loop write"]
