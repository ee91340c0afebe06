"""Merge targets' series on ``/debug/series`` and the status page, with a real node_exporter.

A real sidecar process merges a real node_exporter; the pages count the target's series
per metric (as source ``merge:<target>``) from the merge scraper's last scrape, and
scrape the target themselves (within its timeout) only when no recent scrape exists.
``sidecar_merge_scrapes_total`` tells how often the target was scraped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.support.node_exporter import NodeExporter, node_exporter
from tests.support.process import SidecarProcess, http_get, local_ports, run_sidecar

__all__ = ["node_exporter"]  # the fixture

COMPONENT_LABELS = ("le", "quantile")


@pytest.fixture
def merging(node_exporter: NodeExporter, tmp_path: Path) -> Iterator[SidecarProcess]:
    """A real sidecar merging the node_exporter as target ``node``."""
    ports = local_ports("proxy", "admin", "ingest")
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        f'proxy: {{listen: "127.0.0.1:{ports["proxy"]}", upstream: "http://127.0.0.1:9"}}\n'
        f'admin: {{listen: "127.0.0.1:{ports["admin"]}"}}\n'
        f'ingest: {{listen: "127.0.0.1:{ports["ingest"]}"}}\n'
        f"merge:\n  targets:\n    - {{name: node, url: {node_exporter.url!r}, timeout: 5s}}\n"
    )
    with run_sidecar(["run", "--config", str(config)], admin=f"127.0.0.1:{ports['admin']}") as s:
        yield s


def _get(url: str) -> str:
    status, _, body = http_get(url, timeout=10)
    assert status == 200, body[:500]
    return body.decode()


def _direct_counts(exporter: NodeExporter) -> dict[str, int]:
    """Series per metric of a direct scrape, counted here: label sets per family."""
    counts = {}
    for family in parse_text(_get(exporter.url)):
        name = family.name + "_total" if family.type == "counter" else family.name
        counts[name] = len(
            {
                frozenset((k, v) for k, v in s.labels.items() if k not in COMPONENT_LABELS)
                for s in family.samples
            }
        )
    return counts


def _node_scrapes(sidecar: SidecarProcess) -> float:
    """Scrapes of target node so far, as the sidecar's /metrics counts them (this scrape
    of /metrics is one of them: it fetches the target before it renders)."""
    for family in parse_text(_get(sidecar.url("/metrics"))):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "sidecar_merge_scrapes_total" and (
                labels.get("target"),
                labels.get("result"),
            ) == ("node", "success"):
                return float(sample.value)
    return 0.0


def test_debug_series_counts_the_targets_series_from_the_last_scrape(
    merging: SidecarProcess,
    node_exporter: NodeExporter,
) -> None:
    assert _node_scrapes(merging) == 1  # a scrape of /metrics: now a recent result exists
    before = _direct_counts(node_exporter)
    report = json.loads(_get(merging.url("/debug/series?limit=10000")))
    after = _direct_counts(node_exporter)
    served = {
        entry["metric"]: entry["series"]
        for entry in report["by_source"]
        if entry["source"] == "merge:node"
    }
    stable = {name: n for name, n in before.items() if after.get(name) == n}
    assert len(stable) > 100
    assert {name: served.get(name) for name in stable} == stable
    assert report["sources"]["merge:node"] == sum(served.values())
    assert served["go_memstats_alloc_bytes_total"] == served["go_memstats_alloc_bytes"] == 1
    assert report["total"] == sum(report["sources"].values())
    # the page and /debug/series did not scrape the target again: the last scrape answered
    _get(merging.url("/?refresh=0"))
    assert _node_scrapes(merging) == 2


def test_status_page_without_a_recent_scrape_scrapes_the_target_once(
    merging: SidecarProcess,
) -> None:
    page = _get(merging.url("/?refresh=0"))  # no /metrics scrape yet
    assert "Merge targets (series in the last scrape)" in page
    assert "<td>merge:node</td>" in page
    metrics_section = page[page.index('<section id="metrics">') :]
    assert "<td>merge:node</td>" in metrics_section  # among the top metrics by series
    assert _node_scrapes(merging) == 2  # the page's scrape, then this one
