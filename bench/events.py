"""Proxy throughput on the gateway's batch route with event inspection on versus off.

Issue 5's "Speed": 100-event batches, JSON and binary protobuf, through the real proxy
(`sidecar.proxy.create_proxy` with an `EventInspector`, on uvloop when installed) to a
fast stand-in upstream that reads the body and answers a canned
`IngestEventBatchResponse` in the request's encoding (the response is inspected too).
Load comes from wrk (Debian package, installed when missing and root) with a Lua script
cycling through 200 distinct bodies (20,000 idempotency keys, more than the bench's
`events.dedup_max_keys` of 10,000, so every event takes the insert-and-evict path of
the key memory: the dearest one).

Layout as in /work/shared/perf-notes.md: wrk and the upstream on core 0, the proxy on
core 1 (taskset), everything on 127.0.0.1. Prints req/s, the proxy's CPU µs per request
(from /proc, steadier than req/s on a shared machine), medians of the rounds, and the
on/off ratios. Runs minutes apart on this VM drift by ±10-20 % with the host's load, as
much as the effect measured, so each encoding is then also measured interleaved: a proxy
with inspection and one without, both alive, loaded in turn for 2 s each (off-on, on-off,
...; ``--slices`` pairs), each on/off ratio taken from adjacent runs, so a burst of the
host's load spoils one pair, which the median discards. The same code started twice can
differ by ±10 % (memory layout, hash seeds), so this is done with ``--pairs`` fresh
pairs of processes and the ratios pooled. (Loading both at once on one
core was tried: the two processes then evict each other's caches at every switch, which
charges the side with the larger working set.) The target (inspection costs at most
30% of throughput for JSON, 15% for protobuf) is judged on the interleaved runs' CPU
capacity ratio (off CPU µs per request / on CPU µs per request), the median over the
pairs. One command:

    .venv/bin/python bench/events.py [--rounds 3] [--pairs 3] [--slices 8] [--plumbing]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import free_port, wait_port  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[1]
BATCH_PATH = "/v1/events/batch"
BODIES = 200
CONTENT_TYPES = {"json": "application/json", "protobuf": "application/x-protobuf"}
TARGETS = {"json": 0.70, "protobuf": 0.85}  # throughput kept with inspection on
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4194304", "MALLOC_TRIM_THRESHOLD_": "67108864"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

LUA = """
local bodies = {}
local n = %(count)d
for i = 1, n do
  local f = io.open(string.format("%(dir)s/body-%%d", i - 1), "rb")
  bodies[i] = f:read("*all")
  f:close()
end
local i = 0
local headers = {["Content-Type"] = "%(content_type)s"}
request = function()
  i = i %% n + 1
  return wrk.format("POST", "%(path)s", headers, bodies[i])
end
"""


# ------------------------------------------------------------ the two server processes


def serve_upstream(port: int) -> None:
    """A fast gateway stand-in: read the body, answer a canned batch response."""
    from aiohttp import web

    from sidecar.gen.causality.v1 import service_pb2

    answer = service_pb2.IngestEventBatchResponse(accepted_count=100, rejected_count=0)
    binary = answer.SerializeToString()
    text = b'{"acceptedCount":100,"rejectedCount":0}'

    async def batch(request: web.Request) -> web.Response:
        await request.read()
        if request.headers.get("Content-Type") == CONTENT_TYPES["protobuf"]:
            return web.Response(body=binary, content_type=CONTENT_TYPES["protobuf"])
        return web.Response(body=text, content_type="application/json")

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post(BATCH_PATH, batch)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class PlumbingOnly:
    """An inspector that wants the batch route's bodies and does nothing with them: what
    the proxy's side of inspection costs (buffering the request, teeing the response)."""

    def wants_request(self, method: str, path: str) -> bool:
        return method == "POST" and path == BATCH_PATH

    def wants_response(self, path: str) -> bool:
        return path == BATCH_PATH

    def inspect_request(self, path: str, content_type: str | None, body: bytes) -> None:
        pass

    def request_skipped(self, path: str) -> None:
        pass

    def inspect_response(
        self, path: str, status: int, content_type: str | None, body: bytes
    ) -> None:
        pass


def serve_proxy(port: int, upstream_port: int, mode: str) -> None:
    """The real proxy with inspection off, on, or plumbing only, until killed."""
    from sidecar.batching import mergeable_aggregations
    from sidecar.config import Address, Config, EventsConfig, ProxyConfig
    from sidecar.events import EventInspector
    from sidecar.events.inspector import BATCH_SIZE, event_views
    from sidecar.observability import Metrics, Module
    from sidecar.proxy import create_proxy, proxy_views

    inspect = mode != "off"
    events = EventsConfig(enabled=inspect, dedup_max_keys=10_000)
    proxy = ProxyConfig(
        listen=Address("127.0.0.1", port), upstream=f"http://127.0.0.1:{upstream_port}"
    )
    config = Config(proxy=proxy, events=events)

    async def main() -> None:
        module = Module.new("bench", views=(*proxy_views(proxy), *event_views()))
        inspector: Any = None
        if mode == "on":
            aggregation = mergeable_aggregations(module).get(BATCH_SIZE)
            inspector = EventInspector(events, module.meter, batch_size_aggregation=aggregation)
        elif mode == "plumbing":
            inspector = PlumbingOnly()
        component = create_proxy(config, module, Metrics.create(module.meter), inspector)
        await component.start()
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# ----------------------------------------------------------------------- the driver


