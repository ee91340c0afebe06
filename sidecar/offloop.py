"""Rendering ``/metrics`` off the event loop, from one consistent state.

A scrape of 100,000 ingested series takes ~100 ms of CPU; rendered on the event loop,
every proxied request waits for it. `render_off_loop` renders in a worker thread instead,
from a snapshot taken on the loop:

- the sidecar's own registry is collected in the thread as well
  (`sidecar.observability.SnapshotRegistry`: its collection is thread-safe); with 100
  proxied routes it takes ~100 ms;
- a source that is read cheaply (the merge targets' families, fixed once fetched) is
  read on the loop, into a fixed list;
- a source too large to copy (the ingest store, a `GatedSource`) is read in the worker
  thread while its `WriteGate` holds every write to it: the OTLP receiver (whose writes
  run in its decoder thread, `WriteGate.write_off_loop`), the expiry timer and a reload
  write through the gate, so the thread sees the store as it was when the scrape began,
  and the next write waits at most one render; a render that begins while a write runs
  in its thread waits for that write.

The gate is released when the thread has finished, also when the scrape itself was
cancelled (the client went away): the thread never reads a store that is being written.
Writers go first: a scrape that arrives while a writer waits lets it write before taking
its snapshot (`writers_first`), so overlapping scrapes cannot hold an OTLP push forever.

A small render stays on the loop (`RenderClock`): handing it to a thread and back costs
about 1 ms, more than rendering a merged node_exporter takes, and it stalls nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Protocol, TypeVar, runtime_checkable

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from sidecar.gzipjoin import GzipMember

__all__ = [
    "INLINE_MAX_GATED",
    "INLINE_RENDER_S",
    "FrozenSource",
    "GatedSource",
    "RenderClock",
    "WriteGate",
    "off_loop",
    "snapshot_sources",
    "writers_first",
]

T = TypeVar("T")

INLINE_RENDER_S = 0.002  # a render this cheap last time runs on the loop next time
INLINE_MAX_GATED = 5_000  # ... unless a gated state (the ingest store) has grown past this


class WriteGate:
    """Writes to a state wait while a worker thread reads it (`off_loop`), and reads wait
    while a write is under way.

    Counted on the event loop: readers by `off_loop`; writers take `write` (a write on
    the loop, done before the block ends) or `write_off_loop` (a write in another
    thread: readers wait until that thread is done). One writer at a time.
    """

    def __init__(self, size: Callable[[], int] = lambda: 0) -> None:
        self.size = size  # how large the state is now (`RenderClock` reads it)
        self._readers = 0
        self._waiting = 0  # writers not done yet (waiting, or writing)
        self._idle = asyncio.Event()
        self._idle.set()
        self._no_writers = asyncio.Event()
        self._no_writers.set()
        self._one_writer = asyncio.Lock()
        self._written = asyncio.Event()  # no write under way
        self._written.set()

    @property
    def reading(self) -> bool:
        """True while a worker thread reads the state."""
        return self._readers > 0

    @property
    def waiting(self) -> int:
        """Writers not done yet: waiting for the readers or another writer, or writing."""
        return self._waiting

    @property
    def writing(self) -> bool:
        """True while a write is under way (on the loop, or in another thread)."""
        return not self._written.is_set()

    def enter(self) -> None:
        """A reader begins (on the loop, when no write is under way)."""
        assert not self.writing, "a reader entered during a write"
        self._readers += 1
        self._idle.clear()

    def leave(self) -> None:
        """A reader has finished (on the loop)."""
        self._readers -= 1
        if not self._readers:
            self._idle.set()

    async def _begin(self) -> None:
        """Wait for the other writers and the readers, then mark a write under way."""
        self._waiting += 1
        self._no_writers.clear()
        try:
            await self._one_writer.acquire()
        except BaseException:
            self._gone()
            raise
        try:
            while self._readers:
                await self._idle.wait()
        except BaseException:
            self._one_writer.release()
            self._gone()
            raise
        self._written.clear()

    def _end(self, _: object = None) -> None:
        self._written.set()
        self._one_writer.release()
        self._gone()

    def _gone(self) -> None:
        self._waiting -= 1
        if not self._waiting:
            self._no_writers.set()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        """Hold the state for a write done on the loop within the block."""
        await self._begin()
        try:
            yield
        finally:
            self._end()

    async def write_off_loop(self, executor: Executor | None, work: Callable[[], T]) -> T:
        """``work()``, a write, in ``executor``'s thread once no reader holds the state;
        held until the thread is done, also when the awaiting task is cancelled."""
        await self._begin()
        try:
            future = asyncio.get_running_loop().run_in_executor(executor, work)
        except BaseException:
            self._end()
            raise
        future.add_done_callback(self._end)
        return await asyncio.shield(future)

    async def written(self) -> None:
        """Return once no write is under way."""
        await self._written.wait()

    async def writers_done(self) -> None:
        """Return once no writer waits or writes."""
        while self._waiting:
            await self._no_writers.wait()


@runtime_checkable
class GatedSource(Protocol):
    """A source read in the worker thread while its gate holds the writes to it."""

    @property
    def write_gate(self) -> WriteGate:
        """The gate its writers wait on."""


class FrozenSource:
    """A source's families read once, on the loop; keeps a merge target's pass-through."""

    def __init__(self, families: Sequence[object], source: object | None = None) -> None:
        self._families = families
        passthrough = getattr(source, "passthrough", None)
        if passthrough is not None:  # (and `rewritten` with it: `sidecar.unified`)
            self.passthrough: Callable[[bool], GzipMember | None] = passthrough
            self.rewritten: Callable[[], None] | None = getattr(source, "rewritten", None)

    def families(self) -> Sequence[object]:
        """The families as they were read."""
        return self._families

    def collect(self) -> Iterable[Metric]:
        """prometheus_client's collector protocol."""
        for family in self._families:
            yield family if isinstance(family, Metric) else family.to_metric()  # type: ignore[attr-defined]


