"""Soak: steady mixed traffic through the real sidecar for a bounded time; memory must plateau.

``make soak`` (or ``python bench/soak.py``) starts the demo app and the real
``causality-sidecar run`` on free loopback ports, then for ``SOAK_SECONDS`` (default 600):

- proxy traffic: a fixed number of concurrent clients (``SOAK_CLIENTS``, default 6) doing a
  mix of GET /, GET /users/{id}, POST /echo (1-16 KiB), GET /stream (server-sent events),
  GET /users/abc (400) and /error (500, an app answer, not a sidecar error);
- OTLP pushes: every second, one protobuf request with counters, gauges and histograms for
  a generation of 300 series; the generation (a label value) changes every 30 s and
  ``ingest.series_ttl`` is 20 s, so series churn and the store must shed them;
- every 10 s it samples the sidecar's RSS and open file descriptors and prints them.

At the end it checks: RSS grew less than 5 % over the last third of the run, the fd
count ends within 16 of where it was after warm-up, and no client saw an error (a
transport error, a 5xx the app did not send, or an OTLP answer other than 200). Exit
code 0 when all hold, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from common import free_port  # type: ignore[import-not-found]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

SAMPLE_EVERY_S = 10.0
GENERATION_S = 30.0
SERIES_PER_GENERATION = 300
PLATEAU_GROWTH = 0.05
FD_SLACK = 16
CONFIG = """\
logging: {level: warning}
ingest: {series_ttl: 20s}
shutdown: {drain_delay: 0, drain_timeout: 5s}
"""


@dataclass
class Tally:
    """What the load generators saw."""

    requests: int = 0
    pushes: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        """Record one error (the first 20 are kept verbatim)."""
        if len(self.errors) < 20:
            self.errors.append(what)
        else:
            self.errors[-1] = f"... and more ({what})"


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_fds(pid: int) -> int:
    """Open file descriptors of ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextlib.contextmanager
def processes() -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    """The demo app and the sidecar in front of it; yields (sidecar, ports)."""
    ports = {name: free_port() for name in ("app", "proxy", "admin", "otlp")}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "soak.yaml"
        config.write_text(CONFIG)
        app = subprocess.Popen([sys.executable, "-m", "sidecar.demo", f"127.0.0.1:{ports['app']}"])
        sidecar = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "run", "--config", str(config),
             "--upstream", f"http://127.0.0.1:{ports['app']}",
             "--listen", f"127.0.0.1:{ports['proxy']}",
             "--admin-listen", f"127.0.0.1:{ports['admin']}",
             "--otlp-listen", f"127.0.0.1:{ports['otlp']}"],
        )  # fmt: skip
        try:
            yield sidecar, ports
        finally:
            for proc in (sidecar, app):
                proc.terminate()
            for proc in (sidecar, app):
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


