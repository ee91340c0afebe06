"""The command line of design §3: ``run``, ``check-config FILE``, ``demo``, ``version``."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sidecar import __version__, runtime
from sidecar.config import CONFIG_FILE_ENV, Address, Config, ConfigError, dump_yaml, load_config
from sidecar.inject import documents as inject_documents
from sidecar.lifecycle import StartError
from sidecar.logs import configure_logging

__all__ = ["main"]

EXIT_CONFIG = 2
EXIT_START = 1  # a listener could not be bound

# flag -> (config key path, help)
RUN_FLAGS: dict[str, tuple[str, str]] = {
    "--upstream": ("proxy.upstream", "the app's URL (proxy.upstream)"),
    "--listen": ("proxy.listen", "proxy listen address (proxy.listen)"),
    "--admin-listen": ("admin.listen", "admin listen address for /metrics (admin.listen)"),
    "--otlp-listen": ("ingest.listen", "OTLP/HTTP ingest listen address (ingest.listen)"),
    "--log-level": (
        "logging.level",
        "debug, info, warning, error or critical, in any case (logging.level)",
    ),
}


def _version_line() -> str:
    """What ``version`` and ``--version`` print: also whether the C extensions run."""
    from sidecar import extensions  # imported here: it loads them (the other commands stay light)

    python = platform.python_version()
    return f"causality-sidecar {__version__} (Python {python}, extensions: {extensions.label()})"


class _VersionAction(argparse.Action):
    """``--version``: `_version_line`, worked out only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(_version_line())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="causality-sidecar",
        description="Reverse proxy with RED metrics, OTLP/HTTP metrics ingest and one "
        "unified Prometheus /metrics, for a pod's app container.",
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="print the version")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the sidecar")
    demo = sub.add_parser("demo", help="run the sidecar with an embedded demo app and pipeline")
    for p in (run, demo):
        p.add_argument("--config", metavar="FILE", help="YAML config file (or $SIDECAR_CONFIG)")
        for flag, (_, text) in RUN_FLAGS.items():
            p.add_argument(flag, metavar=flag.strip("-").split("-")[-1].upper(), help=text)
    demo.add_argument(
        "--app-listen", metavar="ADDR", default="127.0.0.1:8080",
        help="where the demo app listens (default 127.0.0.1:8080); the proxy forwards there",
    )  # fmt: skip
    demo.add_argument(
        "--no-traffic", action="store_true", help="do not send demo traffic through the proxy"
    )
    demo.add_argument(
        "--workers", metavar="N", type=_workers_count, default=0,
        help="also run N worker processes recycled like gunicorn's, each pushing OTLP; "
        "ingest.workers makes them one pod-level series (default 0: none)",
    )  # fmt: skip
    check = sub.add_parser("check-config", help="validate FILE and print the effective config")
    check.add_argument("file", metavar="FILE")
    sub.add_parser("version", help="print the version")
    inject_documents.add_arguments(
        sub.add_parser("inject", help="add the sidecar to the pods of Kubernetes YAML/JSON")
    )
    _webhook_arguments(sub.add_parser("webhook", help="serve the injection admission webhook"))
    return parser


def _webhook_arguments(p: argparse.ArgumentParser) -> None:
    """``webhook``: sidecar.inject.webhook (imported only when run: it needs aiohttp)."""
    add = p.add_argument
    add("--listen", metavar="ADDR", default="0.0.0.0:9443", help="HTTPS address of /mutate")
    add(
        "--tls-cert",
        metavar="FILE",
        required=True,
        help="certificate chain (PEM), re-read on change",
    )
    add("--tls-key", metavar="FILE", required=True, help="private key (PEM), re-read on change")
    add("--health-listen", metavar="ADDR", default="0.0.0.0:9090",
        help="plain-HTTP address of /healthz, /readyz, /metrics")  # fmt: skip
    add("--image", help="sidecar image to inject (default: $SIDECAR_IMAGE)")
    add("--native", action="store_true", help="inject native sidecars (Kubernetes >= 1.32)")
    add("--config-map", metavar="NAME", help="ConfigMap with config.yaml for every sidecar")
    add("--sidecar-config", metavar="FILE",
        help="base sidecar config for every injected pod, re-read on change")  # fmt: skip
    add("--admin-tls-secret", metavar="NAME",
        help="Secret with the admin certificate when the base config has admin.tls")  # fmt: skip
    add("--upstream-port", metavar="N", type=int, help="app port when a pod does not say")
    add("--namespace", metavar="NS", help="the injector's namespace (default: $POD_NAMESPACE)")
    add("--max-body", metavar="SIZE", default="4MiB", help="largest AdmissionReview (4MiB)")
    add("--drain-delay", metavar="DURATION", default="5s",
        help="after SIGTERM: not ready, still serving, for this long (5s)")  # fmt: skip


