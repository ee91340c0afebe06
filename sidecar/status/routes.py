"""``GET /``, ``GET /debug/series`` and ``GET /debug/config`` on the admin application.

`add_status_routes` registers the three pages on the admin app, puts them under the same
bearer-token rule as ``/metrics`` and runs the traffic sampler while the app runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from sidecar import __version__
from sidecar.admin import PROTECTED_KEY, Readiness
from sidecar.config import Config, dump_yaml, redact_url, to_dict
from sidecar.merge.fetch import Scrape
from sidecar.offloop import WriteGate, off_loop
from sidecar.status.inventory import (
    MetricCount,
    SourceInfo,
    count_series,
    merge_counts,
    series_report,
)
from sidecar.status.page import StatusView, render_page
from sidecar.status.sampler import TrafficSampler

__all__ = ["STATUS_KEY", "StatusSources", "add_status_routes"]

STATUS_PATHS = ("/", "/debug/series", "/debug/config")
UPSTREAM_CHECK_TIMEOUT_S = 0.5
MEMO_COST_FACTOR = 50.0  # the page's inventory may take at most ~2% of the event loop
MEMO_MAX_AGE_S = 30.0
OWN_REUSE_S = 1.0  # the own registry's figures on the page may be this old (a scrape's)
T = TypeVar("T")
DEFAULT_SERIES_LIMIT = 20
MAX_SERIES_LIMIT = 10_000
TOP_METRICS = 10


@dataclass(frozen=True)
class StatusSources:
    """What the pages read; every field is read on request, never on the proxy's path.

    Attributes:
        config: the configuration in effect.
        readiness: the sidecar's readiness (shared with the lifecycle).
        started_at: wall-clock start time.
        collectors: source name → collector, as ``/metrics`` merges them ("sidecar",
            "ingest", "merge").
        listeners: component name → bound addresses.
        sampler: the traffic sampler (run by `add_status_routes`).
        sources: the OTLP sources seen, when ingest is enabled.
        source_gates: the ingest store's `sidecar.offloop.WriteGate`: with it, ``sources``
            (a walk over every series) runs in a worker thread while the gate holds the
            store's writers; without, on the event loop.
        live_config: the configuration in effect now (it changes on SIGHUP); ``config``
            when not given.
        merged: each merge target's last successful scrape by name
            (`sidecar.merge.MergeScraper.recent`: a recent one, else scraped now).
    """

    config: Config
    readiness: Readiness
    started_at: float
    collectors: Mapping[str, Collector]
    listeners: Callable[[], Mapping[str, Sequence[str]]]
    sampler: TrafficSampler
    sources: Callable[[], Sequence[SourceInfo]] | None = None
    source_gates: Sequence[WriteGate] = ()
    live_config: Callable[[], Config] | None = None
    merged: Callable[[], Awaitable[Mapping[str, Scrape]]] | None = None

    def current(self) -> Config:
        """The configuration in effect at this moment."""
        return self.live_config() if self.live_config is not None else self.config


STATUS_KEY = web.AppKey("status_sources", StatusSources)


class Memo:
    """The last value of a costly computation, reused for a time proportional to its cost.

    The page reloads every few seconds in every open browser tab; walking 100,000
    ingested series that often would hold the event loop (and the proxy) too long. A
    value that took ``d`` seconds to compute is reused for ``cost_factor * d`` seconds
    (at most ``max_age``), so the page spends at most ~1/cost_factor of the loop on it,
    and a small store is always shown fresh.
    """

    def __init__(
        self,
        cost_factor: float = MEMO_COST_FACTOR,
        max_age: float = MEMO_MAX_AGE_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.cost_factor = cost_factor
        self.max_age = max_age
        self._clock = clock
        self._values: dict[str, tuple[float, float, Any]] = {}  # name -> (until, age limit, value)
        self._keyed: dict[str, tuple[object, Any]] = {}  # name -> (key, value): `of`

    def get(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, or its earlier value while that is still fresh enough."""
        start = self._clock()
        hit = self._values.get(name)
        if hit is not None and start < hit[0]:
            return hit[2]  # type: ignore[no-any-return]
        return self._keep(name, start, compute())

    async def get_off_loop(
        self, name: str, compute: Callable[[], T], gates: Sequence[WriteGate] | None
    ) -> T:
        """`get`, computing in a worker thread while ``gates`` hold the writers of what
        ``compute`` reads (`sidecar.offloop`); on the loop when ``gates`` is None (what
        it reads is only safe to read there)."""
        if gates is None:
            return self.get(name, compute)
        start = self._clock()
        hit = self._values.get(name)
        if hit is not None and start < hit[0]:
            return hit[2]  # type: ignore[no-any-return]
        return self._keep(name, start, await off_loop(gates, compute))

    def of(self, name: str, key: object, compute: Callable[[], T]) -> T:
        """``compute()``, computed again only when ``key`` is another object than last
        time (the configuration in effect: it is replaced, never changed, on reload)."""
        hit = self._keyed.get(name)
        if hit is not None and hit[0] is key:
            return hit[1]  # type: ignore[no-any-return]
        value = compute()
        self._keyed[name] = (key, value)
        return value

    def _keep(self, name: str, start: float, value: T) -> T:
        end = self._clock()
        reuse = min((end - start) * self.cost_factor, self.max_age)
        self._values[name] = (end + reuse, reuse, value)
        return value


