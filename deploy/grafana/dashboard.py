"""Generate deploy/grafana/causality-sidecar.json, the sidecar's Grafana dashboard.

    python deploy/grafana/dashboard.py          # rewrite the JSON beside this file
    python deploy/grafana/dashboard.py --check  # exit 1 when the JSON is not current

The panels are data (``ROWS``); this script only lays them out on Grafana's 24-column
grid. Every query goes through the ``datasource`` variable (no hard-coded uid) and is
filtered by the ``namespace`` and ``pod`` variables (target labels of the Kubernetes scrape,
as a PodMonitor or the annotation-based scrape config sets them); traffic panels also by
``route`` (the proxy's ``path`` label). Metric names: design §6.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("causality-sidecar.json")
UID = "causality-sidecar"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
POD = 'namespace=~"$namespace", pod=~"$pod"'
# The proxy's own series carry reporter="sidecar". An app's own http.request.* (pushed over
# OTLP or merged from its /metrics) shares the names (design §6) but not that label: shown
# in the pipeline row, never summed with the proxy's.
PROXY = 'reporter="sidecar"'
ROUTE = POD + ", " + PROXY + ', path=~"$route"'
PUSHED = POD + ', reporter!="sidecar"'
RATE = "[$__rate_interval]"
PANEL_HEIGHT = 8


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A time series panel (or another type) with its queries and display unit."""

    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    width: int = 8
    kind: str = "timeseries"
    stack: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def rate(metric: str, selector: str = POD) -> str:
    """``rate(metric{selector}[$__rate_interval])``."""
    return f"rate({metric}{{{selector}}}{RATE})"


def summed_rate(metric: str, by: str, selector: str = POD) -> str:
    """``sum by (by) (rate(...))``."""
    return f"sum by ({by}) ({rate(metric, selector)})"


def quantile(q: float, histogram: str, by: str, selector: str = POD) -> str:
    """``histogram_quantile`` of a classic histogram, per ``by``."""
    return f"histogram_quantile({q}, {summed_rate(histogram + '_bucket', 'le, ' + by, selector)})"


def quantiles(
    histogram: str, by: str, selector: str = POD, qs: tuple[float, ...] = (0.5, 0.99)
) -> tuple[Query, ...]:
    """One query per quantile, legend ``p50 {{by}}`` etc."""
    legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))
    return tuple(
        Query(quantile(q, histogram, by, selector), f"p{round(q * 100)} {legend}") for q in qs
    )


def ratio_or_zero(part: str, whole: str, by: str) -> str:
    """``part / whole`` per ``by``, 0 where ``part`` has no series yet (instead of no data)."""
    return f"(sum by ({by}) ({part}) or 0 * sum by ({by}) ({whole})) / sum by ({by}) ({whole})"


ALL_REQUESTS = rate("http_request_total", ROUTE)

TRAFFIC = (
    Panel(
        "Request rate by route and method",
        (Query(summed_rate("http_request_total", "path, method", ROUTE), "{{method}} {{path}}"),),
        unit="reqps",
        description="Requests per second through the proxy (http_request_total), per route "
        "template and method.",
    ),
    Panel(
        "Requests by status",
        (Query(summed_rate("http_request_total", "status", ROUTE), "{{status}}"),),
        unit="reqps",
        stack=True,
        description="Requests per second by the status code the sidecar sent (499: the "
        "client went away; 502/504: the upstream failed or was too slow).",
    ),
    Panel(
        "Error ratio by route",
        (
            Query(
                ratio_or_zero(
                    rate("http_request_total", ROUTE + ', status=~"5.."'), ALL_REQUESTS, "path"
                ),
                "5xx {{path}}",
            ),
            Query(
                ratio_or_zero(rate("http_request_errors_total", ROUTE), ALL_REQUESTS, "path"),
                ">=400 {{path}}",
            ),
        ),
        unit="percentunit",
        description="Share of requests answered 5xx (what SidecarHighErrorRatio alerts on) "
        "and share answered with any status >= 400 (http_request_errors_total).",
    ),
    Panel(
        "Latency p50 / p90 / p99 by route",
        quantiles("http_request_duration_milliseconds", "path", ROUTE, (0.5, 0.9, 0.99)),
        unit="ms",
        width=12,
        description="From the http_request_duration_milliseconds histogram: request start "
        "to the last byte of the response.",
    ),
    Panel(
        "Time to first byte p50 / p99 by route",
        quantiles("http_request_time_to_first_byte_milliseconds", "path", ROUTE),
        unit="ms",
        width=12,
        description="Until the upstream's response headers arrived: the app's think time.",
    ),
    Panel(
        "In-flight requests",
        (Query(f"sum by (pod) (http_requests_in_flight{{{POD}, {PROXY}}})", "{{pod}}"),),
        description="Requests being proxied right now, per pod (proxy.max_in_flight caps it).",
    ),
    Panel(
        "Request and response body size p90",
        (
            Query(quantile(0.9, "http_request_body_size_bytes", "path", ROUTE), "request {{path}}"),
            Query(
                quantile(0.9, "http_response_body_size_bytes", "path", ROUTE), "response {{path}}"
            ),
        ),
        unit="bytes",
    ),
    Panel(
        "Body throughput",
        (
            Query(f"sum ({rate('http_request_body_size_bytes_sum', ROUTE)})", "request"),
            Query(f"sum ({rate('http_response_body_size_bytes_sum', ROUTE)})", "response"),
        ),
        unit="Bps",
    ),
    Panel(
        "Proxy errors by reason",
        (Query(summed_rate("sidecar_proxy_errors_total", "reason"), "{{reason}}"),),
        unit="ops",
        width=24,
        stack=True,
        description="upstream_connect_error: app not listening (502); upstream_timeout (504); "
        "upstream_reset; client_disconnect (499); request_too_large (413); overloaded (503); "
        "bad_request.",
    ),
)

