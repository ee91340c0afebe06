"""Cases 4, 6, 7 and 8: slowloris, the keep-alive race, pipelining, 10,000 idle clients.

The long ones (slowloris, the 30 s keep-alive race, 10,000 connections) run in their own
xdist group, ``adversarial-long``, so they do not share a worker with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.counting import CountingApp
from tests.support.process import PROXY_ONLY
from tests.support.proxy import ProxyFactory, wait_for

LONG = pytest.mark.xdist_group("adversarial-long")


# ----------------------------------------------------------------- 7. pipelining


async def test_pipelined_requests_are_answered_in_order(
    make_proxy: ProxyFactory, counting_app
) -> None:
    """Input: 20 requests written in one go on one connection, with bodies of varied size.
    Expected: 20 answers in the order sent, each for its own request; the app saw 20."""
    app: CountingApp = await counting_app()
    proxy = await make_proxy(upstream=app.url)
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    sizes = [(i * 7919) % 5000 for i in range(20)]
    batch = b"".join(
        b"POST /p/%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (i, n, b"x" * n)
        for i, n in enumerate(sizes)
    )
    writer.write(batch + b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(20):
        raw = await reader.read(-1)
    writer.close()
    bodies = [
        part.split(b"\r\n\r\n", 1)[1].split(b"\n", 1)[0] for part in raw.split(b"HTTP/1.1 ")[1:]
    ]
    assert bodies == [b"ok %d" % n for n in sizes] + [b"ok 0"]
    assert app.total == 21


# ------------------------------------------------------------- 6. keep-alive race

KEEPALIVE_S = 1.0
RACE_SECONDS = float(os.environ.get("ADVERSARIAL_RACE_SECONDS", "30"))


@LONG
async def test_keep_alive_race_loses_nothing(make_proxy: ProxyFactory, counting_app) -> None:
    """Input: 30 s of steady POSTs while the app closes idle connections at exactly its
    keep-alive timeout (1 s) and the proxy's pool keeps them for exactly as long.
    Expected: zero client-visible errors, every POST reached the app exactly once."""
    app: CountingApp = await counting_app(keepalive_timeout=KEEPALIVE_S)
    proxy = await make_proxy(upstream=app.url, upstream_keepalive=KEEPALIVE_S)
    errors: list[str] = []
    sent: list[bytes] = []
    deadline = time.monotonic() + RACE_SECONDS

    async def worker(n: int, session: aiohttp.ClientSession) -> None:
        i = 0
        while time.monotonic() < deadline:
            body = b"w%d-%d" % (n, i)
            i += 1
            try:
                async with session.post(f"{proxy.url}/race", data=body) as r:
                    if r.status != 200 or await r.read() != b"ok %d\n" % len(body):
                        errors.append(f"{body!r}: {r.status}")
            except aiohttp.ClientError as exc:
                errors.append(f"{body!r}: {exc!r}")
            sent.append(body)
            # idle gaps around the keep-alive timeout, where the race lives
            await asyncio.sleep(KEEPALIVE_S * (0.9 + 0.2 * ((i * 37 + n) % 10) / 10))

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(n, session) for n in range(8)))
    assert errors == []
    assert sent
    duplicates = {b: c for b, c in app.bodies.items() if c != 1}
    missing = [b for b in sent if b not in app.bodies]
    assert duplicates == {}
    assert missing == [], missing[:5]
    assert proxy.sample("sidecar_proxy_errors_total") == 0


# ----------------------------------------------------------------- 4. slowloris

SLOW_CONNECTIONS = 500
HEADER_TIMEOUT_S = 2.0


async def _slow_client(
    host: str, port: int, closed: list[float], started: float, after_request: bool
) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        closed.append(-1.0)
        return
    if after_request:  # one quick request first: the slow head is the connection's second
        writer.write(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
        started = time.monotonic()
    head = b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 100
    try:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # one byte a second, or EOF from the proxy
                    if await reader.read(1024) == b"" or reader.at_eof():
                        break
        closed.append(time.monotonic() - started)
    except (ConnectionError, OSError):
        closed.append(time.monotonic() - started)
    finally:
        writer.close()


async def _latencies(url: str, count: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            started = time.perf_counter()
            async with session.get(url) as r:
                await r.read()
                assert r.status == 200
            out.append(time.perf_counter() - started)
    return out


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


@pytest.mark.serial  # compares p99 with a quiet baseline: nothing else may run beside it
@pytest.mark.parametrize("after_request", [False, True], ids=["first-head", "keep-alive-head"])
async def test_slowloris_connections_are_closed_after_the_header_timeout(
    make_proxy: ProxyFactory, counting_app, after_request: bool, capsys
) -> None:
    """Input: 500 connections sending one header byte per second, with
    ``proxy.header_timeout: 2s``. Expected: each is closed within the header timeout
    (plus one byte interval and scheduling slack), the app sees none of them, and normal
    traffic meanwhile keeps its p99 latency within 2x of the quiet baseline. The
    ``keep-alive-head`` variant trickles the head of a connection's second request."""
    app: CountingApp = await counting_app()
    proxy = await make_proxy(upstream=app.url, header_timeout=HEADER_TIMEOUT_S)
    host, port = proxy.url.removeprefix("http://").split(":")
    quiet = await _latencies(f"{proxy.url}/quiet", 200)
    closed: list[float] = []
    started = time.monotonic()
    slow = [
        asyncio.ensure_future(_slow_client(host, int(port), closed, started, after_request))
        for _ in range(SLOW_CONNECTIONS)
    ]
    loaded: list[float] = []
    try:
        async with asyncio.timeout(HEADER_TIMEOUT_S + 20):
            while len(closed) < SLOW_CONNECTIONS:  # normal traffic for the whole attack
                loaded += await _latencies(f"{proxy.url}/loaded", 20)
    except TimeoutError:
        open_ = SLOW_CONNECTIONS - len(closed)
        pytest.fail(f"{open_} slow heads still open {HEADER_TIMEOUT_S + 20:.0f}s in")
    finally:
        for task in slow:
            task.cancel()
    # the machine is shared: quiet is measured before and after, and the worse one counts
    quiet_after = await _latencies(f"{proxy.url}/quiet", 200)
    assert len(closed) == SLOW_CONNECTIONS
    assert -1.0 not in closed, "some slow connections were refused outright"
    assert max(closed) < HEADER_TIMEOUT_S + 8, f"slowest close after {max(closed):.1f}s"
    first = SLOW_CONNECTIONS if after_request else 0
    assert app.total == 400 + len(loaded) + first  # quiet, loaded (and first quick) only
    quiet_p99 = max(_p99(quiet), _p99(quiet_after))
    with capsys.disabled():
        print(f"\nslowloris: p99 {quiet_p99 * 1000:.1f} ms quiet, {_p99(loaded) * 1000:.1f} ms "
              f"during {SLOW_CONNECTIONS} slow heads ({len(loaded)} requests); "
              f"all closed within {max(closed):.1f}s")  # fmt: skip
    baseline = max(quiet_p99, 0.002)  # a 2 ms floor: loopback p99s below that are noise
    assert _p99(loaded) < 2 * baseline, (f"p99 {_p99(loaded) * 1000:.1f} ms loaded vs "
                                         f"{quiet_p99 * 1000:.1f} ms quiet")  # fmt: skip


