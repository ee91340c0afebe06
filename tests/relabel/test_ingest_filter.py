"""The pre-store filter: a series is removed from a translated batch exactly when the
rules drop every sample name of it (as the exposition would drop it)."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.config import config_from_dict
from sidecar.ingest.model import (
    Batch,
    Descriptor,
    Kind,
    Metric,
    NumberPoint,
    Point,
    Temporality,
)
from sidecar.relabel.ingest import IngestFilter
from sidecar.relabel.rules import compile_rules


def batch() -> Batch:
    def metric(name: str, kind: Kind, *labels: str) -> Metric:
        points: list[Point] = [NumberPoint(text, 1, 2, 1.0) for text in labels]
        return Metric(Descriptor(name, kind, "", ""), Temporality.CUMULATIVE, points)

    return Batch(metrics=[
        metric("orders", Kind.COUNTER, 'shop="a"', 'shop="b"'),
        metric("queue_depth", Kind.GAUGE, '', 'queue="q\\"1"'),
        metric("go_goroutines", Kind.GAUGE, ''),
    ])  # fmt: skip


def kept(rules: list[dict[str, Any]]) -> tuple[bool, set[tuple[str, str]]]:
    relabel = IngestFilter(compile_rules(config_from_dict({"relabel": rules}).relabel))
    b = batch()
    removed = relabel.filter(b)
    out = {(m.descriptor.name, p.labels) for m in b.metrics for p in m.points}
    assert removed == 5 - len(out)
    return relabel.by_name_only, out


ALL = {("orders", 'shop="a"'), ("orders", 'shop="b"'), ("queue_depth", ""),
       ("queue_depth", 'queue="q\\"1"'), ("go_goroutines", "")}  # fmt: skip

CASES: list[tuple[str, list[dict[str, Any]], bool, set[tuple[str, str]]]] = [
    ("no rules", [], True, ALL),
    ("drop by name", [{"action": "drop", "match": {"__name__": "go_.*"}}], True,
     ALL - {("go_goroutines", "")}),
    ("a counter is named x_total", [{"action": "drop", "match": {"__name__": "orders"}}], True,
     ALL),
    ("its _created alone does not keep it",
     [{"action": "drop", "match": {"__name__": "orders_total"}}], True,
     ALL - {("orders", 'shop="a"'), ("orders", 'shop="b"')}),
    ("keep by name", [{"action": "keep", "match": {"__name__": "orders_.*"}}], True,
     {("orders", 'shop="a"'), ("orders", 'shop="b"')}),
    ("another source's rule is not ours",
     [{"action": "drop", "source": "merge", "match": {"__name__": ".*"}}], True, ALL),
    ("the issue's rules: decided by name", [
        {"action": "drop", "match": {"__name__": "go_.*"}},
        {"action": "labeldrop", "regex": "otel_scope_.*"},
        {"action": "replace", "source_labels": ["service_name"], "target_label": "job"}],
     True, ALL - {("go_goroutines", "")}),
    ("drop by a label value (escapes read)",
     [{"action": "drop", "source_labels": ["queue"], "regex": 'q"1'}], False,
     ALL - {("queue_depth", 'queue="q\\"1"')}),
    ("a replace feeding a drop", [
        {"source_labels": ["shop"], "regex": "b", "target_label": "__tmp", "replacement": "x"},
        {"action": "drop", "source_labels": ["__tmp"], "regex": "x"}],
     False, ALL - {("orders", 'shop="b"')}),
    ("a rename then a keep", [
        {"source_labels": ["__name__"], "regex": "go_(.*)", "target_label": "__name__",
         "replacement": "runtime_$1"},
        {"action": "keep", "match": {"__name__": "runtime_.*"}}],
     False, {("go_goroutines", "")}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rules", "by_name", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_the_filter_drops_what_the_rules_drop(
    rules: list[dict[str, Any]], by_name: bool, expected: set[tuple[str, str]]
) -> None:
    assert kept(rules) == (by_name, expected)


def test_a_second_batch_uses_the_remembered_verdicts() -> None:
    relabel = IngestFilter(compile_rules(config_from_dict(
        {"relabel": [{"action": "drop", "source_labels": ["shop"], "regex": "a"}]}).relabel))  # fmt: skip
    first, second = batch(), batch()
    assert relabel.filter(first) == 1
    assert relabel.filter(second) == 1
    assert [len(m.points) for m in second.metrics] == [1, 2, 1]
