"""The label names a merge target's families carry, recorded as the body is cut.

Relabelling decides most of a target's families at once (`sidecar.relabel.families.probe`)
from their sample names and, when a rule reads or writes labels, their label names. Those
are recorded while the body is cut (`RawFamily.label_names`): by the C whole-body scan
(`_runs.scan_text`, text bodies), by the block-by-block way with runs proven in C
(`take_run`) and by that way in pure Python (``SIDECAR_NO_EXTENSIONS=1``). All three must
record the same names, and exactly the label names of the family's samples (as
prometheus_client reads them); the probe must answer with them as it answers by reading
the lines.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.config import config_from_dict
from sidecar.merge import rawtext
from sidecar.merge._runs import scan_text
from sidecar.merge.rawtext import RawFamily, Unsupported, parse_fast
from sidecar.relabel.families import label_names, probe
from sidecar.relabel.rules import compile_rules
from tests.support.rawtext import bodies, mutated, use_c_paths

WAYS = {"scan": (True, True), "runs": (True, False), "python": (False, False)}
Recorded = list[tuple[str, frozenset[str] | None]] | str


def cut(body: str, openmetrics: bool, labels: dict[str, str], way: str) -> list[object] | str:
    """``body``'s families cut one way (`WAYS`), or the name of the error that refused it."""
    use_c, whole_body = WAYS[way]
    with pytest.MonkeyPatch.context() as patch:
        use_c_paths(patch, use_c)
        patch.setattr(rawtext._Splitter, "whole_body", whole_body)
        try:
            return list(parse_fast(body, openmetrics, labels))
        except (Unsupported, ValueError) as exc:
            return type(exc).__name__


def recorded(families: list[object] | str) -> Recorded:
    if isinstance(families, str):
        return families
    return [(f.name, f.label_names) for f in families if isinstance(f, RawFamily)]


def truth(families: list[object]) -> Recorded:
    """Every label name of each raw family's samples, as prometheus_client types them."""
    out: list[tuple[str, frozenset[str] | None]] = []
    for family in families:
        if isinstance(family, RawFamily):
            samples = family.to_metric().samples
            out.append((family.name, frozenset(n for s in samples for n in s.labels)))
    return out


configured = st.sampled_from([{}, {"source": "app"}, {"x": "1"}])


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bodies(), labels=configured)
def test_every_way_records_the_label_names_of_the_samples(
    case: tuple[str, bool], labels: dict[str, str]
) -> None:
    body, openmetrics = case
    cuts = {way: cut(body, openmetrics, labels, way) for way in WAYS}
    answers = {way: recorded(families) for way, families in cuts.items()}
    assert answers["scan"] == answers["runs"] == answers["python"]
    if not isinstance(cuts["python"], str):
        assert answers["python"] == truth(cuts["python"])  # known, and exact


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated(), labels=configured)
def test_mutated_bodies_record_alike_every_way(
    case: tuple[str, bool], labels: dict[str, str]
) -> None:
    body, openmetrics = case
    answers = {way: recorded(cut(body, openmetrics, labels, way)) for way in WAYS}
    assert answers["scan"] == answers["runs"] == answers["python"]


def test_scan_text_reports_each_name_once_in_the_order_first_seen() -> None:
    body = (
        "# TYPE a gauge\n"
        'a{x="1",y="2"} 1\n'
        'a{y="3",x="4"} 1\n'
        'a{z="5"} 1\n'
        "a 2\n"
        "# TYPE b_total counter\n"
        "b_total 1\n"
    )
    scanned = scan_text(body)
    assert scanned is not None
    assert [(name, names) for name, *_, names in scanned] == [
        ("a", ("x", "y", "z")),
        ("b_total", ()),
    ]


def test_past_64_names_the_scan_says_it_does_not_know_them() -> None:
    many = [f"l{i}" for i in range(70)]
    lines = "".join(f'a{{{name}="v"}} 1\n' for name in many)
    body = "# TYPE a gauge\n" + lines
    scanned = scan_text(body)
    assert scanned is not None
    assert scanned[0][6] is None
    families = cut(body, False, {}, "scan")
    assert isinstance(families, list)
    family = families[0]
    assert isinstance(family, RawFamily)
    assert family.label_names is None
    assert label_names(family) == set(many)  # read from the lines instead


CHAINS = {
    "the issue's example": [
        {"action": "drop", "match": {"__name__": "go_.*"}},
        {"action": "keep", "source": "merge", "match": {"__name__": "app_.*|http_.*|f.*"}},
        {"action": "labeldrop", "regex": "otel_scope_.*"},
        {"action": "replace", "source_labels": ["service_name"], "target_label": "job"},
    ],
    "labeldrop x": [{"action": "labeldrop", "regex": "x"}],
    "replace from y": [{"action": "replace", "source_labels": ["y"], "target_label": "z"}],
    "labelkeep x": [{"action": "labelkeep", "regex": "x|source"}],
}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bodies(), labels=configured, chain=st.sampled_from(sorted(CHAINS)))
def test_the_probe_answers_with_the_recorded_names_as_by_reading_the_lines(
    case: tuple[str, bool], labels: dict[str, str], chain: str
) -> None:
    body, openmetrics = case
    rules = compile_rules(config_from_dict({"relabel": CHAINS[chain]}).relabel)
    for way in WAYS:
        families = cut(body, openmetrics, labels, way)
        if isinstance(families, str):
            continue
        for family in families:
            if not isinstance(family, RawFamily):
                continue
            assert family.label_names is not None
            with_names = probe(rules, family)
            family.label_names = None  # read from the lines
            assert probe(rules, family) == with_names
