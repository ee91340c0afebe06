"""The whole ``relabel:`` chain of the ingest source before the store (`IngestRelabel`):
the store holds the relabelled series, and what a scrape serves from it equals what the
exposition made of the unrelabelled store (differential, over generated rules and series)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.config import config_from_dict
from sidecar.ingest.collector import OtlpCollector
from sidecar.ingest.model import (
    Batch,
    Descriptor,
    HistogramPoint,
    Kind,
    Metric,
    NumberPoint,
    Point,
    SummaryPoint,
    Temporality,
)
from sidecar.ingest.store import MetricStore, StoreLimits
from sidecar.ingest.translate import label_text
from sidecar.relabel import ingest as relabel_ingest
from sidecar.relabel.families import Relabeller
from sidecar.relabel.ingest import IngestRelabel, relabel_series
from sidecar.relabel.rules import Rule, compile_rules
from sidecar.unified import UnifiedCollector
from tests.support.relabel import Recorded, rule

ISSUE_RULES: list[dict[str, Any]] = [
    {"action": "drop", "match": {"__name__": "go_.*"}},
    {"action": "keep", "source": "merge", "match": {"__name__": "app_.*|http_.*"}},
    {"action": "labeldrop", "regex": "otel_scope_.*"},
    {"action": "replace", "source_labels": ["service_name"], "target_label": "job"},
]
FAMILIES = (
    ("app_requests", Kind.COUNTER, Temporality.CUMULATIVE),
    ("app_queue_depth", Kind.GAUGE, Temporality.GAUGE),
    ("app_latency", Kind.HISTOGRAM, Temporality.CUMULATIVE),
    ("go_gc", Kind.SUMMARY, Temporality.GAUGE),
    ("go_threads", Kind.GAUGE, Temporality.GAUGE),
)
SCOPE = {"otel_scope_name": "app.lib", "service_name": "shop"}


def compiled(rules: list[dict[str, Any]]) -> tuple[Rule, ...]:
    return compile_rules(config_from_dict({"relabel": rules}).relabel)


def point(kind: Kind, labels: str, value: float) -> Point:
    if kind is Kind.HISTOGRAM:
        return HistogramPoint(labels, 1, 2, (1.0, 5.0), (1, 2, int(value)), 7.5)
    if kind is Kind.SUMMARY:
        return SummaryPoint(labels, 1, 2, ((0.5, 1.0), (0.9, value)), 3.0, 4)
    return NumberPoint(labels, 1, 2, value)


def batch(series: list[list[dict[str, str]]]) -> Batch:
    """One metric per family of `FAMILIES`, with one point per label set."""
    metrics = [
        Metric(
            Descriptor(name, kind, "Help.", ""),
            temporality,
            [point(kind, label_text(labels), float(i + 1)) for i, labels in enumerate(sets)],
        )
        for (name, kind, temporality), sets in zip(FAMILIES, series, strict=True)
    ]
    return Batch(metrics=[m for m in metrics if m.points])


Parsed = set[tuple[str, str, frozenset[tuple[str, str]], float]]


def served(collector: OtlpCollector, rules: tuple[Rule, ...], recorded: Recorded) -> Parsed:
    unified = UnifiedCollector([collector], relabel=Relabeller(rules, recorded))
    text = unified.render("", "").body.decode()
    return {
        (family.type, s.name, frozenset(s.labels.items()), s.value)
        for family in parse_text(text)
        for s in family.samples
    }


def both_ways(
    rules: tuple[Rule, ...], series: list[list[dict[str, str]]]
) -> tuple[Parsed, Parsed, Recorded, Recorded, IngestRelabel, MetricStore]:
    """(served at exposition, served from the relabelled store, their dropped counts,
    the pre-store relabelling, its store)."""
    at_scrape, before = Recorded(), Recorded()
    plain = MetricStore(StoreLimits())
    plain.apply(batch(series))
    relabel = IngestRelabel(rules, before)
    store = MetricStore(StoreLimits())
    relabelled = batch(series)
    relabel.apply(relabelled, store)
    store.apply(relabelled)
    expected = served(OtlpCollector(plain), rules, at_scrape)
    got = served(OtlpCollector(store, relabel=relabel), rules, before)
    again = batch(series)  # the same series pushed again: the remembered results
    relabel.dropped = Recorded()  # (counted per push: the first one's counts compared)
    relabel.apply(again, store)
    store.apply(again)
    assert served(OtlpCollector(store, relabel=relabel), rules, Recorded()) == got
    return expected, got, at_scrape, before, relabel, store


def test_the_issues_rules_are_applied_before_the_store() -> None:
    """The stored label sets are the relabelled ones: no scope label, ``job`` from
    ``service_name``; the go_* family never stored; the scrape relabels nothing more."""
    series = [[{**SCOPE, "shop": s}] for s in ("a", "b", "c", "d", "e")]
    expected, got, _, _, relabel, store = both_ways(compiled(ISSUE_RULES), series)
    assert relabel.applies
    assert sorted(store.families) == ["app_latency", "app_queue_depth", "app_requests"]
    held = {labels for family in store.families.values() for labels in family.series}
    assert held == {
        'job="shop",service_name="shop",shop="a"',
        'job="shop",service_name="shop",shop="b"',
        'job="shop",service_name="shop",shop="c"',
    }
    assert got == expected
    assert all(f.relabelled for f in OtlpCollector(store, relabel=relabel).families())


def test_a_steady_stream_is_relabelled_once_per_label_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second push of the same series runs no rule (its results are remembered)."""
    calls = 0
    rules = compiled(ISSUE_RULES)

    def counted(chain: Any, name: str, kind: Any, labels: dict[str, str], *rest: Any) -> Any:
        nonlocal calls
        calls += bool(labels)  # a series' (a family's own verdict is asked with no labels)
        return relabel_series(chain, name, kind, labels, *rest)

    monkeypatch.setattr(relabel_ingest, "relabel_series", counted)
    relabel, store = IngestRelabel(rules), MetricStore(StoreLimits())
    series = [[{**SCOPE, "shop": s}] for s in ("a", "b", "c", "d", "e")]
    for _ in range(3):
        pushed = batch(series)
        relabel.apply(pushed, store)
        assert store.apply(pushed).accepted == 3
    assert calls == 5  # one per distinct (family, label set), the go_* ones included


