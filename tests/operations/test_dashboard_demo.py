"""Every PromQL expression of the dashboard, against a real Prometheus that scraped the demo.

``causality-sidecar demo`` runs as a subprocess on free loopback ports (events inspection
on, so the events row has data too); the test sends its own traffic through the proxy on
top of the demo's trickle (every demo route, a POST body, a gateway event batch, a client
that hangs up), and a real Prometheus scrapes the admin port every second with the target
labels a Kubernetes scrape adds (``namespace``, ``pod``). Then each expression runs with
the dashboard variables set to those values (``route`` = ``.*``, ``$__rate_interval`` = 1m):

- an expression Prometheus rejects fails the test (the alert and recording rules' too);
- an expression that returns nothing although a metric it reads has series fails the test
  ("returns nothing where the demo produces data": a wrong label or selector);
- the metrics the demo must produce (``DEMO_PRODUCES``) must all be there.

Metrics the demo does not produce (merge, export, overflow, ...) are listed in the report
the test prints, which says for every expression how many series it returned.
"""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import dashboard
from tests.support.process import SidecarProcess
from tests.support.prometheus import (
    PrometheusFactory,
    PrometheusServer,
    PromQLError,
    static_scrape_config,
)

pytestmark = pytest.mark.slow

NAMESPACE = "demo-ns"
POD = "demo-pod"
VALUES = {"namespace": NAMESPACE, "pod": POD, "route": ".*", "datasource": "prometheus"}
# what `causality-sidecar demo` plus this test's traffic must put on /metrics
DEMO_PRODUCES = (
    "http_request_total",
    "http_request_errors_total",
    "http_request_duration_milliseconds_bucket",
    "http_request_time_to_first_byte_milliseconds_bucket",
    "http_request_body_size_bytes_bucket",
    "http_response_body_size_bytes_bucket",
    "http_requests_in_flight",
    "sidecar_proxy_errors_total",
    "nats_messages_processed_total",
    "nats_batch_size_bucket",
    "nats_flush_latency_milliseconds_bucket",
    "nats_ack_latency_milliseconds_bucket",
    "s3_files_written_total",
    "s3_file_size_bytes_bucket",
    "dedup_dropped_total",
    "dlq_depth",
    "rules_evaluated_total",
    "alerts_fired_total",
    "webhook_success_total",
    "webhook_failure_total",
    "causality_events_total",
    "causality_event_batch_size_bucket",
    "causality_events_duplicate_total",
    "causality_event_decode_errors_total",
    "sidecar_build_info",
    "sidecar_otlp_requests_total",
    "sidecar_otlp_data_points_received_total",
    "sidecar_series",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
)
TRAFFIC_PATHS = ("/", "/users/7", "/users/42", "/users/4242", "/slow?ms=20", "/error", "/nope")
PRODUCE_TIMEOUT_S = 40.0
RULES = dashboard.ROOT / "deploy" / "prometheus" / "rules.yaml"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one dashboard expression returned."""

    where: str
    expr: str
    series: int | None  # None: Prometheus rejected it
    error: str = ""
    present: tuple[str, ...] = ()  # metrics it reads that have series


def _request(url: str, data: bytes | None = None, content_type: str = "") -> int | str:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        err.read()
        return int(err.code)
    except OSError as err:  # the proxy is not there (yet): say so in the report
        return f"{type(err).__name__}: {err}"


def _hang_up(port: int) -> None:
    """A client that sends a request for a slow answer and goes away (status 499)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: demo\r\n\r\n")
        with contextlib.suppress(OSError):
            sock.settimeout(0.2)
            sock.recv(1)


def send_traffic(proxy_port: int, events: bytes) -> dict[str, int | str]:
    """Every demo route, a POST body, gateway event requests (the same batch each time:
    duplicates from the second call on; one undecodable body) and a client that hangs up;
    the answers by request."""
    base = f"http://127.0.0.1:{proxy_port}"
    answers: dict[str, int | str] = {}
    for path in TRAFFIC_PATHS:
        answers[f"GET {path}"] = _request(base + path)
    answers["POST /echo"] = _request(base + "/echo", b"x" * 2048, "application/octet-stream")
    answers["POST /v1/events/batch"] = _request(
        base + "/v1/events/batch", events, "application/json"
    )
    answers["POST /v1/events/ingest (bad)"] = _request(
        base + "/v1/events/ingest", b"{not json", "application/json"
    )
    with contextlib.suppress(OSError):
        _hang_up(proxy_port)
    return answers


