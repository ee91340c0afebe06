"""Helpers of the merge fast path's differential tests (`sidecar.merge.rawtext`): the
prometheus_client reference, the comparison with it, and generated exposition bodies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest
from hypothesis import strategies as st
from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.merge import _runs, rawtext
from sidecar.merge.fetch import parse_exposition
from sidecar.merge.rawtext import RawFamily, Unsupported, fold_created, parse_fast

Normal = list[tuple[str, str, str, str, list[tuple[str, tuple[tuple[str, str], ...], str]]]]


def normal(families: Iterable[RawFamily | Metric]) -> Normal:
    out = []
    for family in families:
        metric = family.to_metric() if isinstance(family, RawFamily) else family
        samples = [
            (s.name, tuple(sorted(s.labels.items())), repr(float(s.value))) for s in metric.samples
        ]
        out.append((metric.name, metric.type, metric.documentation, metric.unit, samples))
    return out


def reference(body: str, openmetrics: bool, labels: Mapping[str, str]) -> Normal:
    """prometheus_client alone (plus the _created fold and configured labels)."""
    metrics = list(parse_openmetrics(body) if openmetrics else parse_text(body))
    for metric in metrics:
        for i, s in enumerate(metric.samples):
            merged = dict(s.labels)
            for k, v in labels.items():
                if k in merged:
                    merged["exported_" + k] = merged[k]
                merged[k] = v
            metric.samples[i] = s._replace(labels=merged)
    return normal(metrics if openmetrics else fold_created(metrics))


def check_same(body: str, openmetrics: bool, labels: Mapping[str, str]) -> None:
    expected = reference(body, openmetrics, labels)
    try:
        fast = parse_fast(body, openmetrics, labels)
    except Unsupported:
        fast = None
    if fast is not None:
        assert normal(fast) == expected
        for family in fast:  # each raw family renders to text prometheus_client reads back the same
            if isinstance(family, RawFamily):
                out: list[str] = []
                family.render(openmetrics, out)
                again = "".join(out) + ("# EOF\n" if openmetrics else "")
                parsed = list(parse_openmetrics(again) if openmetrics else parse_text(again))
                assert normal(fold_created(parsed) if not openmetrics else parsed) == normal(
                    [family]
                )
    assert normal(parse_exposition(body, openmetrics, labels)) == expected


Outcome = list[tuple[str, str, str, str, str]] | str


def rendered(families: list[RawFamily | Metric]) -> Outcome:
    """Each family's name, type, kind and its exact text in both formats."""
    out = []
    for family in families:
        if not isinstance(family, RawFamily):
            out.append((family.name, family.type, "Metric", repr(family.samples), ""))
            continue
        text: list[str] = []
        om: list[str] = []
        family.render(False, text)
        family.render(True, om)
        out.append((family.name, family.type, "RawFamily", "".join(text), "".join(om)))
    return out


def assert_as_prometheus_client(body: str, openmetrics: bool, labels: Mapping[str, str]) -> None:
    """The same families as prometheus_client's parser, or refused as it refuses them."""
    try:
        reference(body, openmetrics, labels)
    except ValueError:
        with pytest.raises(ValueError):  # noqa: PT011  # both parsers raise plain ValueError
            parse_exposition(body, openmetrics, labels)
    else:
        check_same(body, openmetrics, labels)


def use_c_paths(monkeypatch: pytest.MonkeyPatch, use_c: bool) -> None:
    """Prove runs (and scan whole bodies) in C or not, whatever ``SIDECAR_NO_EXTENSIONS``
    says: with it, rawtext does not import the C module, so the tests hand it over."""
    monkeypatch.setattr(rawtext._Splitter, "use_c", use_c)
    monkeypatch.setattr(rawtext._Splitter, "whole_body", use_c)
    for name in ("scan_text", "split_created", "take_run"):
        monkeypatch.setattr(rawtext, name, getattr(_runs, name), raising=False)


# Generated bodies: families whose lines mostly share label names (the whole-run path)
# and sometimes do not, with values that need escapes, in both formats.
label_value = st.text(alphabet=st.sampled_from('ab "\\\n}{,=é'), max_size=6)


label_set = st.sampled_from([(), ("x",), ("x", "y"), ("y", "x"), ("source",)])


def _value_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bool]:
    openmetrics = draw(st.booleans())
    lines = []
    for index in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["counter", "gauge", "untyped"]))
        kind = "unknown" if kind == "untyped" and openmetrics else kind
        family = f"f{index}"
        names = {"counter": [family + "_total"], "gauge": [family], "untyped": [family]}
        names["unknown"] = [family]
        if kind == "counter" and openmetrics:
            names["counter"].append(family + "_created")
        header = family + "_total" if kind == "counter" and not openmetrics else family
        lines.append(f"# HELP {header} Help {index}.")
        lines.append(f"# TYPE {header} {kind}")
        uniform = draw(label_set)
        # one series once: a label set in another order is the same series (a target that
        # repeats a series is malformed; README "merge-export" says what the fast path does)
        seen: set[frozenset[tuple[str, str]]] = set()
        for _ in range(draw(st.integers(0, 5))):
            keys = uniform if draw(st.integers(0, 4)) else draw(label_set)
            values = tuple(draw(label_value) for _ in keys)
            series = frozenset(zip(keys, values, strict=True))
            if series in seen:
                continue
            seen.add(series)
            pairs = ",".join(f'{k}="{_value_text(v)}"' for k, v in zip(keys, values, strict=True))
            value = draw(st.sampled_from(["1", "2.5", "-3e+09", "+Inf", "NaN", ".5", "-0.0", "+2"]))
            for name in names[kind]:
                lines.append(f"{name}{{{pairs}}} {value}" if keys else f"{name} {value}")
    body = "\n".join(lines) + "\n"
    return (body + "# EOF\n" if openmetrics else body), openmetrics


_MUTANTS = '"\\{}=, \n#-+.eEINaf0_\x00\t:é'


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bool]:
    """A generated body with a few characters inserted, replaced or deleted."""
    body, openmetrics = draw(bodies())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        edit = draw(st.sampled_from(["insert", "replace", "delete"]))
        char = draw(st.sampled_from(_MUTANTS)) if edit != "delete" else ""
        body = body[:at] + char + body[at + (edit != "insert") :]
    return body, openmetrics
