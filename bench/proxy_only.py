"""A proxy-only process: ``python bench/proxy_only.py --upstream URL --listen ADDR``.

For benchmarks and memory tests, which need the proxy alone in its own process (its own
core, its own RSS), set up as the sidecar's processes are (`sidecar.runtime`). It records
every metric exactly as the sidecar does; ``--no-metrics`` turns recording off to measure
what it costs; ``--access-log`` writes the access log (``logging.access_log``) as JSON
lines to stderr; ``--no-tuning`` skips `sidecar.runtime.tune` (gc.freeze, GIL switch
interval) to measure what it brings; ``--no-uvloop`` runs asyncio's own loop;
``--engine`` is ``proxy.engine``. It prints
``listening on HOST:PORT`` once bound and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys

from sidecar.config import Address, Config, LoggingConfig, ProxyConfig
from sidecar.logs import configure_logging
from sidecar.observability import Metrics, Module
from sidecar.proxy import create_proxy, proxy_views
from sidecar.runtime import run, tune


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(prog="bench/proxy_only.py")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--native-histograms", action="store_true", help="proxy.native_histograms")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--no-tuning", action="store_true", help="no sidecar.runtime.tune()")
    parser.add_argument("--engine", choices=("lean", "aiohttp"), default=ProxyConfig().engine)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run the proxy until a signal arrives."""
    proxy = dataclasses.replace(
        ProxyConfig(),
        upstream=args.upstream,
        listen=Address.parse(args.listen),
        native_histograms=args.native_histograms,
        engine=args.engine,
    )
    config = Config(proxy=proxy, logging=LoggingConfig(access_log=args.access_log))
    configure_logging("warning", "json")
    module = Module.new("causality-sidecar", views=proxy_views(proxy))
    component = create_proxy(
        config, module, Metrics.create(module.meter), None, record_metrics=not args.no_metrics
    )
    await component.start()
    if not args.no_tuning:
        tune()
    print(f"listening on {component.addresses[0]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await component.stop(1.0)
    await module.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    run(lambda: serve(args), uvloop=not args.no_uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
