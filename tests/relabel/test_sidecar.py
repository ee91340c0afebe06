"""Relabel rules in a running sidecar: against a real Prometheus's own relabelling, on
the ingest path (drop before store, with the OpenTelemetry SDK pushing), on reload and
on the export path."""

from __future__ import annotations

import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, Gauge

from sidecar.config import config_from_dict
from sidecar.export import unified_view
from sidecar.relabel.families import Relabeller
from sidecar.relabel.rules import compile_rules
from sidecar.unified import UnifiedCollector
from tests.support.node_exporter import NodeExporter, node_exporter
from tests.support.process import SidecarProcess, local_ports, run_sidecar, wait_until
from tests.support.prometheus import (
    PrometheusFactory,
    check_metrics,
    poll,
    prometheus_factory,
    static_scrape_config,
)

__all__ = ["node_exporter", "prometheus_factory"]  # fixtures

# the same rules, ours and as Prometheus's metric_relabel_configs (match → source_labels)
RULES: list[dict[str, Any]] = [
    {"action": "drop", "match": {"__name__": "node_(cpu|disk|network|scrape)_.*"}},
    {"action": "replace", "source_labels": ["__name__"], "regex": "node_memory_(.*)_bytes",
     "target_label": "memory_kind", "replacement": "$1"},
    {"action": "labelmap", "regex": "(device|fstype)", "replacement": "fs_$1"},
    {"action": "labeldrop", "regex": "device|fstype"},
    {"action": "replace", "source_labels": ["__name__"], "regex": "node_load(.*)",
     "target_label": "__name__", "replacement": "node_loadavg$1"},
    {"action": "keep", "source_labels": ["__name__", "memory_kind"], "separator": "@",
     "regex": "node_.*@(|Mem.*|Swap.*)"},
]  # fmt: skip
PROMETHEUS_RULES: list[dict[str, Any]] = [
    {"action": "drop", "source_labels": ["__name__"], "regex": "node_(cpu|disk|network|scrape)_.*"},
    *RULES[1:],
]


def sidecar_config(
    path: Path, ports: dict[str, int], rules: list[dict[str, Any]], **extra: Any
) -> None:
    config = {
        "proxy": {"listen": f"127.0.0.1:{ports['proxy']}", "upstream": "http://127.0.0.1:9"},
        "admin": {"listen": f"127.0.0.1:{ports['admin']}"},
        "ingest": {"listen": f"127.0.0.1:{ports['ingest']}"},
        "relabel": rules,
        **extra,
    }
    path.write_text(yaml.safe_dump(config))