def pinned(core: int) -> list[str]:
    """A taskset prefix when there are cores to spread over."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core)]
    return []


@contextlib.contextmanager
def process(args: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends."""
    env = {**os.environ, **MALLOC_ENV, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, env=env, cwd=ROOT)
    try:
        wait_port(port, timeout=20.0)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def write_bodies(folder: Path, encoding: str, events: int) -> None:
    """BODIES distinct 100-event batch bodies, each event with its own key."""
    from sidecar.demo import samples

    for index in range(BODIES):
        batch = list(samples.envelopes(events, start=index * events))
        (folder / f"body-{index}").write_bytes(samples.batch_body(batch, encoding))


@dataclass(frozen=True)
class Run:
    """One wrk run against one proxy."""

    requests_per_s: float
    cpu_us_per_request: float
    errors: int


def wrk(command: list[str]) -> str:
    """Run wrk; its report, or an error with everything it said."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def run_wrk(
    url: str,
    script: Path,
    proxy_pid: int,
    args: argparse.Namespace,
    *,
    seconds: int | None = None,
    warm_up: bool = True,
) -> Run:
    """wrk for `seconds` (default `args.duration`; after a 1 s warm-up unless told not
    to), with the proxy's CPU time."""
    base = [*pinned(0), "wrk", "-t1", f"-c{args.connections}", "-s", str(script)]
    if warm_up:
        wrk([*base, "-d1s", url])
    before = cpu_seconds(proxy_pid)
    out = wrk([*base, f"-d{seconds or args.duration}s", url])
    cpu = cpu_seconds(proxy_pid) - before
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(rate, cpu / max(total, 1) * 1e6, int(errors.group(1)) if errors else 0)


def write_script(folder: Path, encoding: str) -> Path:
    """The wrk script posting the bodies of `encoding` (written by `write_bodies`)."""
    script = folder / f"{encoding}.lua"
    values = {"count": BODIES, "dir": folder / encoding, "path": BATCH_PATH}
    script.write_text(LUA % {**values, "content_type": CONTENT_TYPES[encoding]})
    return script


def measure(script: Path, mode: str, upstream_port: int, args: argparse.Namespace) -> list[Run]:
    """All rounds for one inspection mode, on a fresh proxy process."""
    port = free_port()
    with process(proxy_command(port, upstream_port, mode), port) as proxy:
        return [
            run_wrk(f"http://127.0.0.1:{port}", script, proxy.pid, args) for _ in range(args.rounds)
        ]


def proxy_command(port: int, upstream_port: int, mode: str) -> list[str]:
    """The proxy process on core 1."""
    command = [*pinned(1), sys.executable, __file__, "--serve-proxy", str(port)]
    return [*command, str(upstream_port), "--mode", mode]


def measure_interleaved(
    script: Path, upstream_port: int, args: argparse.Namespace, mode: str = "on"
) -> list[tuple[Run, Run]]:
    """Rounds of (off, `mode`) runs, alternating between two live proxies, one loaded at a
    time."""
    pairs: list[tuple[Run, Run]] = []
    for _ in range(args.pairs):  # fresh processes each time: their layouts differ by ±10 %
        pairs += _interleave(script, upstream_port, args, mode)
    return pairs


def _interleave(
    script: Path, upstream_port: int, args: argparse.Namespace, mode: str
) -> list[tuple[Run, Run]]:
    off_port, on_port = free_port(), free_port()
    with (
        process(proxy_command(off_port, upstream_port, "off"), off_port) as off,
        process(proxy_command(on_port, upstream_port, mode), on_port) as on,
    ):
        for port, pid in ((off_port, off.pid), (on_port, on.pid)):  # warm both up once
            run_wrk(f"http://127.0.0.1:{port}", script, pid, args, seconds=1)
        pairs = []
        for round_ in range(args.slices):
            order = [(off_port, off.pid), (on_port, on.pid)]
            if round_ % 2:  # ABBA: neither side always runs first
                order.reverse()
            runs = {
                port: run_wrk(
                    f"http://127.0.0.1:{port}", script, pid, args, seconds=2, warm_up=False
                )
                for port, pid in order
            }
            pairs.append((runs[off_port], runs[on_port]))
        return pairs


def congestion_control() -> str:
    """The TCP congestion control this run used (perf-notes: cubic vs bbr matters)."""
    with contextlib.suppress(OSError):
        return Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    return "unknown"


