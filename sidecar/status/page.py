"""The status page (``GET /`` on the admin port): one self-contained HTML document.

Inline CSS and SVG only (no script, no CDN, no external asset), so it works offline and
through ``kubectl port-forward``. It reloads itself with a ``<meta http-equiv="refresh">``
unless opened with ``?refresh=0``; a plain link switches between the two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from sidecar.status.inventory import MetricCount, SourceInfo
from sidecar.status.sampler import RouteStats

__all__ = ["REFRESH_S", "StatusView", "render_page", "sparkline"]

REFRESH_S = 5
SPARK_WIDTH = 160
SPARK_HEIGHT = 28
NONE = "\N{EN DASH}"  # shown where there is no value
MAX_WORKERS_SHOWN = 8  # a source's workers listed on the page (all are counted)

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;gap:16px;
align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header a{color:#9cc3ff}
main{padding:8px 24px 32px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:16px 0;
padding:8px 16px 12px}
h2{font-size:15px;margin:8px 0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;vertical-align:middle}
th{font-weight:600;color:#5a6375;font-size:12px;text-transform:uppercase}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#0b7a3b;font-weight:600}.bad{color:#b42318;font-weight:600}
.muted{color:#7a8294}
pre{background:#f6f7f9;padding:8px;overflow:auto;max-height:320px}
svg.spark polyline{fill:none;stroke-width:1.5}
svg.rate polyline{stroke:#2f6fde}svg.p99 polyline{stroke:#d9822b}
svg.rate circle{fill:#2f6fde}svg.p99 circle{fill:#d9822b}
"""


@dataclass(frozen=True, slots=True)
class StatusView:
    """Everything the page shows, gathered by the handler."""

    version: str
    uptime_s: float
    ready: bool
    readiness: str
    listeners: Mapping[str, Sequence[str]]
    upstream: str
    upstream_state: str  # "answers" or why not
    upstream_ok: bool
    config_yaml: str
    routes: Mapping[str, RouteStats]
    rate_history: Mapping[str, Sequence[float]] = field(default_factory=dict)
    p99_history: Mapping[str, Sequence[float]] = field(default_factory=dict)
    sources: Sequence[SourceInfo] = ()
    store: Mapping[str, float] = field(default_factory=dict)
    merge: Mapping[str, float] = field(default_factory=dict)
    merge_series: Mapping[str, int] = field(default_factory=dict)  # merge:<target> -> series
    export: Mapping[str, float] = field(default_factory=dict)
    top_metrics: Sequence[MetricCount] = ()
    refresh: bool = True
    metrics_path: str = "/metrics"


def sparkline(values: Sequence[float], css_class: str, title: str) -> str:
    """An inline SVG polyline of ``values`` (NaN as gaps), scaled to its own maximum."""
    finite = [v for v in values if not math.isnan(v)]
    top = max(finite, default=0.0) or 1.0
    step = SPARK_WIDTH / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if math.isnan(value):
            runs.append([])
            continue
        y = SPARK_HEIGHT - 2 - (SPARK_HEIGHT - 4) * value / top
        runs[-1].append(f"{i * step:.1f},{y:.1f}")
    lines = "".join(_mark(run) for run in runs if run)
    return (
        f'<svg class="spark {css_class}" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" '
        f'viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{lines}</svg>"
    )


def _mark(run: list[str]) -> str:
    """A polyline through the points of a run; a dot for a lone point."""
    if len(run) > 1:
        return f'<polyline points="{" ".join(run)}"/>'
    x, y = run[0].split(",")
    return f'<circle cx="{x}" cy="{y}" r="1.5"/>'


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def _ms(value: float) -> str:
    return NONE if math.isnan(value) else f"{value:,.1f} ms"


def _number(value: float | None) -> str:
    if value is None:
        return f'<span class="muted">{NONE}</span>'
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _row(*cells: str, numeric: Sequence[int] = ()) -> str:
    tds = "".join(
        f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
        for i, c in enumerate(cells)
    )
    return f"<tr>{tds}</tr>"


