"""Families that are not raw text (the sidecar's own, a target's delegated ones)
relabelled by what the rules made of their last shape give what relabelling them anew
gives, scrape after scrape (values changing, series coming and going), with the same
refusals counted per scrape; a scrape whose families kept their shape probes and
relabels none of them (issue 20: the sidecar's own families cost ~0.5 ms a scrape with
the issue's example rules before, ~0.1 ms with their shapes remembered)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sidecar.relabel import families as families_module
from sidecar.relabel.families import Relabeller
from sidecar.relabel.rules import process
from tests.support.relabel import Recorded, Target, body, compiled, rescrapes, samples_of

EXAMPLE: list[dict[str, Any]] = [  # the issue's example (docs/relabel.md)
    {"action": "drop", "match": {"__name__": "go_.*"}},
    {"action": "keep", "source": "merge", "match": {"__name__": "app_.*|http_.*"}},
    {"action": "labeldrop", "regex": "otel_scope_.*"},
    {"action": "replace", "source_labels": ["service_name"], "target_label": "job"},
]


def metrics(text: str) -> list[Metric]:
    """An app's families as prometheus_client `Metric`s (each read anew)."""
    return [f.to_metric() for f in Target(text).families()]


def own(values: list[int], reasons: list[str]) -> list[Metric]:
    """Families shaped as the sidecar's own: OTel scope labels on every series."""
    errors = CounterMetricFamily(
        "sidecar_proxy_errors", "Errors", labels=["otel_scope_name", "reason"]
    )
    for reason, value in zip(reasons, values, strict=False):
        errors.add_metric(["sidecar", reason], value)
    series = GaugeMetricFamily("sidecar_series", "Series", labels=["otel_scope_name", "source"])
    series.add_metric(["sidecar", "merge"], values[0])
    info = GaugeMetricFamily("process_open_fds", "Open fds", value=values[-1])
    return [errors, series, info]


def numeric(families: list[Any]) -> list[tuple[str, str, Any]]:
    return [(f.name, f.type, samples_of(f)) for f in families]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**rescrapes)
def test_remembered_shapes_give_what_relabelling_anew_gives(
    rules: list[dict[str, Any]],
    first: list[tuple[str, str, str]],
    later: list[tuple[str, str, str]],
    values: list[int],
) -> None:
    chain = compiled(rules)
    remembered_counts = Recorded()
    remembered = Relabeller(chain, remembered_counts)
    for number, series in enumerate([first, first, first, later, first]):
        text = body(series, [v + number for v in values], False)  # (one _created time)
        anew_counts = Recorded()
        before = dict(remembered_counts.counts)
        got = remembered.apply(metrics(text), "merge")
        anew = Relabeller(chain, anew_counts, remember=False).apply(metrics(text), "merge")
        assert numeric(got) == numeric(anew)
        added = {k: v - before.get(k, 0) for k, v in remembered_counts.counts.items()}
        assert {k: v for k, v in added.items() if v} == {
            k: v for k, v in anew_counts.counts.items() if v
        }


@pytest.mark.parametrize("source", ["sidecar", "merge"])
def test_the_issues_example_on_own_families_as_anew(source: str) -> None:
    chain = compiled(EXAMPLE)
    remembered = Relabeller(chain)
    for number, reasons in enumerate([["a", "b"], ["a", "b"], ["a", "b", "c"], ["b"]]):
        scrape = [number * 10 + i for i in range(4)]
        got = remembered.apply(own(scrape, reasons), source)
        anew = Relabeller(chain, remember=False).apply(own(scrape, reasons), source)
        assert numeric(got) == numeric(anew)
        if source == "sidecar":
            out = [f for f in got if isinstance(f, Metric)]
            assert len(out) == len(got)
            assert all("otel_scope_name" not in s.labels for f in out for s in f.samples)
            assert [s.value for s in out[0].samples] == scrape[: len(reasons)]


def test_a_family_that_kept_its_shape_is_neither_probed_nor_relabelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain = compiled(EXAMPLE)
    relabeller = Relabeller(chain)
    relabeller.apply(own([1, 2, 3], ["a", "b"]), "sidecar")
    calls: list[str] = []
    original_process, original_probe = process, families_module.probe

    def counted(chain: Any, labels: dict[str, str]) -> dict[str, str] | None:
        calls.append(labels["__name__"])
        return original_process(chain, labels)

    def probed(chain: Any, family: Any) -> str:
        calls.append(family.name)
        return original_probe(chain, family)

    monkeypatch.setattr(families_module, "process", counted)
    monkeypatch.setattr(families_module, "probe", probed)
    got = relabeller.apply(own([4, 5, 6], ["a", "b"]), "sidecar")
    assert calls == []
    assert isinstance(got[0], Metric)
    assert [(s.labels, s.value) for s in got[0].samples] == [
        ({"reason": "a"}, 4.0),
        ({"reason": "b"}, 5.0),
    ]
    relabeller.apply(own([4, 5, 6], ["a", "b", "c"]), "sidecar")  # a new series: that family
    assert calls
    assert set(calls) <= {"sidecar_proxy_errors", "sidecar_proxy_errors_total"}