async def wait_ready(session: aiohttp.ClientSession, ports: dict[str, int]) -> None:
    """Until /readyz is 200 and the app answers through the proxy."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(f"http://127.0.0.1:{ports['admin']}/readyz") as r:
                if r.status == 200:
                    async with session.get(f"http://127.0.0.1:{ports['proxy']}/") as p:
                        if p.status == 200:
                            return
        await asyncio.sleep(0.2)  # polling the start-up with a deadline
    raise SystemExit("soak: the sidecar did not become ready")


async def client(
    session: aiohttp.ClientSession, base: str, stop: float, tally: Tally, seed: int
) -> None:
    """One proxy client doing the mixed workload until ``stop``."""
    rng = random.Random(seed)
    while time.monotonic() < stop:
        kind = rng.choice(("index", "user", "user", "echo", "stream", "bad", "error"))
        try:
            await one_request(session, base, kind, rng, tally)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            tally.error(f"{kind}: {exc!r}")
        tally.requests += 1
        await asyncio.sleep(rng.uniform(0.005, 0.02))  # pacing: a steady, bounded rate


async def one_request(
    session: aiohttp.ClientSession, base: str, kind: str, rng: random.Random, tally: Tally
) -> None:
    """One request of the mix; an unexpected status is an error."""
    if kind == "echo":
        body = rng.randbytes(rng.randint(1024, 16 * 1024))
        async with session.post(f"{base}/echo", data=body) as r:
            if r.status != 200 or await r.read() != body:
                tally.error(f"echo: {r.status}")
        return
    path, expected = {
        "index": ("/", 200),
        "user": (f"/users/{rng.randint(1, 1200)}", None),
        "stream": ("/stream", 200),
        "bad": ("/users/abc", 400),
        "error": ("/error", 500),
    }[kind]
    async with session.get(base + path) as r:
        await r.read()
        ok = r.status in (200, 404) if expected is None else r.status == expected
        if not ok:
            tally.error(f"{path}: {r.status}")


def otlp_request(generation: int, tick: int) -> bytes:
    """Counters, a gauge and a histogram for one generation of churning series."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="soak")))
    sm = rm.scope_metrics.add()
    sm.scope.name = "soak"
    now = time.time_ns()
    counter = sm.metrics.add(name="soak.requests", description="requests", unit="1")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
    gauge = sm.metrics.add(name="soak.depth", description="depth")
    histogram = sm.metrics.add(name="soak.latency", description="latency", unit="ms")
    histogram.histogram.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_DELTA
    start = now - 1_000_000_000
    for i in range(SERIES_PER_GENERATION // 3):
        attrs = [
            KeyValue(key="generation", value=AnyValue(string_value=f"g{generation}")),
            KeyValue(key="instance", value=AnyValue(string_value=f"i{i}")),
        ]
        counter.sum.data_points.add(
            attributes=attrs, start_time_unix_nano=1, time_unix_nano=now, as_int=tick * (i + 1)
        )
        gauge.gauge.data_points.add(attributes=attrs, time_unix_nano=now, as_double=float(i))
        histogram.histogram.data_points.add(
            attributes=attrs, start_time_unix_nano=start, time_unix_nano=now,
            explicit_bounds=[1.0, 10.0, 100.0], bucket_counts=[1, 2, 3, 0], count=6, sum=123.0,
        )  # fmt: skip
    return request.SerializeToString()


async def pusher(session: aiohttp.ClientSession, url: str, stop: float, tally: Tally) -> None:
    """One OTLP push a second; a new generation of series every GENERATION_S."""
    started = time.monotonic()
    tick = 0
    while time.monotonic() < stop:
        tick += 1
        generation = int((time.monotonic() - started) // GENERATION_S)
        try:
            async with session.post(
                url,
                data=otlp_request(generation, tick),
                headers={"Content-Type": "application/x-protobuf"},
            ) as r:
                await r.read()
                if r.status != 200:
                    tally.error(f"otlp: {r.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            tally.error(f"otlp: {exc!r}")
        tally.pushes += 1
        await asyncio.sleep(1.0)  # the push interval


async def scraper(session: aiohttp.ClientSession, url: str, stop: float, tally: Tally) -> None:
    """A Prometheus-like scrape every 5 s."""
    while time.monotonic() < stop:
        try:
            async with session.get(url) as r:
                await r.read()
                if r.status != 200:
                    tally.error(f"scrape: {r.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            tally.error(f"scrape: {exc!r}")
        await asyncio.sleep(5.0)  # the scrape interval


async def sample(
    pid: int, stop: float, samples: list[tuple[float, int, int]], started: float, tally: Tally
) -> None:
    """RSS and fds every SAMPLE_EVERY_S, printed as they come."""
    print(
        f"{'t (s)':>7} {'RSS (MiB)':>10} {'fds':>5} {'requests':>9} {'pushes':>7} {'errors':>6}",
        flush=True,
    )
    while True:
        now = time.monotonic()
        rss, fds = rss_bytes(pid), open_fds(pid)
        samples.append((now - started, rss, fds))
        print(f"{now - started:7.0f} {rss / 2**20:10.1f} {fds:5d} {tally.requests:9d} "
              f"{tally.pushes:7d} {len(tally.errors):6d}", flush=True)  # fmt: skip
        if now >= stop:
            return
        await asyncio.sleep(min(SAMPLE_EVERY_S, max(stop - now, 0)))


def verdict(samples: list[tuple[float, int, int]], tally: Tally) -> list[str]:
    """The failed checks (empty when the soak passed)."""
    failures = []
    rss = [s[1] for s in samples]
    third = rss[len(rss) * 2 // 3]
    growth = (rss[-1] - third) / third
    print(f"RSS {rss[0] / 2**20:.1f} -> {rss[-1] / 2**20:.1f} MiB (peak {max(rss) / 2**20:.1f}); "
          f"last third {growth * 100:+.1f}%")  # fmt: skip
    if growth >= PLATEAU_GROWTH:
        failures.append(
            f"RSS grew {growth * 100:.1f}% over the last third (limit {PLATEAU_GROWTH * 100:.0f}%)"
        )
    fds = [s[2] for s in samples]
    warm = fds[1] if len(fds) > 1 else fds[0]
    print(f"fds {warm} after warm-up -> {fds[-1]} at the end (max {max(fds)})")
    if fds[-1] > warm + FD_SLACK:
        failures.append(f"open fds went from {warm} to {fds[-1]}")
    print(
        f"{tally.requests} proxied requests, {tally.pushes} OTLP pushes, {len(tally.errors)} errors"
    )
    if tally.errors:
        failures.append("errors: " + "; ".join(tally.errors))
    return failures


async def soak(seconds: float, clients: int) -> int:
    """Run the soak; the exit code."""
    with processes() as (sidecar, ports):
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await wait_ready(session, ports)
            started = time.monotonic()
            stop = started + seconds
            tally = Tally()
            samples: list[tuple[float, int, int]] = []
            base = f"http://127.0.0.1:{ports['proxy']}"
            await asyncio.gather(
                *(client(session, base, stop, tally, seed) for seed in range(clients)),
                pusher(session, f"http://127.0.0.1:{ports['otlp']}/v1/metrics", stop, tally),
                scraper(session, f"http://127.0.0.1:{ports['admin']}/metrics", stop, tally),
                sample(sidecar.pid, stop, samples, started, tally),
            )
        failures = verdict(samples, tally)
    for failure in failures:
        print(f"FAIL: {failure}")
    print("soak: PASS" if not failures else "soak: FAIL")
    return 1 if failures else 0


def main() -> int:
    """Entry point: SOAK_SECONDS (default 600), SOAK_CLIENTS (default 6)."""
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    clients = int(os.environ.get("SOAK_CLIENTS", "6"))
    print(
        f"soak: {seconds:.0f} s, {clients} proxy clients, OTLP push every 1 s "
        f"({SERIES_PER_GENERATION} series per {GENERATION_S:.0f} s generation)",
        flush=True,
    )
    return asyncio.run(soak(seconds, clients))


if __name__ == "__main__":
    sys.exit(main())
