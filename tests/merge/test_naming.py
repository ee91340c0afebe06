"""The naming rule of the merge: which names a family claims, golden outputs.

A text counter ``foo_total`` (``# TYPE foo_total counter``) is its own family; an
OpenMetrics counter ``foo`` writes ``foo_total`` samples. Neither claims the bare name
``foo``, so a gauge ``foo`` beside it is no conflict (client_golang serves exactly that:
``go_memstats_alloc_bytes`` and ``go_memstats_alloc_bytes_total``). OpenMetrics cannot
name a counter family ``foo`` beside a gauge ``foo``: there such a counter is written as
an ``unknown`` family ``foo_total``, which keeps every sample name.

Every case runs through the fast raw-text path and through prometheus_client's parsers
(the parsed path), and every output must parse with prometheus_client's parsers and
pass ``promtool check metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector

from sidecar.config import MergeTarget
from sidecar.instruments import merge_conflicts
from sidecar.merge import fetch
from sidecar.merge.fetch import Result, Scrape, parse_exposition
from sidecar.merge.rawtext import Unsupported
from sidecar.merge.scraper import FetchedFamilies
from sidecar.observability import Module
from sidecar.unified import UnifiedCollector, claimed_names
from tests.support.prometheus import check_metrics

TEXT = "text/plain"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
TARGET = MergeTarget(name="app", url="http://127.0.0.1:1/metrics")


@dataclass(frozen=True)
class Body:
    """A source's exposition: the sidecar's own (a plain collector) or a merge target's."""

    text: str
    openmetrics: bool = False
    own: bool = False


class _Parsed:
    """A higher source (like the sidecar's own registry): prometheus_client families."""

    def __init__(self, body: Body) -> None:
        parse = parse_openmetrics if body.openmetrics else parse_text
        self.metrics: list[Metric] = list(parse(body.text))

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def _sources(bodies: Iterable[Body]) -> Iterator[Collector]:
    for body in bodies:
        if body.own:
            yield _Parsed(body)
            continue
        families = parse_exposition(body.text, body.openmetrics, {})
        yield FetchedFamilies(Scrape(TARGET, Result.SUCCESS, families))