PIPELINE = (
    Panel(
        "Service HTTP requests (the app's own)",
        (
            Query(
                summed_rate("http_request_total", "service_name, path", PUSHED),
                "{{service_name}} {{path}}",
            ),
        ),
        unit="reqps",
        description="The services' own http.request.total, pushed to the sidecar over OTLP "
        'or merged from their /metrics: every series without reporter="sidecar" (not the '
        "proxy's measurement: see the Traffic row).",
    ),
    Panel(
        "Service HTTP 5xx ratio (the app's own)",
        (
            Query(
                ratio_or_zero(
                    rate("http_request_total", PUSHED + ', status=~"5.."'),
                    rate("http_request_total", PUSHED),
                    "service_name",
                ),
                "{{service_name}}",
            ),
        ),
        unit="percentunit",
    ),
    Panel(
        "Service HTTP latency p99 (the app's own)",
        (
            Query(
                quantile(0.99, "http_request_duration_milliseconds", "service_name", PUSHED),
                "{{service_name}}",
            ),
        ),
        unit="ms",
    ),
    Panel(
        "NATS messages processed",
        (Query(summed_rate("nats_messages_processed_total", "service_name"), "{{service_name}}"),),
        unit="ops",
    ),
    Panel(
        "NATS batch size p50 / p99",
        quantiles("nats_batch_size", "service_name"),
    ),
    Panel(
        "NATS flush and ack latency p99",
        (
            Query(
                quantile(0.99, "nats_flush_latency_milliseconds", "service_name"),
                "flush {{service_name}}",
            ),
            Query(
                quantile(0.99, "nats_ack_latency_milliseconds", "service_name"),
                "ack {{service_name}}",
            ),
        ),
        unit="ms",
    ),
    Panel(
        "S3 files written",
        (Query(summed_rate("s3_files_written_total", "service_name"), "{{service_name}}"),),
        unit="ops",
    ),
    Panel(
        "S3 file size p50 / p99",
        quantiles("s3_file_size_bytes", "service_name"),
        unit="bytes",
    ),
    Panel(
        "Duplicates dropped",
        (Query(summed_rate("dedup_dropped_total", "service_name"), "{{service_name}}"),),
        unit="ops",
    ),
    Panel(
        "DLQ depth",
        (Query(f"sum by (service_name) (dlq_depth{{{POD}}})", "{{service_name}}"),),
        description="Messages waiting in the dead-letter queue (CausalityDlqDepthGrowing "
        "fires when it keeps growing for 15 minutes).",
    ),
    Panel(
        "Rules evaluated and alerts fired",
        (
            Query(summed_rate("rules_evaluated_total", "service_name"), "rules {{service_name}}"),
            Query(summed_rate("alerts_fired_total", "service_name"), "alerts {{service_name}}"),
        ),
        unit="ops",
    ),
    Panel(
        "Webhook deliveries",
        (
            Query(summed_rate("webhook_success_total", "service_name"), "success {{service_name}}"),
            Query(summed_rate("webhook_failure_total", "service_name"), "failure {{service_name}}"),
        ),
        unit="ops",
    ),
)

EVENTS = (
    Panel(
        "Events by type",
        (Query(summed_rate("causality_events_total", "type"), "{{type}}"),),
        unit="ops",
        stack=True,
        description="Events seen on the gateway's ingest routes (events.enabled).",
    ),
    Panel(
        "Event batch size p50 / p99",
        quantiles("causality_event_batch_size", "pod"),
    ),
    Panel(
        "Duplicate events by type",
        (Query(summed_rate("causality_events_duplicate_total", "type"), "{{type}}"),),
        unit="ops",
        description="Idempotency key seen again within events.dedup_window.",
    ),
    Panel(
        "Events without idempotency key, rejected, undecodable",
        (
            Query(
                f"sum ({rate('causality_events_missing_idempotency_key_total')})",
                "missing idempotency key",
            ),
            Query(f"sum ({rate('causality_events_rejected_total')})", "rejected by the gateway"),
            Query(
                summed_rate("causality_event_decode_errors_total", "reason"),
                "decode error {{reason}}",
            ),
        ),
        unit="ops",
        width=16,
    ),
)

