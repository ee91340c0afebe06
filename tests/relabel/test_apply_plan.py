"""A remembered plan applied in one pass: `sidecar.merge._runs.apply_plan` (C) gives what
its Python spelling `_apply_plan` gives, on tables and generated lines; and a merge
target's family whose plan holds is relabelled by it without a probe, a renamed family
joining it or not, in C and in Python alike."""

from __future__ import annotations

import itertools
from array import array
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.merge import _runs
from sidecar.merge._runs import apply_plan
from sidecar.merge.rawtext import RawFamily
from sidecar.relabel import families as families_module
from sidecar.relabel.families import Relabeller, _apply_plan
from sidecar.unified import UnifiedCollector
from tests.support.relabel import Recorded, Target, body, compiled, rule, shown

TEXT_ACCEPT = "text/plain;version=0.0.4"
OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0"

LINES = ['a{x="1"} 1\n', 'a{x="2"} 2.5 17\n', "b 3\n"]
OLDS = ['a{x="1"}', 'a{x="2"} 2.5', "b"]  # a line's prefix: up to its last space


def both(
    chunks: list[str], olds: list[str], order: array[int] | None, news: list[str], split: int
) -> Any:
    """The answer of C and of Python (given their texts joined), which must agree."""
    old_text, old_ends = joined(olds)
    new_text, new_ends = joined(news)
    got = apply_plan(chunks, old_text, old_ends, order, new_text, new_ends, split)
    assert got == _apply_plan(chunks, old_text, old_ends, order, new_text, new_ends, split)
    return got


def joined(texts: list[str]) -> tuple[str, array[int]]:
    return "".join(texts), array("q", itertools.accumulate(map(len, texts)))


ABC = ["A", "B", "C"]


@pytest.mark.parametrize(
    ("chunks", "olds", "order", "news", "split", "expected"),
    [
        (LINES, OLDS, None, ABC, 3, ("A 1\nB 17\nC 3\n", "")),
        (["".join(LINES)], OLDS, None, ABC, 3, ("A 1\nB 17\nC 3\n", "")),
        (LINES, OLDS, None, ABC, 1, ("A 1\n", "B 17\nC 3\n")),
        (LINES, OLDS, None, ABC, 0, ("", "A 1\nB 17\nC 3\n")),
        (LINES, OLDS, array("q", [2, 0]), ["C", "A"], 2, ("C 3\nA 1\n", "")),
        (LINES, OLDS, array("q", [0, 0]), ["A", "a"], 1, ("A 1\n", "a 1\n")),
        (LINES, OLDS, array("q", []), [], 0, ("", "")),
        ([], [], None, [], 0, ("", "")),
        (LINES, ['a{x="1"}', 'a{x="2"}', "b"], None, ABC, 3, None),  # a value moved
        (LINES, ['a{x="1"}', 'a{x="3"} 2.5', "b"], None, ABC, 3, None),  # a label
        (LINES, OLDS[:2], None, ["A", "B"], 2, None),  # a line more than the plan's
        (LINES, [*OLDS, "c"], None, [*ABC, "D"], 4, None),  # a line fewer
        (['a{x="1"} 1'], OLDS[:1], None, ["A"], 1, None),  # no newline at the end
        (["\n"], [""], None, ["A"], 1, None),  # an empty line
        (["a 1\n"], ["a 1"], None, ["A"], 1, None),  # no value after the prefix
        (["ab 1\n"], ["a"], None, ["A"], 1, None),  # the prefix is shorter than the line's
    ],
)  # fmt: skip
def test_table(
    chunks: list[str],
    olds: list[str],
    order: array[int] | None,
    news: list[str],
    split: int,
    expected: tuple[str, str] | None,
) -> None:
    assert both(chunks, olds, order, news, split) == expected


def test_c_refuses_what_it_cannot_read() -> None:
    olds, ends = joined(OLDS)
    abc, abc_ends = joined(ABC)
    one, one_end = array("q", [0]), array("q", [1])
    with pytest.raises(TypeError, match="ASCII"):
        apply_plan(["é 1\n"], "é", one_end, None, "A", one_end, 1)
    with pytest.raises(TypeError, match="ASCII"):
        apply_plan(LINES, olds, ends, None, "ABé", abc_ends, 1)
    with pytest.raises(TypeError, match="int64"):
        apply_plan(LINES, olds, ends, array("i", [0]), "A", one_end, 1)
    with pytest.raises(TypeError, match="int64"):
        apply_plan(LINES, olds, array("i", ends), None, abc, abc_ends, 1)
    with pytest.raises(ValueError, match="one length"):
        apply_plan(LINES, olds, ends, array("q", [0, 1]), "A", one_end, 1)
    with pytest.raises(ValueError, match="one length"):
        apply_plan(LINES, olds, ends, None, "A", one_end, 1)
    with pytest.raises(ValueError, match="where its text ends"):
        apply_plan(LINES, olds, ends, None, abc + "D", abc_ends, 1)
    with pytest.raises(ValueError, match="decrease"):
        apply_plan(LINES, olds, ends, None, abc, array("q", [2, 1, 3]), 1)
    with pytest.raises(ValueError, match="split"):
        apply_plan(LINES, olds, ends, None, abc, abc_ends, 4)
    with pytest.raises(IndexError):
        apply_plan(LINES, olds, ends, array("q", [3]), "A", one_end, 1)
    assert apply_plan(LINES, olds, ends, one, "A", one_end, 1) == ("A 1\n", "")


