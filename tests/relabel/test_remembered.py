"""A merge target's families relabelled by a remembered plan give what relabelling them
anew gives, scrape after scrape (values changing, series coming and going), with the
same refusals counted per scrape; and a scrape whose label sets did not change
relabels no series."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.merge.rawtext import RawFamily
from sidecar.relabel import families as families_module
from sidecar.relabel.families import Relabeller
from sidecar.relabel.rules import process
from tests.support.relabel import (
    CODES,
    Recorded,
    Target,
    body,
    compiled,
    rescrapes,
    samples_of,
    shown,
)


def numeric(families: list[Any]) -> list[tuple[str, str, Any]]:
    """Families as numeric samples (a raw family converted as the merge converts it), in
    series order (a counter that came as text has its ``_created`` lines last, as it
    came; one relabelled as samples has each after its ``_total``)."""
    return [
        (f.name, f.type, sorted(samples_of(f.to_metric() if isinstance(f, RawFamily) else f),
                                key=lambda s: (sorted(s[1].items()), s[0])))
        for f in families
    ]  # fmt: skip


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**rescrapes, openmetrics=st.booleans())
def test_remembered_plans_give_what_relabelling_anew_gives(
    rules: list[dict[str, Any]],
    first: list[tuple[str, str, str]],
    later: list[tuple[str, str, str]],
    values: list[int],
    openmetrics: bool,
) -> None:
    chain = compiled(rules)
    remembered_counts = Recorded()
    remembered = Relabeller(chain, remembered_counts)
    # the same label sets three times (values changing), then others, then the first again
    scrapes = [first, first, first, later, first]
    for number, series in enumerate(scrapes):
        text = body(series, [v + number for v in values], openmetrics)
        anew_counts = Recorded()
        before = dict(remembered_counts.counts)
        got = remembered.apply(Target(text, openmetrics).families(), "merge")
        anew = Relabeller(chain, anew_counts, remember=False).apply(
            Target(text, openmetrics).families(), "merge"
        )
        added = {k: v - before.get(k, 0) for k, v in remembered_counts.counts.items()}
        assert shown(got) == shown(anew)
        assert {k: v for k, v in added.items() if v} == {
            k: v for k, v in anew_counts.counts.items() if v
        }
        # and what the samples relabelled as prometheus_client samples give
        reference_counts = Recorded()
        metrics = [f.to_metric() for f in Target(text, openmetrics).families()]
        reference = Relabeller(chain, reference_counts).apply(metrics, "merge")
        assert numeric(got) == numeric(reference)
        assert {k: v for k, v in added.items() if v} == {
            k: v for k, v in reference_counts.counts.items() if v
        }


@pytest.mark.parametrize("openmetrics", [False, True])
def test_unchanged_label_sets_are_not_relabelled_again(
    monkeypatch: pytest.MonkeyPatch, openmetrics: bool
) -> None:
    calls: list[str] = []
    original = process

    def counted(chain: Any, labels: dict[str, str]) -> dict[str, str] | None:
        calls.append(labels["code"])
        return original(chain, labels)

    monkeypatch.setattr(families_module, "process", counted)
    chain = compiled([{"source_labels": ["code"], "regex": "(.).*", "target_label": "class",
                       "replacement": "${1}xx"}])  # fmt: skip
    relabeller = Relabeller(chain)
    series = [("app_requests", code, "") for code in CODES[:3]]
    relabeller.apply(Target(body(series, [1, 2, 3], openmetrics), openmetrics).families(), "merge")
    assert sorted(set(calls)) == ["200", "404", "500"]
    calls.clear()
    text = body(series, [4, 5, 6], openmetrics)
    got = relabeller.apply(Target(text, openmetrics).families(), "merge")
    assert calls == []
    assert isinstance(got[0], RawFamily)  # still text
    assert 'app_requests_total{code="404",class="4xx"} 5.0\n' in got[0].chunks[0]
    series.append(("app_requests", "5xx", "1"))  # one new series: only it is relabelled
    relabeller.apply(
        Target(body(series, [4, 5, 6, 7], openmetrics), openmetrics).families(), "merge"
    )
    assert set(calls) == {"5xx"}


def test_plans_are_bounded_least_recently_used_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(families_module, "MAX_PLANS", 4)
    chain = compiled([{"action": "labeldrop", "regex": "x"}])
    relabeller = Relabeller(chain)
    targets = {
        code: Target(body([("app_queue", code, "1")], [1], False)).families() for code in CODES
    }
    relabeller.apply(targets["200"], "merge")
    for code in CODES[1:4]:  # four families remembered; "200" used again, then a fifth
        relabeller.apply(targets[code], "merge")
    relabeller.apply(targets["200"], "merge")
    relabeller.apply(targets[CODES[4]], "merge")
    calls: list[str] = []
    original = process

    def counted(chain: Any, labels: dict[str, str]) -> dict[str, str] | None:
        calls.append(labels["code"])
        return original(chain, labels)

    monkeypatch.setattr(families_module, "process", counted)  # a remembered plan runs none
    relabeller.apply(targets["200"], "merge")  # the most recently used stays
    relabeller.apply(targets[CODES[4]], "merge")  # and the one just made
    assert calls == []
    relabeller.apply(targets["404"], "merge")  # the least recently used went
    relabeller.apply(targets["500"], "merge")
    assert set(calls) == {"404", "500"}
