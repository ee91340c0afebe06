"""The whole-run path of `sidecar.merge.rawtext` against its own line-by-line path.

A run (the sample lines between two comment lines) is taken whole when one regular
expression proves it; otherwise it is checked line by line, as before. Both ways must
give exactly the same families and the same rendered text, in both formats, with and
without configured labels; the table says which runs take the whole-run path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.merge import rawtext
from sidecar.merge._runs import split_created, take_run
from sidecar.merge.rawtext import RawFamily, Unsupported, parse_fast
from tests.support.prometheus import check_metrics
from tests.support.rawtext import (
    Outcome,
    assert_as_prometheus_client,
    bodies,
    mutated,
    rendered,
    use_c_paths,
)


def parse_both(
    body: str, openmetrics: bool, labels: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Outcome, Outcome]:
    """(whole runs allowed, line by line only); "Unsupported" when the fast path refuses."""
    outcomes: list[Outcome] = []
    for runs in (True, False):
        with monkeypatch.context() as patch:
            if not runs:
                patch.setattr(rawtext._Splitter, "_run", lambda *_: -1)
            try:
                outcomes.append(rendered(parse_fast(body, openmetrics, labels)))
            except Unsupported:
                outcomes.append("Unsupported")
    return outcomes[0], outcomes[1]


@pytest.fixture(params=[True, False], ids=["c", "re"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every run tried whole, however short, and proven in C (as runs of ASCII bodies
    are) or by `re` (as those of non-ASCII bodies are)."""
    use_c: bool = request.param
    use_engine(monkeypatch, use_c)
    return use_c


