"""``causality-sidecar demo``: the sidecar, a demo app behind its proxy, a demo pipeline
pushing OTLP to its ingest port, and a trickle of traffic, so ``/metrics`` shows real data
the moment it starts."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from sidecar.config import Address
from sidecar.demo.app import create_demo_app
from sidecar.demo.gateway import send_event_trickle
from sidecar.demo.workers import run_workers
from sidecar.lifecycle import StartError
from sidecar.server import Sidecar, run_sidecar

__all__ = ["demo_app_running", "demo_banner", "run_demo", "send_demo_traffic"]

log = logging.getLogger(__name__)

DEMO_PATHS = ("/", "/users/7", "/users/42", "/users/4242", "/slow?ms=30", "/error", "/nope")
TRAFFIC_INTERVAL_S = 0.5


@contextlib.asynccontextmanager
async def demo_app_running(listen: Address) -> AsyncIterator[web.AppRunner]:
    """Serve the demo app on ``listen`` for the duration of the block."""
    runner = web.AppRunner(create_demo_app(), handle_signals=False)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, listen.host, listen.port, reuse_address=True).start()
        except OSError as exc:
            raise StartError("the demo app", listen, "--app-listen", exc) from exc
        yield runner
    finally:
        await runner.cleanup()


def local_url(address: Address) -> str:
    """An http URL reaching ``address`` from this host (0.0.0.0 becomes 127.0.0.1)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
    return f"http://{Address(host, address.port)}"


async def send_demo_traffic(proxy_url: str, stop: asyncio.Event) -> None:
    """A request through the proxy every half second until ``stop`` is set."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            path = random.choice(DEMO_PATHS)  # noqa: S311 - demo traffic, not crypto
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(proxy_url + path) as response:
                    await response.read()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TRAFFIC_INTERVAL_S)


async def run_demo(sidecar: Sidecar, app_listen: str, traffic: bool, *, workers: int = 0) -> int:
    """Run ``sidecar`` with the demo around it until SIGTERM/SIGINT; the exit code.

    ``workers``: worker processes pushing OTLP as a pre-fork server's (`sidecar.demo.workers`).
    """
    stop = asyncio.Event()
    tasks: list[asyncio.Task[object]] = []
    async with demo_app_running(Address.parse(app_listen)):
        log.info("demo app listening on %s", app_listen, extra={"event": "demo_app"})
        main = asyncio.create_task(run_sidecar(sidecar))
        started = asyncio.create_task(sidecar.started.wait())
        await asyncio.wait([main, started], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if sidecar.started.is_set():
            print(demo_banner(sidecar, app_listen), flush=True)
            tasks = _start_background(sidecar, stop, traffic, workers)
        # The demo's clients stop when the drain begins, while the proxy and ingest still
        # serve (drain delay): the pipeline's last push lands instead of failing on a
        # closed port.
        draining = asyncio.create_task(sidecar.wait_for_stop())
        await asyncio.wait([main, draining], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        code = await main
        draining.cancel()
    return code


def demo_banner(sidecar: Sidecar, app_listen: str) -> str:
    """What the demo prints (stdout) once it is up: where to look, how to stop."""
    names = {c.name: c for c in sidecar.components}
    admin = local_url(names["admin"].addresses[0])
    if sidecar.admin_tls is not None:  # admin.tls: the admin port speaks HTTPS
        admin = "https" + admin.removeprefix("http")
    lines = [
        "causality-sidecar demo is running; press Ctrl-C to stop.",
        f"  metrics:      {admin}{sidecar.config.admin.metrics_path}",
        f"  status page:  {admin}/",
    ]
    if "proxy" in names:
        lines.append(f"  proxy:        {local_url(names['proxy'].addresses[0])}/users/42")
    lines.append(f"  demo app:     {local_url(Address.parse(app_listen))}/")
    return "\n".join(lines)


def _start_background(
    sidecar: Sidecar, stop: asyncio.Event, traffic: bool, workers: int = 0
) -> list[asyncio.Task[object]]:
    tasks: list[asyncio.Task[object]] = []
    names = {c.name: c for c in sidecar.components}
    if "ingest" in names:
        # the pipeline comes with the ingest work; imported by name until it lands
        run_pipeline = importlib.import_module("sidecar.demo.pipeline").run_pipeline
        endpoint = local_url(names["ingest"].addresses[0]) + "/v1/metrics"
        tasks.append(asyncio.create_task(run_pipeline(endpoint, stop)))
        if workers:
            tasks.append(asyncio.create_task(run_workers(endpoint, workers, stop)))
    if traffic and "proxy" in names:
        proxy_url = local_url(names["proxy"].addresses[0])
        tasks.append(asyncio.create_task(send_demo_traffic(proxy_url, stop)))
        trickle = send_event_trickle(proxy_url, stop, config=sidecar.config.events)
        tasks.append(asyncio.create_task(trickle))
    return tasks