def _present(prom: PrometheusServer, metric: str) -> bool:
    selector = f'{{__name__="{metric}", namespace="{NAMESPACE}", pod="{POD}"}}'
    return not prom.query(f"count({selector})").is_empty


def _wait_for_demo_data(prom: PrometheusServer, proxy_port: int) -> dict[str, int | str]:
    """Send traffic until every DEMO_PRODUCES metric is there, or the deadline passes."""
    from sidecar.demo.samples import batch_body, envelopes

    events = batch_body(list(envelopes(5)))
    deadline = time.monotonic() + PRODUCE_TIMEOUT_S
    answers = send_traffic(proxy_port, events)
    while time.monotonic() < deadline:
        if all(_present(prom, m) for m in DEMO_PRODUCES):
            break
        answers = send_traffic(proxy_port, events)
        prom.wait_for_scrapes(1)
    send_traffic(proxy_port, events)
    prom.wait_for_scrapes(3)  # rate() over 1m needs two samples after the last new series
    return answers


def _run(prom: PrometheusServer, expr: dashboard.Expression) -> Outcome:
    text = expr.substituted(VALUES)
    present = tuple(sorted(m for m in expr.metric_names if _present(prom, m)))
    try:
        result = prom.query(text)
    except PromQLError as err:
        return Outcome(expr.where, text, None, str(err), present)
    return Outcome(expr.where, text, len(result.result), "", present)


def _rule_expressions() -> list[dashboard.Expression]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        dashboard.Expression(f"rule {rule.get('alert') or rule['record']}", rule["expr"])
        for group in groups
        for rule in group["rules"]
    ]


def _report(outcomes: list[Outcome], missing: list[str], answers: dict[str, Any]) -> str:
    lines = [f"traffic answers: {answers}", f"demo metrics missing: {missing or 'none'}"]
    for o in outcomes:
        state = "INVALID" if o.series is None else f"{o.series} series"
        reads = ",".join(o.present) or "-"
        lines.append(f"{state:>10} | reads present: {reads} | {o.where} | {o.error or o.expr}")
    return "\n".join(lines)


def test_every_dashboard_expression_returns_data_after_demo_traffic(
    demo: SidecarProcess, prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    scrape = static_scrape_config(
        "causality-sidecar", demo.admin, labels={"namespace": NAMESPACE, "pod": POD}
    )
    prom = prometheus_factory([scrape])
    prom.wait_for_targets_up()
    answers = _wait_for_demo_data(prom, demo.ports["proxy"])

    model = dashboard.load()
    outcomes = [_run(prom, e) for e in dashboard.panel_expressions(model)]
    outcomes += [_run(prom, e) for e in dashboard.variable_expressions(model)]
    # the rules' expressions too: some errors (duplicate label sets, many-to-many
    # matching) only show with real series; empty is fine there (nothing should alert)
    rule_outcomes = [_run(prom, e) for e in _rule_expressions()]
    missing = [m for m in DEMO_PRODUCES if not _present(prom, m)]
    report = _report(outcomes, missing, answers)
    (tmp_path / "dashboard-report.txt").write_text(report)
    print(report)

    invalid = [o for o in outcomes + rule_outcomes if o.series is None]
    empty = [o for o in outcomes if o.series == 0 and o.present]
    assert not invalid, "Prometheus rejects:\n" + "\n".join(
        f"{o.where}: {o.error}" for o in invalid
    )
    assert not empty, "no data although the demo produces its metrics:\n" + "\n".join(
        f"{o.where}: {o.expr}" for o in empty
    )
    assert not missing, f"the demo does not produce {missing} (report above)"