def main() -> None:
    """Parse arguments; serve (internal modes) or drive the whole benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="sequential runs per proxy")
    parser.add_argument(
        "--slices", type=int, default=8, help="interleaved 2 s (off, on) windows per process pair"
    )
    parser.add_argument(
        "--pairs", type=int, default=3, help="fresh (off, on) process pairs per encoding"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--events", type=int, default=100, help="events per batch")
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-proxy", type=int, nargs=2, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--plumbing",
        action="store_true",
        help="also measure an inspector that does nothing (the proxy's buffering and tee cost)",
    )
    parser.add_argument("--mode", default="off", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        return serve_upstream(args.serve_upstream)
    if args.serve_proxy:
        return serve_proxy(*args.serve_proxy, args.mode)
    subprocess.run([str(ROOT / "scripts" / "ensure-debian-packages"), "wrk:wrk"], check=True)
    if not shutil.which("wrk"):
        sys.exit("bench/events.py needs wrk (Debian package wrk)")
    drive(args)


def drive(args: argparse.Namespace) -> None:
    """Measure every encoding with inspection off and on; print the table."""
    print(
        f"tcp_congestion_control={congestion_control()} cores={os.cpu_count()} "
        f"connections={args.connections} duration={args.duration}s rounds={args.rounds}"
    )
    upstream_port = free_port()
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        process(
            [*pinned(0), sys.executable, __file__, "--serve-upstream", str(upstream_port)],
            upstream_port,
        ),
    ):
        folder = Path(tmp)
        for encoding in CONTENT_TYPES:
            (folder / encoding).mkdir()
            write_bodies(folder / encoding, encoding, args.events)
            size = (folder / encoding / "body-0").stat().st_size
            script = write_script(folder, encoding)
            off = measure(script, "off", upstream_port, args)
            on = measure(script, "on", upstream_port, args)
            plumbing = (
                measure_interleaved(script, upstream_port, args, "plumbing")
                if args.plumbing
                else []
            )
            interleaved = measure_interleaved(script, upstream_port, args)
            rows.append((encoding, size, off, on, plumbing, interleaved))
    print()
    print(
        "| body | bytes | off req/s | on req/s | on/off req/s | off CPU µs/req "
        "| on CPU µs/req | on/off capacity | target | non-2xx |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for encoding, size, off, on, plumbing, interleaved in rows:
        off_rate = statistics.median(r.requests_per_s for r in off)
        on_rate = statistics.median(r.requests_per_s for r in on)
        off_cpu = statistics.median(r.cpu_us_per_request for r in off)
        on_cpu = statistics.median(r.cpu_us_per_request for r in on)
        errors = sum(r.errors for r in (*off, *on))
        print(
            f"| {encoding} | {size} | {off_rate:,.0f} | {on_rate:,.0f} | {on_rate / off_rate:.2f} "
            f"| {off_cpu:,.0f} | {on_cpu:,.0f} | {off_cpu / on_cpu:.2f} | (sequential) | {errors} |"
        )
        pair_off_cpu = statistics.median(a.cpu_us_per_request for a, _ in interleaved)
        pair_on_cpu = statistics.median(b.cpu_us_per_request for _, b in interleaved)
        # capacity: the throughput ratio when the proxy's core is the limit, per round
        ratios = [a.cpu_us_per_request / b.cpu_us_per_request for a, b in interleaved]
        capacity = statistics.median(ratios)
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (capacity,) * 3
        verdict = "ok" if capacity >= TARGETS[encoding] else "MISSED"
        pair_off_rate = statistics.median(a.requests_per_s for a, _ in interleaved)
        pair_on_rate = statistics.median(b.requests_per_s for _, b in interleaved)
        pair_errors = sum(a.errors + b.errors for a, b in interleaved)
        print(
            f"| {encoding}, interleaved | {size} | {pair_off_rate:,.0f} | {pair_on_rate:,.0f} "
            f"| {pair_on_rate / pair_off_rate:.2f} | {pair_off_cpu:,.0f} | {pair_on_cpu:,.0f} "
            f"| **{capacity:.2f}** ({low:.2f}-{high:.2f}) | >= {TARGETS[encoding]:.2f} {verdict} "
            f"| {pair_errors} |"
        )
        if plumbing:
            cpu = statistics.median(b.cpu_us_per_request for _, b in plumbing)
            rate = statistics.median(b.requests_per_s for _, b in plumbing)
            ratio = statistics.median(
                a.cpu_us_per_request / b.cpu_us_per_request for a, b in plumbing
            )
            print(
                f"| {encoding}, plumbing only, interleaved | {size} | | {rate:,.0f} | "
                f"| | {cpu:,.0f} | {ratio:.2f} | | |"
            )
    print(
        "\non/off capacity = off CPU / on CPU per request: the throughput ratio when the proxy's"
        "\ncore is the bottleneck, steadier than req/s when other work shares the machine."
        "\ninterleaved: an off and an on proxy alive together, loaded in turn (off-on, on-off,"
        "\n...); the target is judged on the median of the adjacent runs' capacity ratios"
        "\n(in brackets: their quartiles)."
    )


if __name__ == "__main__":
    main()