def scrape(sidecar: SidecarProcess) -> str:
    with urllib.request.urlopen(sidecar.url("/metrics"), timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


@pytest.mark.slow
def test_a_real_prometheus_relabelling_the_same_exposition_stores_the_same_series(
    node_exporter: NodeExporter, prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    ports = local_ports("proxy", "admin", "ingest")
    config = tmp_path / "sidecar.yaml"
    merge = {"targets": [{"name": "node", "url": node_exporter.url}]}
    sidecar_config(config, ports, RULES, merge=merge)
    admin = f"127.0.0.1:{ports['admin']}"
    with run_sidecar(["run", "--config", str(config)], admin=admin) as sidecar:
        served = scrape(sidecar)
        check = check_metrics(served)
        with urllib.request.urlopen(node_exporter.url, timeout=10) as response:
            own = check_metrics(response.read())  # node_exporter's own lint findings
        assert check.returncode in (0, 3)  # 1: not parseable
        assert set(check.unexpected) <= set(own.findings)
        prom = prometheus_factory([
            static_scrape_config("direct", node_exporter.address,
                                 metric_relabel_configs=PROMETHEUS_RULES),
            static_scrape_config("via", admin),
        ])  # fmt: skip
        prom.wait_for_targets_up(count=2)
        prom.wait_for_scrapes(2)

        def stored(job: str) -> set[frozenset[tuple[str, str]]]:
            result = prom.query(f'last_over_time({{job="{job}",__name__=~"node_.*"}}[3s])')
            drop = {"job", "instance"}
            return {frozenset((k, v) for k, v in s.items() if k not in drop) for s in result.series}

        def same() -> tuple[set[Any], set[Any]] | None:
            direct, via = stored("direct"), stored("via")
            return (direct, via) if direct and direct == via else None

        try:
            direct, _ = poll(same, 30, lambda: "the same series stored by both jobs")
        except TimeoutError:
            direct, via = stored("direct"), stored("via")
            pytest.fail(
                f"only direct: {sorted(direct - via)[:5]}; only via: {sorted(via - direct)[:5]}"
            )
        names = {dict(s)["__name__"] for s in direct}
        assert "node_loadavg1" in names  # renamed
        assert not any(
            n.startswith(("node_cpu_", "node_load1")) for n in names if n != "node_loadavg1"
        )
        assert any("fs_device" in dict(s) for s in direct)  # labelmap + labeldrop
        assert not any("device" in dict(s) for s in direct)
        assert {dict(s).get("memory_kind", "") for s in direct} - {""}  # replace from the name

        # SIGHUP with another rule set: applied to the next scrape
        sidecar_config(config, ports, [{"action": "drop", "match": {"__name__": "node_load.*"}}],
                       merge=merge)  # fmt: skip
        sidecar.proc.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            text = scrape(sidecar)
            return "node_cpu_seconds_total" in text and "node_load" not in text

        wait_until(reloaded, 15, "the new rules after SIGHUP")
        assert "applied: relabel" in sidecar.logs()


def push(url: str) -> None:
    """An app's OpenTelemetry SDK exporting once to ``url``."""
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=url), export_interval_millis=3_600_000
    )
    provider = MeterProvider(
        resource=Resource.create({"service.name": "app"}), metric_readers=[reader]
    )
    meter = provider.get_meter("app.lib")
    orders = meter.create_counter("orders", description="Orders")
    for shop in ("a", "b", "c"):
        orders.add(5, {"shop": shop})
    meter.create_histogram("order.value", unit="By", description="Value").record(300, {"shop": "a"})
    meter.create_up_down_counter("queue.depth", description="Depth").add(2)
    provider.shutdown()  # flushes the reader


def series_held(text: str) -> float:
    found = re.search(r'^sidecar_series\{[^}]*source="ingest"[^}]*\} (\S+)$', text, re.MULTILINE)
    assert found is not None, text[-2000:]
    return float(found.group(1))


@pytest.mark.parametrize(
    ("rules", "held"),
    [([], 6), ([{"action": "drop", "source": "ingest", "match": {"__name__": "orders_total"}}], 3)],
    ids=["no-rules", "orders-dropped"],
)
def test_a_series_dropped_on_ingest_is_never_stored(
    tmp_path: Path, rules: list[dict[str, Any]], held: int
) -> None:
    """3 orders series + order_value + queue_depth + target_info = 6 held without rules;
    dropping orders leaves 3 in the store (not only out of the exposition)."""
    ports = local_ports("proxy", "admin", "ingest")
    config = tmp_path / "sidecar.yaml"
    sidecar_config(config, ports, rules)
    with run_sidecar(
        ["run", "--config", str(config)], admin=f"127.0.0.1:{ports['admin']}"
    ) as sidecar:
        push(f"http://127.0.0.1:{ports['ingest']}/v1/metrics")
        wait_until(lambda: "queue_depth" in scrape(sidecar), 10, "the push stored")
        text = scrape(sidecar)
        assert series_held(text) == held
        assert ("orders_total{" in text) == (not rules)
        assert "order_value_bytes_bucket" in text
        check = check_metrics(text)
        assert check.passes, check.unexpected


async def test_the_export_path_sees_the_relabelled_view() -> None:
    registry = CollectorRegistry()
    Gauge("go_goroutines", "Goroutines", registry=registry).set(3)
    Gauge("app_queue", "Queue", ["queue"], registry=registry).labels("a").set(1)
    rules = config_from_dict({"relabel": [
        {"action": "drop", "match": {"__name__": "go_.*"}},
        {"source_labels": ["queue"], "target_label": "queue_name"},
        {"action": "labeldrop", "regex": "queue"},
    ]}).relabel  # fmt: skip
    unified = UnifiedCollector([registry], relabel=Relabeller(compile_rules(rules)))
    exported = await unified_view(unified)()
    assert 'app_queue{queue_name="a"} 1.0' in exported
    assert "go_goroutines" not in exported