Plan = tuple[list[str], list[str], "array[int]", list[str], int]
TEXT = st.text(alphabet='ab{}=" ,\\', max_size=6)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """Lines cut into chunks, each line's prefix (sometimes another), an order, news and
    where to split them."""
    lines = [
        f"{draw(TEXT)} {draw(st.text(alphabet='0 1', min_size=0, max_size=3))}\n"
        for _ in range(draw(st.integers(0, 6)))
    ]
    olds = [line.rpartition(" ")[0] for line in lines]
    if draw(st.booleans()):  # a prefix the plan holds otherwise, or a line more or fewer
        olds = draw(st.lists(st.sampled_from([*olds, "a", "a{", 'a="']), max_size=7))
    cuts = sorted(draw(st.lists(st.integers(0, len(lines)), max_size=3)))  # whole lines
    chunks = ["".join(lines[a:b]) for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
    if chunks[-1] and draw(st.booleans()):  # but the last one cut short
        chunks[-1] = chunks[-1][: -draw(st.integers(1, len(chunks[-1])))]
    order = draw(st.lists(st.integers(0, max(len(olds) - 1, 0)), max_size=8)) if olds else []
    news = draw(st.lists(TEXT, min_size=len(order), max_size=len(order)))
    return chunks, olds, array("q", order), news, draw(st.integers(0, len(order)))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans())
def test_c_and_python_agree(plan: Plan) -> None:
    chunks, olds, order, news, split = plan
    got = both(chunks, olds, order, news, split)
    lines = "".join(chunks).split("\n")
    holds = lines[-1] == "" and [line.rpartition(" ")[0] for line in lines[:-1]] == olds
    assert (got is not None) == (holds and all(" " in line for line in lines[:-1]))


@pytest.fixture(params=[True, False], ids=["c", "python"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Plans applied by `apply_plan` (C) or by `_apply_plan`, whatever
    ``SIDECAR_NO_EXTENSIONS`` says (with it, the module does not import the C one)."""
    use_c: bool = request.param
    monkeypatch.setattr(families_module, "C_RUNS", use_c)
    for name in ("apply_plan", "take_run"):
        monkeypatch.setattr(families_module, name, getattr(_runs, name), raising=False)
    return use_c


# app_other renamed into app_queue, whose own series all change (their x dropped): the
# renamed series join app_queue's remembered ones, or collide with one (both dropped)
RENAME: list[dict[str, Any]] = [
    {"action": "labeldrop", "regex": "x"},
    {"source_labels": ["__name__"], "regex": "app_other", "target_label": "__name__",
     "replacement": "app_queue"},
]  # fmt: skip


@pytest.mark.parametrize("openmetrics", [False, True])
@pytest.mark.parametrize(
    ("other", "collisions"), [("404", 0), ("200", 2)], ids=["joined", "collided"]
)
def test_a_renamed_family_joins_a_remembered_one(
    engine: bool,
    monkeypatch: pytest.MonkeyPatch,
    openmetrics: bool,
    other: str,
    collisions: int,
) -> None:
    chain = compiled(RENAME)
    counts = Recorded()
    relabeller = Relabeller(chain, counts)
    series = [("app_queue", "200", "1"), ("app_queue", "500", "2"), ("app_other", other, "1")]
    probed: list[str] = []
    original = families_module.probe

    def counted(chain: Any, family: Any) -> str:
        probed.append(family.name)
        return original(chain, family)

    monkeypatch.setattr(families_module, "probe", counted)
    for scrape in range(3):
        text = body(series, [scrape, 10 + scrape, 20 + scrape], openmetrics)
        probed.clear()
        before = counts.counts.get("collision", 0)
        got = relabeller.apply(Target(text, openmetrics).families(), "merge")
        if scrape:  # app_queue by its plan, unprobed (app_other's plan renames it)
            assert "app_queue" not in probed
            assert "app_other" in probed
        anew = Relabeller(chain, remember=False).apply(
            Target(text, openmetrics).families(), "merge"
        )
        assert shown(got) == shown(anew)
        assert counts.counts.get("collision", 0) - before == collisions
    (queue,) = (
        "".join(f.chunks) for f in got if isinstance(f, RawFamily) and f.name == "app_queue"
    )
    assert 'app_queue{code="500"} 12.0\n' in queue
    assert ('app_queue{code="404"} 22.0\n' in queue) is (other == "404")
    assert ('app_queue{code="200"}' in queue) is (other != "200")


CODES = ["200", "404", "500", 'a"b\\c', "é"]  # (a non-ASCII value: the Python spelling)
series_strategy = st.lists(
    st.tuples(
        st.sampled_from(["app_requests", "app_queue", "app_other"]),
        st.sampled_from(CODES),
        st.sampled_from(["", "1"]),
    ),
    min_size=1,
    max_size=8,
    unique=True,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=st.lists(rule, min_size=1, max_size=3), series=series_strategy)
def test_a_scrape_by_plan_renders_what_one_without_plans_renders(
    rules: list[dict[str, Any]], series: list[tuple[str, str, str]]
) -> None:
    """The same bytes in both formats, whichever format the target was read in: the
    plans made by the first scrape, used by the second (values changed)."""
    chain = compiled(rules)
    for read_as_openmetrics in (False, True):
        remembered = Relabeller(chain)
        for scrape in range(2):
            text = body(series, list(range(scrape, scrape + len(series))), read_as_openmetrics)
            for accept in (TEXT_ACCEPT, OPENMETRICS_ACCEPT):
                got = UnifiedCollector(
                    [Target(text, read_as_openmetrics)], relabel=remembered
                ).render(accept, "")
                anew = UnifiedCollector(
                    [Target(text, read_as_openmetrics)], relabel=Relabeller(chain, remember=False)
                ).render(accept, "")
                assert got.body == anew.body