# ---------------------------------------------------- 8. 10,000 idle connections

IDLE_CONNECTIONS = int(os.environ.get("ADVERSARIAL_IDLE_CONNECTIONS", "10000"))


def _raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("VmRSS missing")


@pytest.fixture
async def proxy_process(counting_app) -> AsyncIterator[tuple[int, int, CountingApp]]:
    """The proxy alone in its own process (its own fds and RSS): (pid, port, app)."""
    app = await counting_app()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import resource, sys; s, h = resource.getrlimit(resource.RLIMIT_NOFILE); "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (h, h)); "
        "import runpy; sys.argv[0] = PATH; runpy.run_path(PATH, run_name='__main__')"
        .replace("PATH", repr(str(PROXY_ONLY))),
        "--upstream", app.url, "--listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        line = (await proc.stdout.readline()).decode()
    assert line.startswith("listening on "), line
    port = int(line.rsplit(":", 1)[1])
    try:
        yield proc.pid, port, app
    finally:
        proc.terminate()
        await proc.wait()


@LONG
async def test_ten_thousand_idle_keep_alive_connections(proxy_process, capsys) -> None:
    """Input: 10,000 client connections, each sends one request and then stays idle.
    Expected: all accepted and answered (the proxy sets no connection limit below the fd
    limit; ``max_in_flight`` bounds requests, not idle connections), every one still
    serves a second request, and the memory per idle connection is reported."""
    pid, port, app = proxy_process
    limit = _raise_fd_limit(IDLE_CONNECTIONS + 500)
    count = min(IDLE_CONNECTIONS, limit - 500)
    assert count >= 1000, f"RLIMIT_NOFILE hard limit too low ({limit})"
    baseline = _rss(pid)
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    request = b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n"
    try:
        for batch in range(0, count, 500):
            opened = await asyncio.gather(
                *(
                    asyncio.open_connection("127.0.0.1", port)
                    for _ in range(batch, min(batch + 500, count))
                )
            )
            for _, writer in opened:
                writer.write(request)
            for reader, _ in opened:
                async with asyncio.timeout(30):
                    head = await reader.readuntil(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200"), head[:40]
                    await reader.readexactly(
                        int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    )
            streams.extend(opened)
        await wait_for(lambda: app.total == count, 30)
        loaded = _rss(pid)
        per_connection = (loaded - baseline) / count
        with capsys.disabled():
            print(f"\n{count} idle connections: proxy RSS {baseline / 2**20:.1f} -> "
                  f"{loaded / 2**20:.1f} MiB, {per_connection / 1024:.1f} KiB per connection")  # fmt: skip
        assert per_connection < 64 * 1024, f"{per_connection / 1024:.1f} KiB per idle connection"
        for reader, writer in streams[:: max(count // 100, 1)]:  # every 100th serves again
            writer.write(request)
            async with asyncio.timeout(10):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        for _, writer in streams:
            writer.close()
