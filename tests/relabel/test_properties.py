"""Whatever the rules, the relabelled exposition is valid: it parses in both formats,
no family holds a label set twice, histograms keep whole series (every bucket with its
``le``, ``_count`` and ``_sum``), and what was refused is counted."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.config import config_from_dict
from sidecar.relabel.families import Relabeller
from sidecar.relabel.rules import compile_rules
from sidecar.unified import UnifiedCollector
from tests.support.relabel import OPENMETRICS, Recorded, Target, app_exposition, rule

TEXT = app_exposition()
OM = app_exposition(True)


def _check(families: list[Any]) -> None:
    for family in families:
        seen = set()
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in seen, f"{key} twice"
            seen.add(key)
        if family.type == "histogram":
            series: dict[frozenset[tuple[str, str]], set[str]] = {}
            for s in family.samples:
                rest = frozenset((k, v) for k, v in s.labels.items() if k != "le")
                series.setdefault(rest, set()).add(s.name[len(family.name) :])
                if s.name.endswith("_bucket"):
                    assert "le" in s.labels
            for suffixes in series.values():
                assert {"_bucket", "_count", "_sum"} <= suffixes, suffixes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rule, min_size=1, max_size=4))
def test_any_rules_give_a_valid_exposition(rules: list[dict[str, Any]]) -> None:
    compiled = compile_rules(config_from_dict({"relabel": rules}).relabel)
    recorded = Recorded()
    text = UnifiedCollector([Target(TEXT)], relabel=Relabeller(compiled, recorded))
    om = UnifiedCollector([Target(OM, True)], relabel=Relabeller(compiled))
    text_families = list(parse_text(text.render("", "").body.decode()))
    om_families = list(parse_om(om.render(OPENMETRICS, "").body.decode()))  # type: ignore[no-untyped-call]
    _check(text_families)
    _check(om_families)
    assert all(count > 0 for count in recorded.counts.values())