def test_a_broken_result_is_dropped_and_counted_in_the_running_sidecar(tmp_path: Path) -> None:
    """``le`` dropped from the ingested histogram: its series go, counted as ``shape``;
    the counter's other reasons are at 0 from the start."""
    ports = local_ports("proxy", "admin", "ingest")
    config = tmp_path / "sidecar.yaml"
    sidecar_config(config, ports, [{"action": "labeldrop", "source": "ingest", "regex": "le"}])
    with run_sidecar(
        ["run", "--config", str(config)], admin=f"127.0.0.1:{ports['admin']}"
    ) as sidecar:
        text = scrape(sidecar)
        assert re.search(
            r'^sidecar_relabel_dropped_total\{[^}]*reason="shape"[^}]*\} 0\.0$', text, re.M
        )
        push(f"http://127.0.0.1:{ports['ingest']}/v1/metrics")
        wait_until(lambda: "queue_depth" in scrape(sidecar), 10, "the push stored")
        text = scrape(sidecar)
        assert "order_value_bytes" not in text
        assert "orders_total{" in text
        shape = re.search(
            r'^sidecar_relabel_dropped_total\{[^}]*reason="shape"[^}]*\} (\S+)$', text, re.M
        )
        assert shape is not None
        assert float(shape.group(1)) >= 1
        check = check_metrics(text)
        assert check.passes, check.unexpected


def test_sighup_swaps_the_ingest_filter(tmp_path: Path) -> None:
    """Dropped before store, then (rules removed by SIGHUP) stored from the next push."""
    ports = local_ports("proxy", "admin", "ingest")
    config = tmp_path / "sidecar.yaml"
    sidecar_config(config, ports, [{"action": "drop", "match": {"__name__": "orders_total"}}])
    url = f"http://127.0.0.1:{ports['ingest']}/v1/metrics"
    with run_sidecar(
        ["run", "--config", str(config)], admin=f"127.0.0.1:{ports['admin']}"
    ) as sidecar:
        push(url)
        wait_until(lambda: "queue_depth" in scrape(sidecar), 10, "the push stored")
        assert series_held(scrape(sidecar)) == 3
        sidecar_config(config, ports, [])
        sidecar.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "applied: relabel" in sidecar.logs(), 10, "the reload")
        push(url)
        wait_until(lambda: "orders_total{" in scrape(sidecar), 10, "orders stored")
        assert series_held(scrape(sidecar)) == 6


def test_the_issues_rules_run_before_the_store_and_a_reload_starts_it_anew(
    tmp_path: Path,
) -> None:
    """The OTel SDK's push is stored relabelled (the scrape relabels nothing more); a
    SIGHUP with other ingest rules empties the store, and the next push is stored under
    the new rules (no series of the old ones left)."""
    ports = local_ports("proxy", "admin", "ingest")
    config = tmp_path / "sidecar.yaml"
    rules: list[dict[str, Any]] = [
        {"action": "drop", "match": {"__name__": "go_.*"}},
        {"action": "labeldrop", "regex": "otel_scope_.*"},
        {"action": "replace", "source_labels": ["service_name"], "target_label": "job"},
    ]
    sidecar_config(config, ports, rules)
    url = f"http://127.0.0.1:{ports['ingest']}/v1/metrics"
    with run_sidecar(
        ["run", "--config", str(config)], admin=f"127.0.0.1:{ports['admin']}"
    ) as sidecar:
        push(url)
        wait_until(lambda: "queue_depth" in scrape(sidecar), 10, "the push stored")
        text = scrape(sidecar)
        assert re.search(
            r'^orders_total\{job="app",service_instance_id="[^"]+",service_name="app",shop="a"\} 5.0$',
            text,
            re.M,
        ), text
        assert "otel_scope_name" not in text
        assert check_metrics(text).passes
        sidecar_config(config, ports, rules[:2])  # job no more
        sidecar.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "the ingest store starts empty" in sidecar.logs(), 10, "reload")
        wait_until(lambda: "orders_total{" not in scrape(sidecar), 10, "the store emptied")
        push(url)
        wait_until(lambda: "orders_total{" in scrape(sidecar), 10, "stored again")
        text = scrape(sidecar)
        assert re.search(
            r'^orders_total\{service_instance_id="[^"]+",service_name="app",shop="a"\} 5.0$',
            text,
            re.M,
        ), text
        assert 'job="app"' not in text
