"""Relabel rules on whole families in the unified view: shapes kept, collisions refused.

The exposition is written by prometheus_client (a real app's registry), parsed as a
merge target's is, relabelled by `UnifiedCollector`, and every result is linted by
``promtool check metrics`` and re-parsed by prometheus_client's OpenMetrics parser.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.config import config_from_dict
from sidecar.merge.rawtext import parse_fast
from sidecar.relabel import families
from sidecar.relabel.families import Relabeller
from sidecar.relabel.rules import compile_rules
from sidecar.unified import UnifiedCollector
from tests.support.prometheus import check_metrics
from tests.support.relabel import OPENMETRICS, Recorded, Target, app_exposition


def relabelled(rules: list[dict[str, Any]]) -> tuple[str, str, Recorded]:
    """Text and OpenMetrics renderings after ``rules`` (the target asked in the same
    format, as the merge asks it), and what the text scrape counted."""
    recorded = Recorded()
    compiled = compile_rules(config_from_dict({"relabel": rules}).relabel)
    text_view = UnifiedCollector([Target(app_exposition())], relabel=Relabeller(compiled, recorded))
    om_view = UnifiedCollector([Target(app_exposition(True), True)], relabel=Relabeller(compiled))
    text = text_view.render("", "").body.decode()
    openmetrics = om_view.render(OPENMETRICS, "").body.decode()
    return text, openmetrics, recorded


def series(text: str) -> set[str]:
    """Every sample as ``name{sorted labels}`` (values left out)."""
    out = set()
    for family in parse_text(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out.add(f"{s.name}{{{labels}}}")
    return out


def valid(text: str, openmetrics: str) -> None:
    check = check_metrics(text)
    assert check.returncode == 0, check.findings
    list(parse_om(openmetrics))  # type: ignore[no-untyped-call]  # raises if OpenMetrics refuses


BASE = series(app_exposition())

CASES: list[tuple[str, list[dict[str, Any]], set[str], set[str], dict[str, int]]] = [
    # (id, rules, samples gone, samples added, counted)
    ("drop by name", [{"action": "drop", "match": {"__name__": "go_.*"}}],
     {"go_goroutines{}"}, set(), {}),
    ("keep by name drops the rest",
     [{"action": "keep", "match": {"__name__": "app_(requests|queue).*"}}],
     {s for s in BASE if not s.startswith(("app_requests", "app_queue"))}, set(), {}),
    ("labeldrop a label nobody has changes nothing", [{"action": "labeldrop", "regex": "nope"}],
     set(), set(), {}),
    ("labeldrop otel_scope_*",
     [{"action": "labeldrop", "regex": "otel_scope_.*"}],
     {s for s in BASE if "otel_scope_name" in s},
     {s.replace(",otel_scope_name=lib", "") for s in BASE if "otel_scope_name" in s}, {}),
    ("dropping le breaks the histogram: its series go, counted",
     [{"action": "labeldrop", "regex": "le"}],
     {s for s in BASE if s.startswith("app_latency_seconds")}, set(), {"shape": 2}),
    ("dropping quantile breaks the summary", [{"action": "labeldrop", "regex": "quantile"}],
     set(), set(), {}),  # prometheus_client's summary has no quantiles: nothing to break
    ("two series becoming one: both go, counted",
     [{"action": "labeldrop", "regex": "code"}],
     {s for s in BASE if "code=" in s},
     {"app_size_bytes_count{}", "app_size_bytes_sum{}", "app_size_bytes_created{}"},
     {"collision": 4}),  # requests: 2 collide; latency: 2 collide; size has one series
    ("dropping only _created samples keeps the rest",
     [{"action": "drop", "match": {"__name__": ".*_created"}}],
     {s for s in BASE if "_created{" in s}, set(), {}),
    ("dropping a histogram's buckets alone is refused",
     [{"action": "drop", "match": {"__name__": ".*_bucket"}}],
     {s for s in BASE if s.startswith("app_latency_seconds")}, set(), {"shape": 2}),
    ("renaming a family",
     [{"source_labels": ["__name__"], "regex": "app_(.*)", "target_label": "__name__",
       "replacement": "shop_$1"}],
     {s for s in BASE if s.startswith("app_")},
     {"shop_" + s[4:] for s in BASE if s.startswith("app_")}, {}),
    ("renaming a counter sample without its suffix is refused",
     [{"match": {"__name__": "app_requests_total"}, "target_label": "__name__",
       "replacement": "requests"}],
     {s for s in BASE if s.startswith("app_requests")}, set(), {"shape": 2}),
    ("renaming onto a name another type claims is refused",
     [{"match": {"__name__": "app_queue"}, "target_label": "__name__",
       "replacement": "app_requests_total"}],
     {"app_queue{queue=a}"}, set(), {"collision": 1}),
    ("renaming into a family of the same type merges the series",
     [{"match": {"__name__": "go_goroutines"}, "target_label": "queue", "replacement": "go"},
      {"match": {"__name__": "go_goroutines"}, "target_label": "__name__",
       "replacement": "app_queue"}],
     {"go_goroutines{}"}, {"app_queue{queue=go}"}, {}),
    ("renaming onto an existing series: both go",
     [{"match": {"__name__": "go_goroutines"}, "target_label": "queue", "replacement": "a"},
      {"match": {"__name__": "go_goroutines"}, "target_label": "__name__",
       "replacement": "app_queue"}],
     {"go_goroutines{}", "app_queue{queue=a}"}, set(), {"collision": 2}),
    ("labelkeep without __name__ leaves no name: invalid",
     [{"action": "labelkeep", "regex": "code|le|quantile"}],
     BASE, set(), {"invalid": 8}),
    ("temporary labels are removed at the end",
     [{"source_labels": ["code"], "target_label": "__tmp_code"},
      {"action": "drop", "source_labels": ["__tmp_code"], "regex": "5.."}],
     {s for s in BASE if "code=500" in s}, set(), {}),
    ("a new label on one family",
     [{"match": {"__name__": "app_build_info"}, "target_label": "team", "replacement": "core"}],
     {"app_build_info{version=1.2}"}, {"app_build_info{team=core,version=1.2}"}, {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rules", "gone", "added", "counted"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_sets_give_valid_families(
    rules: list[dict[str, Any]], gone: set[str], added: set[str], counted: dict[str, int]
) -> None:
    text, openmetrics, recorded = relabelled(rules)
    valid(text, openmetrics)
    assert series(text) == (BASE - gone) | added
    assert recorded.counts == counted


def test_untouched_families_are_passed_on_as_they_came() -> None:
    """A family no rule touches is the very object the source gave (raw text kept)."""
    target = Target(app_exposition())
    before = target.families()
    rules = [{"action": "drop", "match": {"__name__": "go_.*"}},
             {"action": "labeldrop", "regex": "otel_scope_.*"}]  # fmt: skip
    relabel = Relabeller(compile_rules(config_from_dict({"relabel": rules}).relabel))
    after = relabel.apply(before, "merge")
    untouched = [f for f in before if f.name not in ("go_goroutines", "app_requests")]
    assert all(any(a is f for a in after) for f in untouched)
    assert "go_goroutines" not in {f.name for f in after}


def test_source_limits_a_rule() -> None:
    rules = [{"action": "drop", "source": "ingest", "match": {"__name__": "go_.*"}}]
    text, _, _ = relabelled(rules)
    assert "go_goroutines{}" in series(text)


def test_proxy_source_is_the_registrys_http_families() -> None:
    registry = CollectorRegistry()
    Counter("http_request", "Proxied", registry=registry).inc()
    Gauge("sidecar_up", "Own", registry=registry).set(1)
    rules = [{"action": "drop", "source": "proxy", "match": {"__name__": ".*"}}]
    relabel = Relabeller(compile_rules(config_from_dict({"relabel": rules}).relabel))
    text = UnifiedCollector([registry], relabel=relabel).render("", "").body.decode()
    assert "sidecar_up 1.0" in text
    assert "http_request" not in text


def test_an_info_family_whose_sample_has_the_family_name() -> None:
    """The ingest's ``target_info``: type info, its sample named ``target_info``."""
    info = Metric("target_info", "Target metadata", "info")
    info.add_sample("target_info", {"service_name": "app"}, 1.0)

    class Ingest:
        relabel_source = "ingest"

        def collect(self) -> list[Metric]:
            return [info]

    rules = [{"action": "drop", "match": {"__name__": "target_info"}}]
    relabel = Relabeller(compile_rules(config_from_dict({"relabel": rules}).relabel))
    assert relabel.apply([info], "ingest") == []
    text = UnifiedCollector([Ingest()], relabel=relabel).render("", "").body.decode()
    assert "target_info" not in text