SIDECAR = (
    Panel(
        "Sidecars",
        (Query(f"max by (namespace, pod, version) (sidecar_build_info{{{POD}}})", ""),),
        kind="table",
        width=24,
        description="One line per scraped sidecar and its version.",
        options={"format": "table", "instant": True},
    ),
    Panel(
        "OTLP requests by encoding and code",
        (
            Query(
                summed_rate("sidecar_otlp_requests_total", "encoding, code"),
                "{{encoding}} {{code}}",
            ),
        ),
        unit="reqps",
    ),
    Panel(
        "OTLP data points received and rejected",
        (
            Query(f"sum ({rate('sidecar_otlp_data_points_received_total')})", "received"),
            Query(
                summed_rate("sidecar_otlp_data_points_rejected_total", "reason"),
                "rejected {{reason}}",
            ),
        ),
        unit="ops",
    ),
    Panel(
        "Series held by source",
        (Query(f"sum by (source) (sidecar_series{{{POD}}})", "{{source}}"),),
        stack=True,
    ),
    Panel(
        "Series expired and cardinality overflow",
        (
            Query(f"sum ({rate('sidecar_series_expired_total')})", "expired"),
            Query(
                summed_rate("sidecar_cardinality_overflow_total", "metric"), "overflow {{metric}}"
            ),
        ),
        unit="ops",
    ),
    Panel(
        "Merge scrapes and conflicts",
        (
            Query(
                summed_rate("sidecar_merge_scrapes_total", "target, result"),
                "{{target}} {{result}}",
            ),
            Query(summed_rate("sidecar_merge_conflicts_total", "kind"), "conflict {{kind}}"),
        ),
        unit="ops",
    ),
    Panel(
        "OTLP export results",
        (Query(summed_rate("sidecar_export_total", "result"), "{{result}}"),),
        unit="ops",
    ),
    Panel(
        "CPU",
        (Query(f"sum by (pod) ({rate('process_cpu_seconds_total')})", "{{pod}}"),),
        unit="percentunit",
        description="CPU seconds per second used by the sidecar process (1 = one core).",
    ),
    Panel(
        "Memory",
        (Query(f"sum by (pod) (process_resident_memory_bytes{{{POD}}})", "{{pod}}"),),
        unit="bytes",
        description="Resident set size of the sidecar process.",
    ),
)

ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    ("Traffic", TRAFFIC),
    ("Causality pipeline", PIPELINE),
    ("Causality events", EVENTS),
    ("Sidecar", SIDECAR),
)


def _query_variable(name: str, label: str, query: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,  # on time range change
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        **extra,
    }


def templating() -> dict[str, Any]:
    """The datasource, namespace, pod and route variables."""
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
                "regex": "",
            },
            _query_variable(
                "namespace", "Namespace", "label_values(sidecar_build_info, namespace)"
            ),
            _query_variable(
                "pod", "Pod", 'label_values(sidecar_build_info{namespace=~"$namespace"}, pod)'
            ),
            _query_variable(
                "route", "Route", f"label_values(http_request_total{{{POD}, {PROXY}}}, path)"
            ),
        ]
    }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "refId": chr(ord("A") + i),
            "range": not panel.options.get("instant", False),
            "instant": panel.options.get("instant", False),
            **({"format": panel.options["format"]} if "format" in panel.options else {}),
        }
        for i, query in enumerate(panel.queries)
    ]
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
    }
    if panel.kind == "timeseries":
        stacking = {"mode": "normal" if panel.stack else "none", "group": "A"}
        body["fieldConfig"]["defaults"]["custom"] = {"stacking": stacking, "fillOpacity": 10}
        body["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return body


def panels() -> list[dict[str, Any]]:
    """Rows and their panels, laid out left to right, top to bottom."""
    out: list[dict[str, Any]] = []
    y = 0
    panel_id = 1
    for title, row in ROWS:
        out.append(
            {
                "id": panel_id,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        for panel in row:
            if x + panel.width > 24:
                x, y = 0, y + PANEL_HEIGHT
            out.append(_panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
        y += PANEL_HEIGHT
    return out


def dashboard() -> dict[str, Any]:
    """The whole dashboard model."""
    return {
        "uid": UID,
        "title": "causality-sidecar",
        "description": "RED metrics of the proxy, the Causality pipeline pushed over OTLP, "
        "and the sidecar itself (generated by deploy/grafana/dashboard.py).",
        "tags": ["causality", "sidecar", "prometheus"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": templating(),
        "panels": panels(),
    }


def render() -> str:
    """The dashboard as the JSON text committed beside this script."""
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write the JSON, or with ``--check`` report whether it is current."""
    text = render()
    if "--check" in argv:
        current = OUTPUT.exists() and OUTPUT.read_text() == text
        if not current:
            print(f"{OUTPUT} is not current: run python {__file__}", file=sys.stderr)
        return 0 if current else 1
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