def cmd_webhook(args: argparse.Namespace) -> int:
    """``webhook``: serve /mutate until SIGTERM."""
    from sidecar.inject.webhook import load_tls, run_webhook, webhook_config

    try:
        config = webhook_config(args, os.environ)
        tls = load_tls(config.tls)
    except ConfigError as exc:
        return _fail_config(exc)
    configure_logging("info", "json")
    return _run_async(lambda: run_webhook(config, tls))


def _workers_count(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= MAX_DEMO_WORKERS:
        raise argparse.ArgumentTypeError(f"expected 0 to {MAX_DEMO_WORKERS}, got {text!r}")
    return int(text)


MAX_DEMO_WORKERS = 64


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, flag[2:].replace("-", "_")) for flag, (key, _) in RUN_FLAGS.items()}


# config key path -> the flag that sets it, named in errors: "proxy.upstream (from --upstream)"
FLAG_OF: dict[str, str] = {key: flag for flag, (key, _) in RUN_FLAGS.items()}


def _fail_config(exc: ConfigError) -> int:
    print(f"causality-sidecar: config error: {exc}", file=sys.stderr)
    return EXIT_CONFIG


def _run_async(factory: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop when it is installed, else asyncio's default loop (`sidecar.runtime`)."""
    try:
        return runtime.run(factory)
    except StartError as exc:
        print(f"causality-sidecar: {exc}", file=sys.stderr)
        return EXIT_START


def cmd_run(
    config: Config, config_path: str | None, overrides: dict[str, Any], origins: dict[str, str]
) -> int:
    """``run``: the sidecar until SIGTERM."""
    from sidecar.server import (  # imported here: version/check-config stay light
        Sidecar,
        run_sidecar,
    )

    sidecar = Sidecar(config, config_path, overrides, origins)
    return _run_async(lambda: run_sidecar(sidecar))


def cmd_demo(
    config: Config,
    config_path: str | None,
    overrides: dict[str, Any],
    origins: dict[str, str],
    args: argparse.Namespace,
) -> int:
    """``demo``: the sidecar plus a demo app, a demo pipeline and demo traffic."""
    from sidecar.demo import run_demo
    from sidecar.server import Sidecar

    sidecar = Sidecar(config, config_path, overrides, origins)
    return _run_async(
        lambda: run_demo(sidecar, args.app_listen, not args.no_traffic, workers=args.workers)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``causality-sidecar`` and ``python -m sidecar``."""
    args = _parser().parse_args(argv)
    if args.command == "inject":
        return inject_documents.run(args)
    if args.command == "webhook":
        return cmd_webhook(args)
    if args.command == "version":
        print(_version_line())
        return 0
    try:
        if args.command == "check-config":
            config = load_config(args.file)  # the effective config: SIDECAR_* apply
            print(dump_yaml(config), end="")
            return 0
        overrides = _overrides(args)
        origins = dict(FLAG_OF)
        if args.command == "demo":
            try:
                Address.parse(args.app_listen)
            except ValueError as exc:
                raise ConfigError("--app-listen", str(exc)) from None
            if overrides["proxy.upstream"] is None:
                overrides["proxy.upstream"] = f"http://{args.app_listen}"
                origins["proxy.upstream"] = "--app-listen"
            if not (args.config or os.environ.get(CONFIG_FILE_ENV)):
                overrides["events.enabled"] = True  # the demo shows the event metrics too
            if args.workers:  # their streams become one pod-level series
                from sidecar.demo.workers import WORKER_ATTRIBUTES, WORKER_IDLE

                overrides["ingest.workers.attributes"] = list(WORKER_ATTRIBUTES)
                overrides["ingest.workers.idle"] = WORKER_IDLE
                origins["ingest.workers.attributes"] = origins["ingest.workers.idle"] = "--workers"
        config = load_config(args.config, overrides=overrides, origins=origins)
    except ConfigError as exc:
        return _fail_config(exc)
    config_path = args.config or os.environ.get(CONFIG_FILE_ENV) or None
    configure_logging(config.logging.level, config.logging.format)
    if args.command == "run":
        return cmd_run(config, config_path, overrides, origins)
    return cmd_demo(config, config_path, overrides, origins, args)