def test_two_series_that_become_one_are_both_dropped_and_counted() -> None:
    """Even across pushes: the series stored first is forgotten when the second arrives."""
    rules = compiled([{"action": "labeldrop", "regex": "shop"}])
    recorded = Recorded()
    relabel, store = IngestRelabel(rules, recorded), MetricStore(StoreLimits())
    for shop in ("a", "b"):
        pushed = batch([[{"shop": shop}], [], [], [], []])
        relabel.apply(pushed, store)
        store.apply(pushed)
    assert not store.families["app_requests"].series
    assert recorded.counts == {"collision": 2}


def test_a_rule_on_le_stays_at_exposition() -> None:
    """A rule that reads ``le`` cannot be decided before the buckets: only its drops run
    before the store, the rest at exposition, with the same result."""
    rules = compiled([{"action": "drop", "source_labels": ["le"], "regex": "1.0"}])
    expected, got, at_scrape, before, relabel, _ = both_ways(rules, [[{"x": "1"}]] * 5)
    assert not relabel.applies
    assert got == expected
    assert at_scrape.counts == before.counts == {"shape": 1}


def test_gauges_kept_per_worker_are_relabelled_with_their_worker_label() -> None:
    """``ingest.workers.gauges: each``: the rules see the ``worker`` label the store adds."""
    rules = compiled([{"source_labels": ["worker"], "target_label": "pid"}])
    relabel = IngestRelabel(rules)
    store = MetricStore(StoreLimits(worker_gauges="each"))
    for worker in ("101", "102"):
        descriptor = Descriptor("app_queue_depth", Kind.GAUGE, "", "")
        metric = Metric(descriptor, Temporality.GAUGE, [NumberPoint('q="a"', 1, 2, 1.0)],
                        ("shop", ""), worker)  # fmt: skip
        pushed = Batch(metrics=[metric])
        relabel.apply(pushed, store)
        assert store.apply(pushed).accepted == 1
    assert sorted(store.families["app_queue_depth"].series) == [
        'pid="101",q="a",worker="101"',
        'pid="102",q="a",worker="102"',
    ]


label_sets = st.lists(
    st.dictionaries(
        st.sampled_from(["code", "queue", "version", "x", "otel_scope_name"]),
        st.sampled_from(["200", "503", "a", "app_x"]),
        max_size=3,
    ),
    max_size=4,
    unique_by=lambda d: tuple(sorted(d.items())),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rule, min_size=1, max_size=4), st.lists(label_sets, min_size=5, max_size=5))
def test_relabelled_before_the_store_is_what_the_scrape_relabelled(
    rules: list[dict[str, Any]], series: list[list[dict[str, str]]]
) -> None:
    """Differential: any rules, any series; the same samples served, the same refusals
    counted (one point per series, so per point counts as per scrape)."""
    expected, got, at_scrape, before, _, _ = both_ways(compiled(rules), series)
    assert got == expected
    assert before.counts == at_scrape.counts
