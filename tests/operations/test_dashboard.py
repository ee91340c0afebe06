"""deploy/grafana/causality-sidecar.json: structure, coverage of design §6, valid PromQL.

The PromQL check runs every expression (variables substituted by values their regex
matchers accept, ``$__rate_interval`` by ``1m``) against a real Prometheus; an empty
Prometheus is enough to prove parsing and typing. That the expressions return data after
demo traffic is tests/operations/test_dashboard_demo.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import dashboard
from tests.support.prometheus import PrometheusFactory, PromQLError

HISTOGRAMS = {
    "http_request_duration_milliseconds",
    "http_request_time_to_first_byte_milliseconds",
    "http_request_body_size_bytes",
    "http_response_body_size_bytes",
    "nats_batch_size",
    "nats_flush_latency_milliseconds",
    "nats_ack_latency_milliseconds",
    "s3_file_size_bytes",
    "causality_event_batch_size",
}
SERIES = {
    "http_request_total",
    "http_request_errors_total",
    "http_requests_in_flight",
    "sidecar_proxy_errors_total",
    "nats_messages_processed_total",
    "s3_files_written_total",
    "dedup_dropped_total",
    "dlq_depth",
    "rules_evaluated_total",
    "alerts_fired_total",
    "webhook_success_total",
    "webhook_failure_total",
    "causality_events_total",
    "causality_events_duplicate_total",
    "causality_events_missing_idempotency_key_total",
    "causality_events_rejected_total",
    "causality_event_decode_errors_total",
    "sidecar_build_info",
    "sidecar_otlp_requests_total",
    "sidecar_otlp_data_points_received_total",
    "sidecar_otlp_data_points_rejected_total",
    "sidecar_series",
    "sidecar_series_expired_total",
    "sidecar_cardinality_overflow_total",
    "sidecar_merge_scrapes_total",
    "sidecar_merge_conflicts_total",
    "sidecar_export_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
}
# design §6, as Prometheus stores it
CATALOGUE = SERIES | {
    f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
}
ROWS = ("Traffic", "Causality pipeline", "Causality events", "Sidecar")
# any value the variables' regex matchers accept
REGEX_VALUES = {"namespace": ".*", "pod": ".*", "route": ".*", "datasource": "prometheus"}
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return dashboard.load()


def test_json_is_what_the_generator_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(dashboard.GENERATOR), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_rows_and_variables(model: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard.all_panels(model) if p["type"] == "row"]
    assert rows == list(ROWS)
    variables = dashboard.variables(model)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    labels = {name: dashboard.variable_label(model, name) for name in ("namespace", "pod", "route")}
    assert labels == {"namespace": "namespace", "pod": "pod", "route": "path"}
    for name in ("namespace", "pod", "route"):
        assert variables[name]["datasource"] == DATASOURCE_REF, name
        assert variables[name]["includeAll"], name
        assert variables[name]["allValue"] == ".*", name


def test_every_panel_queries_through_the_datasource_variable(model: dict[str, Any]) -> None:
    panels = dashboard.query_panels(model)
    assert len(panels) >= 30
    for panel in panels:
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']}: empty query"
            assert target["datasource"] == DATASOURCE_REF, panel["title"]


def _uids(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        found = [(path, node["uid"])] if "uid" in node else []
        return found + [pair for k, v in node.items() for pair in _uids(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [pair for i, v in enumerate(node) for pair in _uids(v, f"{path}[{i}]")]
    return []


def test_no_hard_coded_datasource_uid(model: dict[str, Any]) -> None:
    uids = {(path, uid) for path, uid in _uids(model) if path}  # "" is the dashboard's own uid
    assert uids, "expected datasource references"
    assert {uid for _, uid in uids} == {"${datasource}"}


def test_panel_ids_unique_and_grid_fits(model: dict[str, Any]) -> None:
    panels = list(dashboard.all_panels(model))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_every_catalogue_metric_is_on_the_dashboard(model: dict[str, Any]) -> None:
    used = {name for e in dashboard.panel_expressions(model) for name in e.metric_names}
    wanted = SERIES | {f"{h}_bucket" for h in HISTOGRAMS}
    assert wanted - used == set()


def test_expressions_only_use_catalogue_metrics(model: dict[str, Any]) -> None:
    for expr in dashboard.panel_expressions(model) + dashboard.variable_expressions(model):
        assert expr.metric_names, f"{expr.where}: selects no metric"
        assert expr.metric_names <= CATALOGUE, f"{expr.where}: {expr.metric_names - CATALOGUE}"


def test_unknown_variables_are_caught() -> None:
    expr = dashboard.Expression("x", 'up{namespace=~"$namepsace"}')
    with pytest.raises(KeyError, match="namepsace"):
        expr.substituted(REGEX_VALUES)
    assert dashboard.Expression("x", "rate(up[$__rate_interval])").substituted({}) == (
        "rate(up[1m])"
    )


def test_every_expression_is_valid_promql(
    model: dict[str, Any], prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    prom = prometheus_factory([])
    expressions = dashboard.panel_expressions(model) + dashboard.variable_expressions(model)
    errors = []
    for expr in expressions:
        try:
            prom.query(expr.substituted(REGEX_VALUES))
        except PromQLError as err:
            errors.append(f"{expr.where}: {err}")
    assert not errors, "\n".join(errors)
    assert len(expressions) >= 50


def test_the_check_catches_invalid_promql(prometheus_factory: PrometheusFactory) -> None:
    prom = prometheus_factory([])
    with pytest.raises(PromQLError, match="bad_data"):
        prom.query("sum by (path) (rate(http_request_total[1m])")