MEMO_KEY = web.AppKey("status_memo", Memo)


async def upstream_state(url: str) -> tuple[bool, str]:
    """Whether a TCP connection to the upstream opens in UPSTREAM_CHECK_TIMEOUT_S; why not."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = UPSTREAM_CHECK_TIMEOUT_S
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(parts.hostname, port)
    except TimeoutError:
        return False, f"no answer within {timeout:g}s"
    except OSError as exc:
        return False, f"does not answer ({exc.strerror or exc})"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, "answers"


def _values(collector: Collector | None, name: str, by: str = "") -> dict[str, float]:
    """Sum the samples called ``name``, per value of label ``by`` ("" = one total)."""
    out: dict[str, float] = {}
    if collector is None:
        return out
    for family in collector.collect():
        if not name.startswith(family.name):  # (its samples' names begin with it)
            continue
        for sample in family.samples:
            if sample.name == name:
                key = " ".join(sample.labels.get(label, "") for label in by.split()) if by else ""
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _store_totals(collector: Collector | None) -> dict[str, float]:
    series = _values(collector, "sidecar_series", "source")
    totals = {f"series ({source})": n for source, n in sorted(series.items())}
    for label, name in (
        ("series expired", "sidecar_series_expired_total"),
        ("cardinality overflow", "sidecar_cardinality_overflow_total"),
        ("points received", "sidecar_otlp_data_points_received_total"),
        ("points rejected", "sidecar_otlp_data_points_rejected_total"),
    ):
        totals[label] = sum(_values(collector, name).values())
    return totals


async def _merge_counts(sources: StatusSources) -> list[MetricCount]:
    """Series per family of every merge target, from its last scrape."""
    return merge_counts(await sources.merged()) if sources.merged is not None else []


class _Listed:
    """Families read once (a collector for `_values` and `count_series`)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _read(collector: Collector) -> _Listed:
    return _Listed(list(collector.collect()))


async def _own_families(own: Collector | None) -> _Listed | None:
    """The own registry read once, in a worker thread when it allows that
    (`sidecar.observability.SnapshotRegistry`; 5-30 ms for 100 proxied routes)."""
    if own is None:
        return None
    recent = getattr(own, "recent", None)
    kept: Collector | None = recent(OWN_REUSE_S) if recent is not None else None
    if kept is not None:  # collected by a scrape right before: read as it was
        return _read(kept)
    snapshot_of = getattr(own, "snapshot", None)
    if snapshot_of is None:
        return _read(own)
    return await off_loop((), partial(_read, snapshot_of()))