class RenderClock:
    """Where the next render runs: on the loop when the last one took under
    `INLINE_RENDER_S` and no gated state holds more than `INLINE_MAX_GATED` items (a store
    that grew at once is not rendered on the loop); in a worker thread otherwise. The first
    render of a view always runs in the thread."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = math.inf  # seconds the last render took (a float store: thread-safe)

    def inline(self, sources: Sequence[Collector]) -> bool:
        """True when the next render should run on the loop."""
        if self.last >= INLINE_RENDER_S:
            return False
        for source in sources:
            gate = getattr(source, "write_gate", None)
            if isinstance(gate, WriteGate) and gate.size() > INLINE_MAX_GATED:
                return False
        return True

    def timed(self, work: Callable[[], T]) -> Callable[[], T]:
        """``work``, recording the CPU time it took in the thread that ran it.

        CPU time, not wall time: in the worker thread a render also waits for the GIL
        the loop holds (0.5-0.7 ms more per small render, measured), which it would not
        wait on the loop; judged by wall time, a render that went to the thread once
        tended to stay there. Its own CPU time is what it would hold the loop for."""

        def run() -> T:
            started = time.thread_time()
            try:
                return work()
            finally:
                self.last = time.thread_time() - started

        return run


async def writers_first(sources: Sequence[Collector]) -> None:
    """Let the writers waiting on any gated source write, before a new snapshot."""
    for source in sources:
        gate = getattr(source, "write_gate", None)
        if isinstance(gate, WriteGate):
            await gate.writers_done()


def snapshot_sources(sources: Sequence[Collector]) -> tuple[list[Collector], list[WriteGate]]:
    """The sources as a worker thread may read them, and the gates to hold meanwhile.

    Called on the loop: every source but the gated ones is read now (see the module doc).
    """
    out: list[Collector] = []
    gates: list[WriteGate] = []
    for source in sources:
        gate = getattr(source, "write_gate", None)
        if isinstance(gate, WriteGate):
            gates.append(gate)
            out.append(source)
            continue
        snapshot = getattr(source, "snapshot", None)  # the own registry (SnapshotRegistry)
        if snapshot is not None:
            out.append(snapshot())  # read by the thread
            continue
        families = getattr(source, "families", None)
        read = list(families()) if families is not None else list(source.collect())
        out.append(FrozenSource(read, source))
    return out, gates


async def off_loop(gates: Sequence[WriteGate], work: Callable[[], T]) -> T:
    """``work()`` in a worker thread while ``gates`` hold their writers.

    The gates open when the thread is done, not when the awaiting task is cancelled.
    """
    loop = asyncio.get_running_loop()
    while busy := [gate for gate in gates if gate.writing]:  # a write in another thread
        await busy[0].written()
    for gate in gates:  # (no await since the check: no write can have begun)
        gate.enter()

    def release(_: object) -> None:
        for gate in gates:
            gate.leave()

    try:
        future = loop.run_in_executor(None, work)
    except BaseException:
        release(None)
        raise
    future.add_done_callback(release)
    return await asyncio.shield(future)
