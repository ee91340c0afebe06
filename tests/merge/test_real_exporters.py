"""Real Go exporters as merge targets: node_exporter and Prometheus's own /metrics.

Both are client_golang apps: text 0.0.4, gzip, a summary, and the Go collector's gauge
``go_memstats_alloc_bytes`` beside the counter ``go_memstats_alloc_bytes_total``. Every
family and series they serve must come through the merge, in text and in OpenMetrics,
with its TYPE and HELP, and no conflict may be counted; a real Prometheus scraping the
exporter directly and through a real sidecar process stores the same metric names.

Series are compared by name and labels (values move between scrapes); a series counts
when it is in a direct scrape before and one after the merged scrape (node_exporter's and
Prometheus's series sets move a little on a shared machine).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.merge import rawtext
from sidecar.merge.fetch import Result, fetch_target, parse_exposition
from tests.support.merge import MakeRig, target, value
from tests.support.node_exporter import NodeExporter
from tests.support.process import local_ports, run_sidecar
from tests.support.prometheus import PrometheusFactory, poll, static_scrape_config

TEXT_ACCEPT = "text/plain;version=0.0.4"
OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
GO_PAIR = ("go_memstats_alloc_bytes", "go_memstats_alloc_bytes_total")

Series = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Exposition:
    """One scrape as prometheus_client reads it: per sample name its family's
    (name, TYPE, HELP), and every series."""

    families: dict[str, tuple[str, str, str]]
    series: set[Series]

    @classmethod
    def parse(cls, text: str, openmetrics: bool) -> Exposition:
        metrics: Iterable[Metric] = parse_openmetrics(text) if openmetrics else parse_text(text)
        families, series = {}, set()
        for family in metrics:
            for s in family.samples:
                families[s.name] = (family.name, family.type, family.documentation)
                series.add((s.name, frozenset(s.labels.items())))
        return cls(families, series)


async def _direct(url: str) -> Exposition:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"  # client_golang: text unless asked
        return Exposition.parse(await response.text(), openmetrics=False)


@pytest.mark.parametrize("accept", [TEXT_ACCEPT, OPENMETRICS_ACCEPT], ids=["text", "openmetrics"])
async def test_every_family_and_series_of_a_real_exporter_comes_through(
    exporter_url: str, make_rig: MakeRig, accept: str
) -> None:
    rig = await make_rig([target("exporter", exporter_url)])
    openmetrics = accept == OPENMETRICS_ACCEPT
    before = await _direct(exporter_url)
    merged_text = await rig.scrape({"Accept": accept})
    after = await _direct(exporter_url)
    merged = Exposition.parse(merged_text, openmetrics)

    missing = (before.series & after.series) - merged.series
    assert not missing, f"{len(missing)} series lost in the merge, e.g. {sorted(missing)[:5]}"
    assert set(GO_PAIR) <= {name for name, _ in merged.series}
    for sample, (family, kind, help_text) in before.families.items():
        if sample not in after.families:
            continue
        want = (family, kind, help_text)
        if openmetrics and kind == "counter" and _bare_name_taken(family, before):
            want = (sample, "unknown", help_text)  # OpenMetrics: no counter "foo" beside "foo"
        assert merged.families[sample] == want, sample
    # the Go collector's pair: both families, with their own TYPE and HELP
    alloc, alloc_total = (merged.families[name] for name in GO_PAIR)
    assert alloc[1] == "gauge"
    assert alloc_total[1] == ("unknown" if openmetrics else "counter")
    assert alloc[2] != alloc_total[2]

    text = await rig.scrape()  # conflicts are counted as a scrape is rendered: the next shows them
    assert value(text, "sidecar_merge_conflicts_total", kind="type") == 0  # at 0 from the start
    assert value(text, "sidecar_merge_conflicts_total", kind="series") == 0


def _bare_name_taken(family: str, exposition: Exposition) -> bool:
    """Whether another family of ``exposition`` claims the counter ``family``'s bare name."""
    return any(
        name == family and kind != "counter" for name, kind, _ in exposition.families.values()
    )


@pytest.mark.slow
def test_prometheus_stores_the_same_names_directly_and_through_the_sidecar(
    node_exporter: NodeExporter,
    prometheus_factory: PrometheusFactory,
    tmp_path: Path,
) -> None:
    ports = local_ports("proxy", "admin", "ingest")
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        f'proxy: {{listen: "127.0.0.1:{ports["proxy"]}", upstream: "http://127.0.0.1:9"}}\n'
        f'admin: {{listen: "127.0.0.1:{ports["admin"]}"}}\n'
        f'ingest: {{listen: "127.0.0.1:{ports["ingest"]}"}}\n'
        f"merge:\n  targets:\n    - {{name: node, url: {node_exporter.url!r}}}\n"
    )
    admin = f"127.0.0.1:{ports['admin']}"
    with run_sidecar(["run", "--config", str(config)], admin=admin) as sidecar:
        prom = prometheus_factory(
            [
                static_scrape_config("direct", node_exporter.address),
                static_scrape_config("via", admin),
            ]
        )
        prom.wait_for_targets_up(count=2)
        prom.wait_for_scrapes(2)

        def names(job: str) -> set[str]:
            result = prom.query(f'group by (__name__) ({{job="{job}"}})')
            return {series["__name__"] for series in result.series}

        direct = poll(lambda: names("direct") or None, 30, lambda: "direct series")
        via = names("via")
        assert set(GO_PAIR) <= direct
        assert direct - via == set(), sidecar.logs()[-2000:]
        targets = {t["labels"]["job"]: t for t in prom.targets()}
        assert targets["via"]["lastError"] == ""
        conflicts = prom.query('sidecar_merge_conflicts_total{job="via",kind="type"}')
        assert conflicts.values() in ([], [0.0])


async def test_a_node_exporter_scrape_is_read_without_a_worker_thread(
    node_exporter: NodeExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its ~57 kB are read on the event loop (0.3 ms) rather than handed to the executor
    and back, which on a busy machine costs more than the parse; a labelled one is not
    (nor any, on the pure-Python paths: ``SIDECAR_NO_EXTENSIONS``)."""
    loop = asyncio.get_running_loop()
    handed: list[object] = []
    real = loop.run_in_executor

    def spy(executor: Any, func: Any, *args: Any) -> Any:
        handed.append(func)
        return real(executor, func, *args)

    monkeypatch.setattr(loop, "run_in_executor", spy)
    async with aiohttp.ClientSession() as session:
        plain = await fetch_target(session, target("node", node_exporter.url), 5.0)
        assert plain.result is Result.SUCCESS
        on_loop = rawtext.C_RUNS  # the C scan reads it on the loop
        assert handed == ([] if on_loop else [parse_exposition])
        labelled = await fetch_target(session, target("node", node_exporter.url, a="b"), 5.0)
        assert labelled.result is Result.SUCCESS
        assert handed == [parse_exposition] * (1 if on_loop else 2)
    assert len(plain.families) == len(labelled.families) > 200