def _own_numbers(
    own: Collector | None,
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """The store totals, merge and export results (passes over every own sample)."""
    return (
        _store_totals(own),
        _values(own, "sidecar_merge_scrapes_total", "target result"),
        _values(own, "sidecar_export_total", "result"),
    )


def _store_gates(sources: StatusSources) -> Sequence[WriteGate] | None:
    """What a worker thread must hold to read the collectors (None: read them on the loop):
    the ingest store's gate when there is a store."""
    has_store = any(hasattr(c, "store") for c in sources.collectors.values())
    return (sources.source_gates or None) if has_store else ()


async def _view(sources: StatusSources, memo: Memo, refresh: bool) -> StatusView:
    own = await _own_families(sources.collectors.get("sidecar"))
    store, merge_results, export_results = await off_loop((), partial(_own_numbers, own))
    merged = await _merge_counts(sources)
    merge_series: dict[str, int] = {}
    for count in merged:
        merge_series[count.source] = merge_series.get(count.source, 0) + count.series
    traffic = await sources.sampler.traffic_off_loop()
    config = sources.current()
    ok, state = await upstream_state(config.proxy.upstream)
    reasons = sources.readiness.reasons
    return StatusView(
        version=__version__,
        uptime_s=time.time() - sources.started_at,
        ready=sources.readiness.ready,
        readiness=reasons[-1] if reasons else "starting",
        listeners=sources.listeners(),
        upstream=redact_url(config.proxy.upstream),
        upstream_state=state,
        upstream_ok=ok,
        config_yaml=memo.of("config", config, partial(dump_yaml, config, redact=True)),
        routes=traffic.routes,
        rate_history=traffic.rate_history,
        p99_history=traffic.p99_history,
        sources=(
            await memo.get_off_loop("sources", sources.sources, sources.source_gates or None)
            if sources.sources
            else ()
        ),
        store=store,
        merge=merge_results,
        export=export_results,
        merge_series=merge_series,
        top_metrics=await memo.get_off_loop(
            "top",
            lambda: count_series(
                {**sources.collectors, **({"sidecar": own} if own is not None else {})}, merged
            )[:TOP_METRICS],
            _store_gates(sources),
        ),
        refresh=refresh,
        metrics_path=config.admin.metrics_path,
    )


async def status_page(request: web.Request) -> web.Response:
    """``GET /``: the HTML status page (``?refresh=0`` turns the self-reload off)."""
    app = request.app
    view = await _view(app[STATUS_KEY], app[MEMO_KEY], request.query.get("refresh") != "0")
    return web.Response(
        text=await off_loop((), partial(render_page, view)),  # ~3 ms for 100 routes
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


async def debug_series(request: web.Request) -> web.Response:
    """``GET /debug/series?limit=N``: series per metric and per source, largest first."""
    raw = request.query.get("limit", str(DEFAULT_SERIES_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_SERIES_LIMIT:
        return web.json_response(
            {"error": f"limit must be an integer from 1 to {MAX_SERIES_LIMIT}, got {raw!r}"},
            status=400,
        )
    sources = request.app[STATUS_KEY]
    report = series_report(sources.collectors, int(raw), await _merge_counts(sources))
    return web.json_response(report, dumps=lambda d: json.dumps(d, indent=2))


async def debug_config(request: web.Request) -> web.Response:
    """``GET /debug/config``: the configuration in effect as JSON, secrets redacted."""
    data = to_dict(request.app[STATUS_KEY].current(), redact=True)
    return web.json_response(data, dumps=lambda d: json.dumps(d, indent=2, default=str))


async def _sample_forever(sampler: TrafficSampler) -> None:
    while True:
        await sampler.sample_off_loop()
        await asyncio.sleep(sampler.interval)  # the sampling timer


def add_status_routes(app: web.Application, sources: StatusSources) -> None:
    """Register the pages on the admin ``app``, protected like ``/metrics``; sample traffic."""
    app[STATUS_KEY] = sources
    app[MEMO_KEY] = Memo()
    app[PROTECTED_KEY].update(STATUS_PATHS)
    app.router.add_get("/", status_page)
    app.router.add_get("/debug/series", debug_series)
    app.router.add_get("/debug/config", debug_config)

    async def sampling(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_sample_forever(sources.sampler))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sampling)
