"""The fast path of `sidecar.merge.rawtext` against prometheus_client's own parsers.

For every exposition here — rendered by prometheus_client from generated registries, in
both formats, and hand-written edge cases — the fast path must give the same families
(name, type, HELP, unit, samples, values) as prometheus_client's parser, or leave the
body to it. Rendering a raw family must also parse back to the same family.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.exposition import generate_latest as render_text
from prometheus_client.openmetrics.exposition import generate_latest as render_openmetrics

from sidecar.merge.fetch import parse_exposition
from sidecar.merge.rawtext import parse_fast
from tests.support.rawtext import check_same, reference


def registry(values: list[str], help_text: str, number: float) -> CollectorRegistry:
    r = CollectorRegistry()
    c = Counter("jobs", help_text, ["v"], registry=r)
    g = Gauge("temp_celsius", help_text, ["v", "w"], registry=r, unit="celsius")
    u = Gauge("plain", "Plain", registry=r)
    h = Histogram("lat_seconds", "Latency", ["v"], registry=r, buckets=(0.1, 1, 10))
    s = Summary("size", "Size", ["v"], registry=r)
    Info("build", "Build", registry=r).info({"version": values[0] if values else "x"})
    Enum("state", "State", states=["up", "down"], registry=r).state("down")
    u.set(number)
    for i, value in enumerate(values):
        c.labels(value).inc(i + number if number >= 0 else i)
        g.labels(value, str(i)).set(number * i)
        h.labels(value).observe(abs(number) * i)
        s.labels(value).observe(i)
    return r


BODIES = {
    "text": lambda r: render_text(r).decode(),
    "openmetrics": lambda r: render_openmetrics(r).decode(),
}


label_values = st.lists(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    min_size=0, max_size=4, unique=True,
)  # fmt: skip
numbers = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@pytest.mark.parametrize("fmt", sorted(BODIES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=label_values, help_text=st.text(max_size=20), number=numbers, extra=st.booleans())
def test_generated_registries_parse_the_same(
    fmt: str, values: list[str], help_text: str, number: float, extra: bool
) -> None:
    body = BODIES[fmt](registry(values, help_text, number))
    labels = {"source": "app", "v": "configured"} if extra else {}
    check_same(body, fmt == "openmetrics", labels)


def test_the_fast_path_is_taken_for_plain_families() -> None:
    body = BODIES["openmetrics"](registry(["a", "b"], "Help", 2.0))
    families = parse_fast(body, True, {})
    kinds = {f.name: type(f).__name__ for f in families}
    assert kinds["jobs"] == "RawFamily"
    assert kinds["temp_celsius"] == "RawFamily"
    assert kinds["lat_seconds"] == "Metric"  # histograms go to prometheus_client


TEXT_CASES = {
    "untyped-without-type": 'a 1\nb{x="1"} 2\n',
    "comments": "# just a comment\n# HELP a A\n# TYPE a gauge\na 1\n",
    "timestamp": "# TYPE a gauge\na 1 1700000000000\n",
    "counter-without-total": "# TYPE a counter\na 1\n",
    "spaces-in-labels": '# TYPE a gauge\na{x="1", y="2"} 1\n',
    "escaped-help": "# HELP a line\\nbreak\n# TYPE a gauge\na 1\n",
    "inf-nan": '# TYPE a gauge\na{x="1"} +Inf\na{x="2"} -Inf\na{x="3"} NaN\n',
    "brace-in-value": '# TYPE a gauge\na{x="} 5"} 1\n',
    "repeated-family": '# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x="1"} 2\n',
    "trailing-spaces": "# TYPE a gauge\na 1  \n",
    "untyped-after-histogram": '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 1\nhx 5\n',
    "created-gauge": "# TYPE a_total counter\na_total 1\n# TYPE a_created gauge\na_created 5\n",
    # prometheus_client splits comment lines at any run of whitespace, after any "#..." word
    "help-after-two-spaces": "#  HELP a Doc.\n# TYPE a gauge\na 1\n",
    "type-after-a-tab": "#\tTYPE a_total counter\na_total 1\n",
    "help-name-after-a-tab": "# HELP\ta Doc.\n# TYPE a gauge\na 1\n",
    "type-after-a-longer-hash-word": "#x TYPE a gauge\na 1\n",
    # with x configured: x becomes exported_x, which the target also has
    "exported-label-already-there": '# TYPE a gauge\na{x="1",exported_x="2"} 1\n',
}
OPENMETRICS_CASES = {
    "exemplar": '# TYPE a counter\na_total 1 # {t="1"} 1\n# EOF\n',
    "unknown": "# TYPE a unknown\na 1\n# EOF\n",
    "unknown-after-histogram": '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 1\n# TYPE hx unknown\nhx 5\n# EOF\n',
    "summary": '# TYPE s summary\ns{quantile="0.5"} 1\ns_count 2\ns_sum 3\n# EOF\n',
    "unit": "# TYPE a_seconds gauge\n# UNIT a_seconds seconds\na_seconds 1\n# EOF\n",
    "escaped-help": '# HELP a say \\"hi\\"\n# TYPE a gauge\na 1\n# EOF\n',
    "exported-label-already-there": '# TYPE a gauge\na{exported_x="2",x="1"} 1\n# EOF\n',
}


@pytest.mark.parametrize("body", list(TEXT_CASES.values()), ids=list(TEXT_CASES))
def test_text_edge_cases(body: str) -> None:
    check_same(body, False, {})
    check_same(body, False, {"x": "c"})


@pytest.mark.parametrize("body", list(OPENMETRICS_CASES.values()), ids=list(OPENMETRICS_CASES))
def test_openmetrics_edge_cases(body: str) -> None:
    check_same(body, True, {})
    check_same(body, True, {"x": "c"})


INVALID = {
    "text-garbage": ("this is { not metrics\n", False),
    "text-bad-value": ('a{x="1"} one\n', False),
    "om-no-eof": ("# TYPE a gauge\na 1\n", True),
    "om-text-after-eof": ("# TYPE a gauge\na 1\n# EOF\nb 2\n", True),
    "om-untyped": ("# TYPE a untyped\na 1\n# EOF\n", True),
    "om-unit-not-suffix": ("# TYPE a gauge\n# UNIT a seconds\na 1\n# EOF\n", True),
    "om-bad-labels": ("# TYPE a gauge\na{x=1} 1\n# EOF\n", True),
    "om-duplicate-family": ("# TYPE a gauge\na 1\n# TYPE a gauge\na 2\n# EOF\n", True),
    "om-blank-line-after-eof": ("# TYPE a gauge\na 1\n# EOF\n\n", True),
    "om-help-without-text": ("# HELP a\n# TYPE a gauge\na 1\n# EOF\n", True),
    "om-gauge-clashes-with-a-counters-created": (
        "# TYPE a counter\na_total 1\n# TYPE a_created gauge\na_created 5\n# EOF\n",
        True,
    ),
    "om-counter-clashes-with-a-gauge-before": (
        "# TYPE a_total gauge\na_total 1\n# TYPE a counter\na_total 5\n# EOF\n",
        True,
    ),
    "om-gauge-clashes-with-a-histograms-count": (
        '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 1\n'
        "# TYPE h_count gauge\nh_count 5\n# EOF\n",
        True,
    ),
}


@pytest.mark.parametrize(("body", "openmetrics"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_bodies_are_refused_as_prometheus_client_refuses_them(
    body: str, openmetrics: bool
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # both parsers raise plain ValueError
        reference(body, openmetrics, {})
    with pytest.raises(ValueError):  # noqa: PT011
        parse_exposition(body, openmetrics, {})


def test_inf_values_are_floats() -> None:
    (family,) = parse_exposition('# TYPE a gauge\na{x="1"} +Inf\n', False, {})
    assert math.isinf(family.to_metric().samples[0].value)  # type: ignore[union-attr]