def _table(headers: Sequence[str], rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _sidecar_section(view: StatusView) -> str:
    ready = (
        '<span class="ok">ready</span>'
        if view.ready
        else f'<span class="bad">not ready</span> ({escape(view.readiness)})'
    )
    upstream_class = "ok" if view.upstream_ok else "bad"
    listeners = ", ".join(
        f"{escape(name)} {escape(' '.join(addrs))}" for name, addrs in view.listeners.items()
    )
    rows = [
        _row("version", escape(view.version)),
        _row("uptime", _duration(view.uptime_s)),
        _row("readiness", ready),
        _row("listeners", listeners),
        _row(
            "upstream",
            f'{escape(view.upstream)} <span class="{upstream_class}">'
            f"{escape(view.upstream_state)}</span>",
        ),
    ]
    config = (
        "<details><summary>configuration in effect (secrets redacted)</summary>"
        f"<pre>{escape(view.config_yaml)}</pre></details>"
    )
    return f'<section id="sidecar"><h2>Sidecar</h2><table>{"".join(rows)}</table>{config}</section>'


def _traffic_section(view: StatusView) -> str:
    rows = []
    for path, stats in view.routes.items():
        rate = sparkline(view.rate_history.get(path, ()), "rate", f"requests/s of {path}")
        p99 = sparkline(view.p99_history.get(path, ()), "p99", f"p99 latency of {path}")
        error_class = "bad" if stats.error_ratio > 0.05 else ""
        rows.append(
            _row(
                f"<code>{escape(path)}</code>",
                f"{stats.rate:,.2f}",
                f'<span class="{error_class}">{stats.error_ratio:.1%}</span>',
                _ms(stats.p50),
                _ms(stats.p99),
                rate,
                p99,
                numeric=(1, 2, 3, 4),
            )
        )
    table = _table(
        ("route", "req/s", "5xx", "p50", "p99", "req/s, 15 min", "p99, 15 min"),
        rows,
        "No proxied requests yet (the page samples every few seconds).",
    )
    return f'<section id="traffic"><h2>Traffic, last minute</h2>{table}</section>'


def _workers_cell(workers: tuple[str, ...]) -> str:
    """The live workers of a source (ingest.workers): how many, then the first few."""
    shown = ", ".join(workers[:MAX_WORKERS_SHOWN])
    more = " …" if len(workers) > MAX_WORKERS_SHOWN else ""
    return f"{len(workers)}: <code>{escape(shown)}</code>{more}" if workers else NONE


def _ingest_section(view: StatusView) -> str:
    with_workers = any(s.workers for s in view.sources)  # the column only when aggregating
    sources = [
        _row(
            escape(s.service_name or NONE),
            escape(s.service_instance_id or NONE),
            NONE if s.last_push_age_s is None else f"{_duration(s.last_push_age_s)} ago",
            _number(s.series),
            _number(s.accepted),
            _number(s.rejected),
            *([_workers_cell(s.workers)] if with_workers else []),
            numeric=(3, 4, 5),
        )
        for s in view.sources
    ]
    heads = ("service.name", "service.instance.id", "last push", "series", "points ok", "rejected")
    table = _table(
        (*heads, "workers") if with_workers else heads,
        sources,
        "No OTLP source has pushed yet.",
    )
    totals = [_row(escape(k), _number(v), numeric=(1,)) for k, v in view.store.items()]
    merge = [_row(escape(k), _number(v), numeric=(1,)) for k, v in view.merge.items()]
    export = [_row(escape(k), _number(v), numeric=(1,)) for k, v in view.export.items()]
    parts = [
        '<section id="ingest"><h2>Ingest</h2>',
        table,
        "<h2>Store</h2>",
        _table(("", "value"), totals, "No store metrics."),
    ]
    if merge:
        parts += [
            "<h2>Merge targets (scrapes)</h2>",
            _table(("target result", "scrapes"), merge, ""),
        ]
    if view.merge_series:
        rows = [_row(escape(k), _number(v), numeric=(1,)) for k, v in view.merge_series.items()]
        parts += [
            "<h2>Merge targets (series in the last scrape)</h2>",
            _table(("source", "series"), rows, ""),
        ]
    if export:
        parts += ["<h2>OTLP export</h2>", _table(("result", "exports"), export, "")]
    return "".join(parts) + "</section>"


def _metrics_section(view: StatusView) -> str:
    rows = [
        _row(f"<code>{escape(m.metric)}</code>", escape(m.source), _number(m.series), numeric=(2,))
        for m in view.top_metrics
    ]
    table = _table(("metric", "source", "series"), rows, "No series.")
    link = '<p><a href="/debug/series?limit=100">all series counts (JSON)</a></p>'
    return f'<section id="metrics"><h2>Top metrics by series</h2>{table}{link}</section>'


def render_page(view: StatusView) -> str:
    """The whole HTML document."""
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if view.refresh else ""
    toggle = (
        '<a href="/?refresh=0">stop auto-refresh</a>'
        if view.refresh
        else '<a href="/">turn auto-refresh on</a>'
    )
    state = '<span class="ok">ready</span>' if view.ready else '<span class="bad">not ready</span>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{refresh}<title>causality-sidecar {escape(view.version)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>causality-sidecar {escape(view.version)}</h1>{state}"
        f"<span>up {_duration(view.uptime_s)}</span>{toggle}"
        f'<a href="{escape(view.metrics_path)}">{escape(view.metrics_path)}</a>'
        '<a href="/debug/config">/debug/config</a></header>'
        "<main>"
        f"{_sidecar_section(view)}{_traffic_section(view)}"
        f"{_ingest_section(view)}{_metrics_section(view)}"
        "</main></body></html>\n"
    )
