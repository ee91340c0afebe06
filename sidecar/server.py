"""The sidecar process: builds the components, starts them, and runs the lifecycle of §10.

Start: bind every listener, then ready. First SIGTERM/SIGINT: ``/readyz`` 503 at once,
the proxy serves on for ``shutdown.drain_delay``, then listeners close and in-flight
requests get ``shutdown.drain_timeout``; the export is flushed; exit 0. A second signal
exits at once, saying what was cut. SIGHUP re-reads the config file: validated first, a bad
file is logged and the running config stays; a good one is applied as far as it can be
without new sockets (`sidecar.reload`), and the log names the keys applied and the keys
that wait for a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.metrics import Counter
from prometheus_client import ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sidecar import __version__, extensions
from sidecar.admin import Readiness, admin_tls, create_admin_app
from sidecar.batching import mergeable_aggregations
from sidecar.config import Config, ConfigError, load_config
from sidecar.events import EventInspector
from sidecar.events.inspector import BATCH_SIZE, event_views
from sidecar.export import OtlpPusher, create_export
from sidecar.export.pusher import export_counter
from sidecar.ingest import create_ingest
from sidecar.ingest.store import MetricStore
from sidecar.instruments import SeriesGauge, merge_conflicts
from sidecar.lifecycle import AiohttpComponent, Component, StartError
from sidecar.logs import configure_logging
from sidecar.merge import MergeScraper, create_merge, merge_sources
from sidecar.observability import Metrics, Module
from sidecar.offloop import WriteGate
from sidecar.proxy import ProxyComponent, create_proxy, proxy_views
from sidecar.relabel.families import Relabeller, dropped_counter
from sidecar.relabel.ingest import IngestRelabel
from sidecar.relabel.rules import Rule, compile_rules
from sidecar.reload import changed_keys, running_config
from sidecar.runtime import tune
from sidecar.status import StatusSources, TrafficSampler, add_status_routes
from sidecar.status.inventory import StoreSources
from sidecar.tlsserver import ReloadingServerContext
from sidecar.unified import UnifiedCollector

__all__ = ["Sidecar", "run_sidecar"]

log = logging.getLogger(__name__)

# component -> the key of the listener it binds, named when the bind fails
LISTEN_KEYS = {"proxy": "proxy.listen", "admin": "admin.listen", "ingest": "ingest.listen"}


class BuildInfoCollector:
    """``sidecar_build_info{version,python,extensions} 1``; ``extensions`` says whether
    the hot paths run in C (``c``) or pure Python (``python``; `sidecar.extensions`)."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """One constant series."""
        family = GaugeMetricFamily(
            "sidecar_build_info",
            "Build information of the causality-sidecar",
            labels=["version", "python", "extensions"],
        )
        family.add_metric([__version__, platform.python_version(), extensions.label()], 1.0)
        yield family


@dataclass
class Sidecar:
    """One sidecar: its components, its metrics, its readiness."""

    config: Config
    config_path: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # flags, re-applied on reload
    origins: Mapping[str, str] = field(default_factory=dict)  # key path -> flag, for errors
    module: Module = field(init=False)
    metrics: Metrics = field(init=False)
    readiness: Readiness = field(default_factory=Readiness)
    components: list[Component] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    unified: UnifiedCollector | None = field(default=None, init=False)
    scraper: MergeScraper | None = field(default=None, init=False)
    exporter: OtlpPusher | None = field(default=None, init=False)
    proxy: ProxyComponent | None = field(default=None, init=False)
    inspector: EventInspector | None = field(default=None, init=False)
    _export_results: Counter | None = field(default=None, init=False)
    _relabel_dropped: Counter | None = field(default=None, init=False)
    ingest_relabel: IngestRelabel = field(default_factory=IngestRelabel, init=False)
    _ingest_store: MetricStore | None = field(default=None, init=False)
    _ingest_swap: asyncio.Future[None] | None = field(default=None, init=False)
    _export_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _export_swap: asyncio.Future[None] | None = field(default=None, init=False)
    admin_tls: ReloadingServerContext | None = field(default=None, init=False)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _signals: int = 0

    def __post_init__(self) -> None:
        views = (*proxy_views(self.config.proxy), *event_views())
        admin = self.config.admin.listen  # tells two sidecars on one host apart
        self.module = Module.new(
            self.config.service.name, views=views, instance_key=f"{admin.host}:{admin.port}"
        )
        self.metrics = Metrics.create(self.module.meter)
        ProcessCollector(registry=self.module.registry)
        self.module.registry.register(BuildInfoCollector())

    def collector(self) -> Collector:
        """What ``/metrics`` serves: the unified view once built, else the own registry."""
        return self.unified if self.unified is not None else self.module.registry

    def build(self) -> None:
        """Create every enabled component; the admin listener comes last and stops last.

        Sources of ``/metrics``, highest priority first (design §9): the sidecar's own
        registry, the ingested families, then the merge targets fetched per scrape.
        """
        config = self.config
        rules = compile_rules(config.relabel)  # one compile for the store and the view
        self.ingest_relabel.update(rules)
        collectors: dict[str, Collector] = {"sidecar": self.module.registry}
        series = SeriesGauge(self.module.meter)  # sidecar_series{source}, one for all sources
        if config.proxy.enabled:
            if config.events.enabled:
                self.inspector = self._new_inspector(config)
            self.proxy = create_proxy(config, self.module, self.metrics, self.inspector)
            self.components.append(self.proxy)
        store_view = None
        store_gates: tuple[WriteGate, ...] = ()  # the status page reads the store off the loop
        if config.ingest.enabled:
            ingest, ingest_collector = create_ingest(
                config, self.module, series=series, relabel=self.ingest_relabel
            )
            self._ingest_store = ingest_collector.store
            self.components.append(ingest)
            collectors["ingest"] = ingest_collector
            store_view = StoreSources(ingest_collector.store)  # recounts changed chunks only
            store_gates = (ingest_collector.store.gate,)
        self.unified = UnifiedCollector(
            list(collectors.values()),
            merge_conflicts(self.module.meter),
            relabel=self._relabeller(rules),
        )
        # a scraper always: a reload may add targets (its session opens on first use)
        scraper = self.scraper = create_merge(config.merge, self.module.meter)
        self.exporter = self._new_exporter(config)
        admin_app = create_admin_app(
            config.admin, self.unified, self.readiness, extra=merge_sources(scraper)
        )
        status = StatusSources(
            config=config,
            readiness=self.readiness,
            started_at=self.started_at,
            collectors=collectors,
            listeners=lambda: all_addresses(self.components),
            sampler=TrafficSampler(self.module.registry),
            sources=store_view,
            source_gates=store_gates,
            live_config=lambda: self.config,  # the running config, also after a reload
            merged=scraper.recent,  # merge targets' series, from their last scrape
        )
        add_status_routes(admin_app, status)
        admin = AiohttpComponent("admin", admin_app, [config.admin.listen])
        self.admin_tls = admin_tls(config.admin)  # HTTPS, certificate re-read on change
        if self.admin_tls is not None:
            admin.ssl_context = self.admin_tls.context
        self.components.append(admin)

    async def start(self) -> None:
        """Bind every listener, then turn ready; on a bind error, release what was bound."""
        self.build()
        started: list[Component] = []
        try:
            for component in self.components:
                try:
                    await component.start()
                except OSError as exc:
                    key = LISTEN_KEYS.get(component.name, f"{component.name}.listen")
                    address = self._configured(key)
                    raise StartError(component.name, address, key, exc) from exc
                started.append(component)
                log.info(
                    "%s listening on %s",
                    component.name,
                    ", ".join(str(a) for a in component.addresses),
                    extra={"event": "listening", "component": component.name},
                )
        except BaseException:
            for component in reversed(started):
                await component.stop(0)
            raise
        warn_exposed_ingest(self.config)
        if self.exporter is not None:
            self.exporter.start()
        self.readiness.set_ready()
        self.started.set()
        log.info(
            "%s", extensions.describe(), extra={"event": "extensions", "path": extensions.label()}
        )
        log.info("ready", extra={"event": "ready", "version": __version__})

    def _new_inspector(self, config: Config) -> EventInspector:
        aggregation = mergeable_aggregations(self.module).get(BATCH_SIZE)
        return EventInspector(config.events, self.module.meter, batch_size_aggregation=aggregation)

    def _relabeller(self, rules: tuple[Rule, ...]) -> Relabeller | None:
        """The compiled ``relabel:`` rules for the unified view (None: no rules)."""
        if not rules:
            return None
        if self._relabel_dropped is None:  # one counter for every rule set of this process
            self._relabel_dropped = dropped_counter(self.module.meter)
            self.ingest_relabel.dropped = self._relabel_dropped  # refusals before the store
        return Relabeller(rules, self._relabel_dropped)

    def _new_exporter(self, config: Config) -> OtlpPusher | None:
        if config.export.otlp.endpoint is None or self.unified is None:
            return None
        if self._export_results is None:  # one counter for every pusher of this process
            self._export_results = export_counter(self.module.meter)
        return create_export(
            config,
            self.module,
            self.unified,
            self.scraper,
            resource=self.module.resource,
            results=self._export_results,
        )

    def _configured(self, key: str) -> str:
        section, _, name = key.partition(".")
        return str(getattr(getattr(self.config, section, None), name, "?"))

    def component(self, name: str) -> Component:
        """A started component by name."""
        return next(c for c in self.components if c.name == name)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT drain (a second one exits at once), SIGHUP reloads the config."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("%s received: draining", sig.name, extra={"event": "drain_start"})
            self.request_stop()
            return
        in_flight = sum(c.in_flight for c in self.components)
        log.warning(
            "%s received again: exiting now, cutting %d in-flight requests",
            sig.name,
            in_flight,
            extra={"event": "forced_exit", "cut": in_flight},
        )
        logging.shutdown()
        os._exit(128 + sig.value)

    def reload(self) -> None:
        """Re-read the config file; keep the running config when the new one is bad.

        A good file is applied as far as it can be without a restart (`sidecar.reload`);
        the log line names the keys applied and the keys waiting for a restart.
        """
        if not self.config_path:
            log.info("SIGHUP: no config file to reload", extra={"event": "reload_skipped"})
            return
        try:
            new = load_config(self.config_path, overrides=self.overrides, origins=self.origins)
        except ConfigError as exc:
            log.error("SIGHUP: config not reloaded, keeping the running one: %s", exc,
                      extra={"event": "reload_failed"})  # fmt: skip
            return
        old = self.config
        running = running_config(old, new)
        applied = changed_keys(old, running)
        waiting = changed_keys(running, new)
        self.config = running
        notes = self._apply(old, running)
        log.info(
            "SIGHUP: config reloaded; applied: %s; waiting for a restart: %s%s",
            ", ".join(applied) or "nothing changed",
            ", ".join(waiting) or "nothing",
            "".join(f"; {note}" for note in notes),
            extra={"event": "reloaded", "applied": applied, "restart": waiting},
        )

    def _apply(self, old: Config, running: Config) -> list[str]:
        """Hand the running config to every part that reads it; notes for the log."""
        notes: list[str] = []
        if running.logging != old.logging:
            configure_logging(running.logging.level, running.logging.format)
        if self.proxy is not None:
            if running.events != old.events:
                if self.inspector is None and running.events.enabled:
                    self.inspector = self._new_inspector(running)
                elif self.inspector is not None and self.inspector.reconfigure(running.events):
                    notes.append("the events dedup memory starts empty")
            self.proxy.handler.reconfigure(running, self.inspector)
        if self.scraper is not None:
            self.scraper.targets = running.merge.targets
        if running.relabel != old.relabel:
            rules = compile_rules(running.relabel)
            if self.unified is not None:  # the next scrape and push use the new rules
                self.unified.relabel = self._relabeller(rules)
            store = self._ingest_store
            if store is not None and self.ingest_relabel.stale(rules):
                self._ingest_swap = asyncio.ensure_future(self._swap_ingest_rules(store, rules))
                notes.append(
                    "the ingest store starts empty (its series were relabelled by the old "
                    "rules; cumulative ones return with their next push)"
                )
            else:
                self.ingest_relabel.update(rules)
        if running.export != old.export:
            self._export_swap = asyncio.ensure_future(self._restart_export())
            if old.export.otlp.endpoint is not None:
                notes.append("the OTLP export restarts after a last push to the old endpoint")
        return notes

    async def _swap_ingest_rules(self, store: MetricStore, rules: tuple[Rule, ...]) -> None:
        """New ingest rules and an empty store at once, while no scrape reads it."""
        async with store.gate.write():  # no push sees one without the other
            self.ingest_relabel.update(rules)
            store.clear_series()

    async def _restart_export(self) -> None:
        """Stop the pusher (its final push) and start one for the running config."""
        async with self._export_lock:
            old, self.exporter = self.exporter, None
            if old is not None:
                await old.stop()
            if self._stop.is_set():
                return  # draining: drain_and_stop flushes what is running
            self.exporter = self._new_exporter(self.config)
            if self.exporter is not None:
                self.exporter.start()

    async def wait_for_stop(self) -> None:
        """Until the first stop signal (or `request_stop`)."""
        await self._stop.wait()

    def request_stop(self) -> None:
        """Begin the drain as SIGTERM would (for embedding and tests)."""
        self.readiness.set_not_ready("draining")
        self._stop.set()

    async def drain_and_stop(self) -> None:
        """The §10 sequence after readiness dropped: delay, close, wait, flush, release."""
        delay = self.config.shutdown.drain_delay
        if delay > 0:
            log.info("not ready; serving on for %.3gs", delay, extra={"event": "drain_delay"})
            await asyncio.sleep(delay)  # the documented drain delay, not synchronisation
        timeout = self.config.shutdown.drain_timeout
        cut = 0
        for component in self.components:  # admin is last: scrapes work until the end
            cut += await component.stop(timeout)
        if self._export_swap is not None:
            await self._export_swap  # a reload's export restart finishes first
        if self.exporter is not None:
            await self.exporter.stop()  # the final flush of design §10
        if self.scraper is not None:
            await self.scraper.close()
        await self.module.shutdown()
        log.info("stopped", extra={"event": "stopped", "cut": cut})


async def run_sidecar(sidecar: Sidecar) -> int:
    """Start, serve until a stop signal, drain; the process exit code.

    Raises:
        StartError: a listener could not be bound (nothing is left bound).
    """
    sidecar.install_signal_handlers()
    try:
        await sidecar.start()
    except ConfigError as exc:  # a file the config names went away since it was loaded
        log.error("config error: %s", exc, extra={"event": "start_failed", "key": exc.key})
        return 2
    tune()  # gc.freeze() of what start built, GIL switch interval (sidecar.runtime)
    await sidecar.wait_for_stop()
    await sidecar.drain_and_stop()
    return 0


def warn_exposed_ingest(config: Config) -> None:
    """The OTLP receiver has no authentication: say so when it listens beyond loopback."""
    listen = config.ingest.listen
    if config.ingest.enabled and not listen.is_loopback:
        log.warning(
            "ingest.listen is %s, not a loopback address: the OTLP receiver has no "
            "authentication, so anyone who can reach that address can push metrics into "
            "/metrics (keep it on 127.0.0.1 unless a network policy guards the port)",
            listen,
            extra={"event": "ingest_not_loopback", "key": "ingest.listen"},
        )


def all_addresses(components: Sequence[Component]) -> dict[str, list[str]]:
    """Component name -> bound addresses, for status output."""
    return {c.name: [str(a) for a in c.addresses] for c in components}