@pytest.mark.parametrize("c_runs", [True, False], ids=["C prover", "pure Python"])
def test_label_names_of_raw_families(monkeypatch: pytest.MonkeyPatch, c_runs: bool) -> None:
    """Proven uniform (either prover) or found by the regex: the same names."""
    monkeypatch.setattr(families, "C_RUNS", c_runs and families.C_RUNS)
    body = (
        '# TYPE a_total counter\na_total{x="1",y="2"} 1\na_total{x="3",y="4"} 2\n'
        '# TYPE b gauge\nb{x="1"} 1\nb{z="q\\"=\\\\"} 2\nb 3\n'
        "# TYPE c gauge\nc 1\n"
    )
    got = {f.name: families.label_names(f) for f in parse_fast(body, False, {})}
    assert got == {"a": {"x", "y"}, "b": {"x", "z"}, "c": set()}


@pytest.mark.parametrize("openmetrics", [False, True])
def test_a_renamed_family_brings_its_own_collisions(openmetrics: bool) -> None:
    """app_a's two series become one (both dropped) and join app_b, which has that
    series too: all three go, and all three are counted."""
    text = (
        '# HELP app_a A\n# TYPE app_a gauge\napp_a{x="1"} 1.0\napp_a{x="2"} 2.0\n'
        '# HELP app_b B\n# TYPE app_b gauge\napp_b 3.0\napp_b{y="1"} 4.0\n'
    ) + ("# EOF\n" if openmetrics else "")
    rules = [{"action": "labeldrop", "regex": "x"},
             {"match": {"__name__": "app_a"}, "target_label": "__name__", "replacement": "app_b"}]  # fmt: skip
    recorded = Recorded()
    relabel = Relabeller(compile_rules(config_from_dict({"relabel": rules}).relabel), recorded)
    out = UnifiedCollector([Target(text, openmetrics)], relabel=relabel).render("", "")
    assert series(out.body.decode()) == {"app_b{y=1}"}
    assert recorded.counts == {"collision": 3}