def use_engine(monkeypatch: pytest.MonkeyPatch, use_c: bool) -> None:
    monkeypatch.setattr(rawtext, "SHORT_RUN", 0)
    use_c_paths(monkeypatch, use_c)
    monkeypatch.setattr(rawtext._Splitter, "whole_body", False)  # runs, not whole bodies


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each `_Splitter._run` call answered (True: the run was taken whole)."""
    answers: list[bool] = []
    real = rawtext._Splitter._run
    monkeypatch.setattr(rawtext._Splitter, "whole_body", False)  # runs, not whole bodies

    def spy(self: rawtext._Splitter, start: int, limit: int) -> int:
        end = real(self, start, limit)
        answers.append(end >= 0)
        return end

    monkeypatch.setattr(rawtext._Splitter, "_run", spy)
    return answers


# body, openmetrics, configured labels, what each run's _run answered
RUNS = {
    "uniform-labels": (
        '# TYPE a gauge\na{x="1",y="2"} 1\na{x="3",y="4"} 2\n',
        False, {}, [True],
    ),
    "uniform-labels-configured": (
        '# TYPE a gauge\na{x="1"} 1\na{x="3"} 2\n',
        False, {"source": "app"}, [True],
    ),
    "brace-space-in-a-value-configured": (  # '"} ' inside a value: C knows where the
        '# TYPE a gauge\na{x="} "} 1\na{x="b"} 2\n',  # braces are; `re`'s replace does not
        False, {"source": "app"}, {"c": [True], "re": [False]},
    ),
    "no-labels-configured": (
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n",
        False, {"source": "app"}, [True, True],
    ),
    "openmetrics-counter-with-created": (
        '# TYPE c counter\nc_total{x="1"} 1\nc_created{x="1"} 1.7e+09\n# EOF\n',
        True, {}, [True],
    ),
    "openmetrics-negative-counter": (  # prometheus_client refuses it: so must we
        '# TYPE c counter\nc_total{x="1"} 1\nc_total{x="2"} -1\n# EOF\n',
        True, {}, [False],
    ),
    "openmetrics-nan-counter": (
        "# TYPE c counter\nc_total NaN\n# EOF\n",
        True, {}, [False],
    ),
    "openmetrics-dash-in-a-label-value": (
        '# TYPE c counter\nc_total{x="a -b"} 1\nc_created{x="a -b"} -5\n# EOF\n',
        True, {}, [True],
    ),
    "openmetrics-negative-zero-counter": (  # -0.0 >= 0: prometheus_client takes it
        "# TYPE c counter\nc_total -0.0\n# EOF\n",
        True, {}, [False],
    ),
    "text-negative-counter": (  # the text parser has no such rule
        "# TYPE c_total counter\nc_total -1\n",
        False, {}, [True],
    ),
    "label-sets-vary": (
        '# TYPE a gauge\na{x="1"} 1\na{y="1"} 2\n',
        False, {}, [False],
    ),
    "fewer-labels-later": (
        '# TYPE a gauge\na{x="1",y="1"} 1\na{x="2"} 2\n',
        False, {}, [False],
    ),
    "labelled-then-plain": (
        '# TYPE a gauge\na{x="1"} 1\na 2\n',
        False, {}, [False],
    ),
    "empty-braces": (
        "# TYPE a gauge\na{} 1\n",
        False, {}, [False],
    ),
    "escape-with-configured-labels": (
        '# TYPE a gauge\na{x="q\\"} 5"} 1\n',
        False, {"source": "app"}, [False],
    ),
    "escape-without-configured-labels": (
        '# TYPE a gauge\na{x="q\\"} 5"} 1\na{x="\\\\"} 2\n',
        False, {}, [True],
    ),
    "configured-label-replaces-scraped": (
        '# TYPE a gauge\na{source="mine"} 1\n',
        False, {"source": "app"}, [False],
    ),
    "another-family-in-the-run": (
        "# TYPE a gauge\na 1\nb 2\n",
        False, {}, [False],
    ),
    "first-line-of-another-family": (
        "# TYPE a gauge\nb 2\n",
        False, {}, [False],
    ),
    "bad-value-later": (
        '# TYPE a gauge\na{x="1"} 1\na{x="2"} 1e\n',
        False, {}, [False],
    ),
    "timestamp-later": (
        "# TYPE a gauge\na 1\na 2 1700000000000\n",
        False, {}, [False],
    ),
    "no-newline-at-the-end": (
        "# TYPE a gauge\na 1",
        False, {}, [False],
    ),
    "histogram-runs-go-line-by-line": (
        '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 1\n',
        False, {}, [False],
    ),
    "comment-inside-a-family": (
        "# TYPE a gauge\na 1\n# just a comment\na{x=\"1\"} 2\n",
        False, {}, [True, True],
    ),
}  # fmt: skip


@pytest.mark.parametrize(("body", "openmetrics", "labels", "expected"), RUNS.values(), ids=RUNS)
def test_which_runs_are_taken_whole(
    body: str,
    openmetrics: bool,
    labels: dict[str, str],
    expected: list[bool] | dict[str, list[bool]],
    taken: list[bool],
    engine: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if isinstance(expected, dict):  # where the two provers differ
        expected = expected["c" if engine else "re"]
    with contextlib.suppress(Unsupported):
        parse_fast(body, openmetrics, labels)
    assert taken == expected
    assert_as_prometheus_client(body, openmetrics, labels)
    whole, by_line = parse_both(body, openmetrics, labels, monkeypatch)
    assert whole == by_line


def test_duplicate_label_names_are_refused_on_the_whole_run_path() -> None:
    with pytest.raises(Unsupported):
        parse_fast('# TYPE a gauge\na{x="1",x="2"} 1\na{x="3",x="4"} 2\n', False, {})
    with pytest.raises(Unsupported):  # prometheus_client refuses a __name__ label as well
        parse_fast('# TYPE a gauge\na{__name__="b"} 1\n', False, {})


GOLDEN_BODY = """\
# HELP app_requests Requests.
# TYPE app_requests counter
app_requests_total{code="200",route="/a"} 3.0
app_requests_created{code="200",route="/a"} 1.7e+09
app_requests_total{code="500",route="/b"} 1.0
app_requests_created{code="500",route="/b"} 1.7e+09
# HELP app_up Up.
# TYPE app_up gauge
app_up 1.0
# EOF
"""
GOLDEN_TEXT = """\
# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{code="200",route="/a",source="app"} 3.0
app_requests_total{code="500",route="/b",source="app"} 1.0
# HELP app_requests_created Requests.
# TYPE app_requests_created gauge
app_requests_created{code="200",route="/a",source="app"} 1.7e+09
app_requests_created{code="500",route="/b",source="app"} 1.7e+09
# HELP app_up Up.
# TYPE app_up gauge
app_up{source="app"} 1.0
"""
GOLDEN_OPENMETRICS = """\
# HELP app_requests Requests.
# TYPE app_requests counter
app_requests_total{code="200",route="/a",source="app"} 3.0
app_requests_created{code="200",route="/a",source="app"} 1.7e+09
app_requests_total{code="500",route="/b",source="app"} 1.0
app_requests_created{code="500",route="/b",source="app"} 1.7e+09
# HELP app_up Up.
# TYPE app_up gauge
app_up{source="app"} 1.0
"""


def test_golden_text_of_whole_runs_in_both_formats(taken: list[bool], engine: bool) -> None:
    families = parse_fast(GOLDEN_BODY, True, {"source": "app"})
    assert taken == [True, True]
    text: list[str] = []
    om: list[str] = []
    for family in families:
        assert isinstance(family, RawFamily)
        family.render(False, text)
        family.render(True, om)
    assert "".join(text) == GOLDEN_TEXT
    assert "".join(om) == GOLDEN_OPENMETRICS
    check = check_metrics("".join(text))
    assert check.passes, check.findings


@pytest.mark.parametrize("engine_used", ["c", "re", "by-size"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bodies(), configured=st.sampled_from([{}, {"source": "app"}, {"z": 'a"\\b'}]))
def test_generated_bodies_whole_runs_equal_line_by_line(
    engine_used: str, case: tuple[str, bool], configured: dict[str, str]
) -> None:
    body, openmetrics = case
    with pytest.MonkeyPatch.context() as monkeypatch:
        if engine_used != "by-size":  # else the defaults: these runs are short, line by line
            use_engine(monkeypatch, engine_used == "c")
        whole, by_line = parse_both(body, openmetrics, configured, monkeypatch)
    assert whole == by_line
    assert_as_prometheus_client(body, openmetrics, configured)


def parse_with(body: str, openmetrics: bool, labels: Mapping[str, str], use_c: bool) -> Outcome:
    """What the fast path makes of ``body`` with every run tried whole, by one prover."""
    with pytest.MonkeyPatch.context() as patch:
        use_engine(patch, use_c)
        try:
            return rendered(parse_fast(body, openmetrics, labels))
        except (Unsupported, ValueError) as exc:
            return type(exc).__name__


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated(), configured=st.sampled_from([{}, {"source": "app"}]))
def test_mutated_bodies_c_prover_equals_re(
    case: tuple[str, bool], configured: dict[str, str]
) -> None:
    # the two provers may take different runs whole (C knows where braces are), but
    # whatever they take must read exactly as the other way reads it
    body, openmetrics = case
    assert parse_with(body, openmetrics, configured, True) == parse_with(
        body, openmetrics, configured, False
    )


_VALUES = [
    "1",
    "-1",
    "+1",
    "1.",
    ".5",
    ".",
    "1e",
    "1e+",
    "1e5",
    "-2.5E-3",
    "Inf",
    "+Inf",
    "-Inf",
    "NaN",
    "+NaN",
    "-0",
    "0x1",
    "1_0",
    "",
    "1 2",
    "+",
    "In",
    "Na",
    "12a",
]
_LABEL_TEXT = st.lists(
    st.sampled_from([*'ab "\\\n{}=,#', "\\n", '\\"', "\\\\", "\\x"]), max_size=5
).map("".join)


@st.composite
def sample_lines(draw: st.DrawFn) -> tuple[str, tuple[str, ...], tuple[str, ...], bool]:
    """A run of sample lines near the grammar's edges, with the grammar's arguments."""
    counter = draw(st.booleans())
    allowed = ("c_total", "c_created") if counter else ("g",)
    names = draw(st.sampled_from([(), ("a",), ("a", "b")]))
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from([*allowed, "other", allowed[0] + "x", "1g", ""]))
        keys = draw(st.sampled_from([names, names, ("b", "a"), ("a",), ("a", "b", "c")]))
        pairs = ",".join(f'{k}="{draw(_LABEL_TEXT)}"' for k in keys)
        braces = draw(st.sampled_from([f"{{{pairs}}}" if keys else "", "{}", f"{{{pairs}"]))
        end = draw(st.sampled_from(["\n", "\n", " \n", "", "\t\n"]))
        lines.append(f"{name}{braces} {draw(st.sampled_from(_VALUES))}{end}")
        if draw(st.integers(0, 6)) == 0:
            lines.append(draw(st.sampled_from(["# HELP g x\n", "#\n", " # x\n"])))
    return "".join(lines), names, allowed, counter


def take_run_reference(
    body: str,
    limit: int,
    names: tuple[str, ...],
    allowed: tuple[str, ...],
    counter: bool,
    suffix: str,
) -> tuple[int, str] | None:
    """`take_run` in Python: the `re` spelling of the grammar, then the line-by-line way's
    labels (this is how non-ASCII bodies are proven)."""
    match = rawtext._run_re(names, counter).match(body, 0, limit)
    assert match is not None  # the pattern takes "" at least
    end = match.end()
    if end < limit and body[end] != "#":
        return None
    out = []
    for line in body[:end].split("\n")[:-1]:
        sample = rawtext._SAMPLE_RE.fullmatch(line)
        assert sample is not None
        name, labels, value = sample.groups()
        if name not in allowed:
            return None
        if suffix and "\\" in line:
            return None
        labels = f"{labels},{suffix}" if labels and suffix else labels or suffix
        out.append(rawtext._line(name, labels, value))
    return end, "".join(out)


@settings(max_examples=1500, deadline=None)
@given(
    case=sample_lines(),
    suffix=st.sampled_from(["", 'source="app"']),
    cut=st.integers(0, 200),
)
def test_take_run_equals_the_re_grammar(
    case: tuple[str, tuple[str, ...], tuple[str, ...], bool], suffix: str, cut: int
) -> None:
    body, names, allowed, counter = case
    limit = max(len(body) - cut, 0) if cut % 2 else len(body)  # a limit inside the text too
    expected = take_run_reference(body, limit, names, allowed, counter, suffix)
    assert take_run(body, 0, limit, names, allowed, counter, suffix) == expected


# chunks of a counter "c" -> (lines without c_created, lines with it), as text answers split them
SPLITS = {
    "no-created": (["c_total 1\n"], "c_total 1\n", ""),
    "alternating": (
        ['c_total{a="1"} 1\nc_created{a="1"} 5\nc_total{a="2"} 2\nc_created{a="2"} 6\n'],
        'c_total{a="1"} 1\nc_total{a="2"} 2\n',
        'c_created{a="1"} 5\nc_created{a="2"} 6\n',
    ),
    "grouped": (
        ['c_total{a="1"} 1\nc_total{a="2"} 2\nc_created{a="1"} 5\nc_created{a="2"} 6\n'],
        'c_total{a="1"} 1\nc_total{a="2"} 2\n',
        'c_created{a="1"} 5\nc_created{a="2"} 6\n',
    ),
    "odd-count": (
        ["c_total 1\nc_created 5\nc_total_x 2\n"],
        "c_total 1\nc_total_x 2\n",
        "c_created 5\n",
    ),
    "created-first": (["c_created 5\nc_total 1\n"], "c_total 1\n", "c_created 5\n"),
    "only-created-chunk": (
        ["c_total 1\n", "c_created 5\nc_created_x 6\n"],
        "c_total 1\nc_created_x 6\n",
        "c_created 5\n",
    ),
    "prefix-is-not-the-name": (["c_createdx 1\n"], "c_createdx 1\n", ""),
    "created-only-chunk": (
        ['c_total 1\nc_total{a="2"} 2\n', 'c_created 5\nc_created{a="2"} 6\n'],
        'c_total 1\nc_total{a="2"} 2\n',
        'c_created 5\nc_created{a="2"} 6\n',
    ),
    "non-ascii": (  # the Python way
        ['c_total{a="é"} 1\nc_created{a="é"} 5\n'],
        'c_total{a="é"} 1\n',
        'c_created{a="é"} 5\n',
    ),
}


@pytest.mark.parametrize(("chunks", "totals", "later"), SPLITS.values(), ids=SPLITS)
def test_split_created(chunks: list[str], totals: str, later: str) -> None:
    kept, moved = rawtext._split_created(chunks, "c_created")
    assert ("".join(kept), "".join(moved)) == (totals, later)
    assert all(kept)  # no empty chunks
    assert all(moved)


_SPLIT_LINES = st.sampled_from(
    ["c_total 1", "c_created 5", 'c_created{a="b c"} 6', "c_createdx 1", "c_created_x 2",
     'c_total{a="c_created "} 3', "c_created", "c_created\t1", ""]
)  # fmt: skip


@given(st.lists(st.lists(_SPLIT_LINES, min_size=1, max_size=6), max_size=4))
def test_split_created_in_c_equals_the_python_way(chunks: list[list[str]]) -> None:
    for lines in chunks:
        chunk = "".join(line + "\n" for line in lines)
        assert split_created(chunk, "c_created") == rawtext._split_lines(chunk, "c_created")


def big_body(series: int, openmetrics: bool) -> str:
    """A counter and a gauge family of ``series`` series each, one with a label value to escape."""
    lines = ["# HELP c Requests.", "# TYPE c counter" if openmetrics else "# TYPE c_total counter"]
    for i in range(series):
        route = f"/r/{i}" if i != series // 2 else 'say \\"hi\\"'
        lines.append(f'c_total{{code="200",route="{route}"}} {i}')
        if openmetrics:
            lines.append(f'c_created{{code="200",route="{route}"}} 1.7e+09')
    lines += ["# HELP g In flight.", "# TYPE g gauge"]
    lines += [f'g{{code="200",route="/r/{i}"}} {i % 7}' for i in range(series)]
    return "\n".join(lines) + ("\n# EOF\n" if openmetrics else "\n")


# series per family -> (runs tried whole, the C prover used) with the default sizes
SIZES = {"short": (2, False, False), "medium": (20, True, True), "long": (400, True, True)}


@pytest.mark.parametrize("configured", [{}, {"source": "app"}], ids=["as-is", "labelled"])
@pytest.mark.parametrize("openmetrics", [True, False], ids=["openmetrics", "text"])
@pytest.mark.parametrize(("series", "whole", "by_c"), SIZES.values(), ids=SIZES)
def test_run_sizes_pick_the_way_and_agree(
    series: int,
    whole: bool,
    by_c: bool,
    openmetrics: bool,
    configured: dict[str, str],
    taken: list[bool],
    monkeypatch: pytest.MonkeyPatch,
    c_runs: list[tuple[str, ...]],
) -> None:
    body = big_body(series, openmetrics)
    parse_fast(body, openmetrics, configured)
    # the counter's run has an escaped label value: with configured labels, line by line
    assert taken == ([not configured, True] if whole else [])
    assert bool(c_runs) == (by_c and rawtext.C_RUNS)
    as_whole, by_line = parse_both(body, openmetrics, configured, monkeypatch)
    assert as_whole == by_line
    assert_as_prometheus_client(body, openmetrics, configured)