@pytest.fixture(params=["fast", "parsed"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fast raw-text path, or prometheus_client's parsers for every target body."""
    if request.param == "parsed":

        def refuse(*_: object) -> None:
            raise Unsupported("the parsed path, on purpose")

        monkeypatch.setattr(fetch, "parse_fast", refuse)
    return str(request.param)


@pytest.fixture
def module() -> Iterator[Module]:
    module = Module.new("naming-test")
    yield module
    module.provider.shutdown()


def _conflicts(module: Module) -> dict[str, float]:
    """Conflicts counted, by kind (the counter shows every kind, at 0 until one happens)."""
    return {
        s.labels["kind"]: s.value
        for family in module.registry.collect()
        for s in family.samples
        if s.name == "sidecar_merge_conflicts_total" and s.value
    }


def _render(module: Module, bodies: Iterable[Body]) -> tuple[str, str]:
    """Both answers; conflicts are counted for the text one only (once a scrape)."""
    sources = list(_sources(bodies))
    text = UnifiedCollector(sources, merge_conflicts(module.meter)).render(TEXT, "")
    return text.body.decode(), UnifiedCollector(sources).render(OPENMETRICS, "").body.decode()


def _shape(text: str, openmetrics: bool) -> set[tuple[str, str, str, str, float]]:
    """(family name, type, HELP, sample name, value) of every sample, as prometheus_client
    reads the exposition (so the fast path's "1" and the parsed path's "1.0" agree)."""
    parse = parse_openmetrics if openmetrics else parse_text
    return {
        (f.name, f.type, f.documentation, s.name, s.value) for f in parse(text) for s in f.samples
    }


GAUGE_AND_COUNTER = """\
# HELP foo Bytes in use.
# TYPE foo gauge
foo 1
# HELP foo_total Bytes ever allocated.
# TYPE foo_total counter
foo_total 2
"""


def test_text_gauge_foo_and_counter_foo_total_both_survive(module: Module, path: str) -> None:
    text, om = _render(module, [Body(GAUGE_AND_COUNTER)])
    assert _shape(text, False) == {
        ("foo", "gauge", "Bytes in use.", "foo", 1.0),
        ("foo", "counter", "Bytes ever allocated.", "foo_total", 2.0),
    }
    # OpenMetrics has no counter family "foo" beside the gauge "foo": unknown, same sample
    assert _shape(om, True) == {
        ("foo", "gauge", "Bytes in use.", "foo", 1.0),
        ("foo_total", "unknown", "Bytes ever allocated.", "foo_total", 2.0),
    }
    if path == "fast":  # golden: the target's own text, and its OpenMetrics form
        assert text == GAUGE_AND_COUNTER
        assert om == (
            "# HELP foo Bytes in use.\n# TYPE foo gauge\nfoo 1\n"
            "# HELP foo_total Bytes ever allocated.\n# TYPE foo_total unknown\nfoo_total 2\n"
            "# EOF\n"
        )
    assert _conflicts(module) == {}
    assert check_metrics(text).passes, check_metrics(text).findings


def test_text_counter_foo_total_alone(module: Module, path: str) -> None:
    body = "# HELP foo_total Jobs.\n# TYPE foo_total counter\nfoo_total 2\n"
    text, om = _render(module, [Body(body)])
    if path == "fast":
        assert text == body
        assert om == "# HELP foo Jobs.\n# TYPE foo counter\nfoo_total 2\n# EOF\n"
    assert _shape(om, True) == {("foo", "counter", "Jobs.", "foo_total", 2.0)}
    assert _conflicts(module) == {}


OM_COUNTER = """\
# HELP foo Jobs.
# TYPE foo counter
foo_total 2.0
foo_created 1.7e+09
# EOF
"""


def test_openmetrics_counter_foo(module: Module, path: str) -> None:
    text, om = _render(module, [Body(OM_COUNTER, openmetrics=True)])
    assert om == OM_COUNTER
    assert _shape(text, False) == {
        ("foo", "counter", "Jobs.", "foo_total", 2.0),
        ("foo_created", "gauge", "Jobs.", "foo_created", 1.7e9),
    }
    assert _conflicts(module) == {}


def test_openmetrics_counter_foo_beside_a_higher_gauge_foo(module: Module, path: str) -> None:
    own = Body("# HELP foo Own gauge.\n# TYPE foo gauge\nfoo 5\n", own=True)
    text, om = _render(module, [own, Body(OM_COUNTER, openmetrics=True)])
    assert _shape(text, False) == {
        ("foo", "gauge", "Own gauge.", "foo", 5.0),
        ("foo", "counter", "Jobs.", "foo_total", 2.0),
        ("foo_created", "gauge", "Jobs.", "foo_created", 1.7e9),
    }
    assert _shape(om, True) == {
        ("foo", "gauge", "Own gauge.", "foo", 5.0),
        ("foo_total", "unknown", "Jobs.", "foo_total", 2.0),
        ("foo_created", "gauge", "Jobs.", "foo_created", 1.7e9),
    }
    assert _conflicts(module) == {}


@pytest.mark.parametrize(
    ("higher", "lower", "survivor"),  # survivor: (type, values)
    [
        pytest.param(
            "# TYPE foo summary\nfoo_count 3\nfoo_sum 1\n",
            "# TYPE foo_count gauge\nfoo_count 7\n",
            ("summary", {3.0, 1.0}),
            id="summary-foo-then-gauge-foo_count",
        ),
        pytest.param(
            "# TYPE foo_count gauge\nfoo_count 7\n",
            "# TYPE foo summary\nfoo_count 3\nfoo_sum 1\n",
            ("gauge", {7.0}),
            id="gauge-foo_count-then-summary-foo",
        ),
        pytest.param(
            "# TYPE foo histogram\nfoo_bucket{le=\"+Inf\"} 3\nfoo_count 3\nfoo_sum 1\n",
            "# TYPE foo_sum gauge\nfoo_sum 7\n",
            ("histogram", {3.0, 1.0}),
            id="histogram-foo-then-gauge-foo_sum",
        ),
        pytest.param(
            "# TYPE foo_total gauge\nfoo_total 7\n",
            "# TYPE foo_total counter\nfoo_total 3\n",
            ("gauge", {7.0}),
            id="gauge-foo_total-then-counter-foo_total",
        ),
        pytest.param(
            "# TYPE foo summary\nfoo_count 3\nfoo_sum 1\n",
            "# TYPE foo gauge\nfoo 7\n",
            ("summary", {3.0, 1.0}),
            id="summary-foo-then-gauge-foo",
        ),
    ],
)  # fmt: skip
def test_a_real_clash_with_a_higher_source_drops_the_lower_family_and_counts(
    module: Module, path: str, higher: str, lower: str, survivor: tuple[str, set[float]]
) -> None:
    text, om = _render(module, [Body(higher, own=True), Body(lower)])
    for shape in (_shape(text, False), _shape(om, True)):
        assert {kind for _, kind, *_ in shape} == {survivor[0]}
        assert {value for *_, value in shape} == survivor[1]
    assert _conflicts(module) == {"type": 1.0}


def test_no_conflict_between_a_gauge_and_a_counter_of_two_sources(
    module: Module, path: str
) -> None:
    own = Body("# HELP foo_total Own counter.\n# TYPE foo_total counter\nfoo_total 4\n", own=True)
    text, om = _render(module, [own, Body("# HELP foo Target gauge.\n# TYPE foo gauge\nfoo 1\n")])
    assert _shape(text, False) == {
        ("foo", "counter", "Own counter.", "foo_total", 4.0),
        ("foo", "gauge", "Target gauge.", "foo", 1.0),
    }
    assert ("foo_total", "unknown", "Own counter.", "foo_total", 4.0) in _shape(om, True)
    assert _conflicts(module) == {}


def test_a_target_clashing_with_itself_is_passed_on_and_not_counted(
    module: Module, path: str
) -> None:
    """Only a clash with a higher source is a conflict: a target's own exposition is
    passed on as it wrote it (as Prometheus would scrape it directly)."""
    body = "# TYPE foo summary\nfoo_count 3\nfoo_sum 1\n# TYPE foo_count gauge\nfoo_count 7\n"
    text, _ = _render(module, [Body(body)])
    assert {(kind, value) for _, kind, _, _, value in _shape(text, False)} == {
        ("summary", 3.0),
        ("summary", 1.0),
        ("gauge", 7.0),
    }
    assert _conflicts(module) == {}


@pytest.mark.parametrize(
    ("name", "kind", "claimed"),
    [
        ("foo", "counter", ("foo_total", "foo_created")),
        ("foo", "gauge", ("foo",)),
        ("foo", "unknown", ("foo",)),
        ("foo", "summary", ("foo", "foo_count", "foo_sum", "foo_created")),
        ("foo", "histogram", ("foo", "foo_bucket", "foo_count", "foo_sum", "foo_created")),
        ("foo", "gaugehistogram", ("foo", "foo_bucket", "foo_gcount", "foo_gsum")),
        ("foo", "info", ("foo", "foo_info")),
        ("foo", "stateset", ("foo",)),
    ],
)
def test_claimed_names(name: str, kind: str, claimed: tuple[str, ...]) -> None:
    assert claimed_names(name, kind) == claimed
