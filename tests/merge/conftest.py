"""Fixtures of the merge tests: a real Go exporter's /metrics (``exporter_url``) and a
spy on the C run prover (``c_runs``). The target servers and the admin-app rig they
scrape through (``start_target``, ``make_rig``) are in `tests.support.merge`."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.merge import _runs, rawtext
from tests.support.merge import make_rig, start_target
from tests.support.node_exporter import NodeExporter, node_exporter
from tests.support.prometheus import PrometheusFactory, prometheus_factory

# fixtures: for exporter_url, and the merge tests' own
__all__ = ["make_rig", "node_exporter", "prometheus_factory", "start_target"]


@pytest.fixture(params=["node_exporter", "prometheus"])
def exporter_url(request: pytest.FixtureRequest) -> str:
    """The /metrics of a real Go exporter: node_exporter, or a real Prometheus's own."""
    if request.param == "node_exporter":
        exporter: NodeExporter = request.getfixturevalue("node_exporter")
        return exporter.url
    factory: PrometheusFactory = request.getfixturevalue("prometheus_factory")
    return factory([], scrape_interval="1m").url + "/metrics"


@pytest.fixture
def c_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The label-name lists of the runs the merge fast path gives its C prover, as it goes
    (the real prover answers: the spy only writes down what it is asked)."""
    proven: list[tuple[str, ...]] = []
    real = _runs.take_run  # bound in rawtext only when its C paths run (rawtext.C_RUNS)

    def spy(body: str, start: int, limit: int, names: tuple[str, ...], *rest: Any) -> object:
        proven.append(names)
        return real(body, start, limit, names, *rest)

    monkeypatch.setattr(rawtext, "take_run", spy, raising=rawtext.C_RUNS)
    return proven
