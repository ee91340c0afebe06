"""A histogram's native part survives the paths that rebuild its family.

Native parts travel beside a family (`sidecar.protobuf.NativeParts`, looked up by series
labels): a family merged from two sources (the ingested one and a merge target's
protobuf reply of the same name), one that ``relabel:`` rules rewrite (labels changed,
renamed), and one whose names are escaped for the scraper are each built anew; each
series that is kept keeps its native part, under its new labels, in the protobuf answer.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client.core import Metric

from sidecar.config import RelabelRule
from sidecar.gen.io.prometheus.client import metrics_pb2 as pb
from sidecar.ingest import collector
from sidecar.ingest.naming import TranslationStrategy
from sidecar.ingest.store import Family
from sidecar.merge.pbparse import parse_protobuf
from sidecar.protobuf import CONTENT_TYPE, SeriesParts
from sidecar.relabel.families import Relabeller
from sidecar.relabel.rules import compile_rules
from sidecar.unified import UnifiedCollector
from tests.support.otlp import Harness, epoint, exponential, request
from tests.support.protobuf import by_name

PROTOBUF_UNDERSCORES = f"{CONTENT_TYPE};escaping=underscores"

Native = tuple[int, float, int, tuple[tuple[int, int], ...], tuple[int, ...]]


def _native(h: pb.Histogram) -> Native:
    spans = tuple((s.offset, s.length) for s in h.positive_span)
    return h.schema, h.zero_threshold, h.zero_count, spans, tuple(h.positive_delta)


def _natives(body: bytes, family: str) -> dict[frozenset[tuple[str, str]], Native]:
    """Each series' native part in a protobuf answer, by its labels."""
    out = {}
    for m in by_name(body)[family].metric:
        assert m.histogram.positive_span, f"{family}: a series without its native part"
        out[frozenset((p.name, p.value) for p in m.label)] = _native(m.histogram)
    return out


def _harness(path: str, name: str = "latency", **kwargs: object) -> Harness:
    harness = Harness(**kwargs)  # type: ignore[arg-type]
    harness.push(
        request(
            exponential(
                name,
                [epoint(0, (-1, [2, 0, 0, 10]), zero_count=1, total=55.0, labels={"path": path})],
            ),
            resource={},
        )
    )
    return harness


class _Target:
    """A merge target's protobuf reply as the merge hands it over (`parse_protobuf`)."""

    relabel_source = "merge"

    def __init__(self, body: bytes) -> None:
        self._metrics, dropped = parse_protobuf(body, None, keep_native=True)
        assert dropped == 0

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def _target(path: str) -> tuple[_Target, bytes]:
    body = UnifiedCollector([_harness(path).collector]).render(CONTENT_TYPE, "").body
    return _Target(body), body


def test_two_sources_of_one_family_keep_both_native_parts() -> None:
    own = _harness("/a")
    target, target_body = _target("/b")
    own_body = UnifiedCollector([own.collector]).render(CONTENT_TYPE, "").body
    merged = UnifiedCollector([own.collector, target]).render(CONTENT_TYPE, "").body
    assert _natives(merged, "latency") == {
        **_natives(own_body, "latency"),
        **_natives(target_body, "latency"),
    }


def test_a_series_another_source_has_keeps_the_higher_ones_native_part() -> None:
    own = _harness("/a")
    target, _ = _target("/a")  # the same series: the target's is dropped (a conflict)
    own_body = UnifiedCollector([own.collector]).render(CONTENT_TYPE, "").body
    merged = UnifiedCollector([own.collector, target]).render(CONTENT_TYPE, "").body
    assert _natives(merged, "latency") == _natives(own_body, "latency")
    assert len(by_name(merged)["latency"].metric) == 1


def _relabeller(*rules: RelabelRule) -> Relabeller:
    return Relabeller(compile_rules(rules))


def test_relabelled_series_keep_their_native_parts() -> None:
    own = _harness("/a")
    target, target_body = _target("/b")
    rules = _relabeller(
        RelabelRule(source_labels=("path",), target_label="route", replacement="r$1"),
        RelabelRule(action="labeldrop", regex="path"),
    )
    merged = UnifiedCollector([own.collector, target], relabel=rules).render(CONTENT_TYPE, "")
    before = {**_natives(_own_body(own), "latency"), **_natives(target_body, "latency")}
    assert _natives(merged.body, "latency") == {
        frozenset({("route", "r" + dict(key)["path"])}): native for key, native in before.items()
    }


def test_a_renamed_family_keeps_its_native_parts() -> None:
    target, target_body = _target("/b")
    rules = _relabeller(
        RelabelRule(
            source_labels=("__name__",),
            target_label="__name__",
            regex="latency(.*)",
            replacement="renamed$1",
            source="merge",
        )
    )
    merged = UnifiedCollector([target], relabel=rules).render(CONTENT_TYPE, "").body
    assert "latency" not in by_name(merged)
    assert _natives(merged, "renamed") == _natives(target_body, "latency")


def test_escaped_names_keep_their_native_parts() -> None:
    strategy = TranslationStrategy.NO_UTF8_ESCAPING_WITH_SUFFIXES
    harness = Harness(strategy=strategy)
    harness.push(
        request(
            exponential(
                "http.latency",
                [epoint(0, (-1, [2, 0, 0, 10]), total=55.0, labels={"url.path": "/a"})],
            ),
            resource={},
        )
    )
    unified = UnifiedCollector([harness.collector])
    utf8 = unified.render(f"{CONTENT_TYPE};escaping=allow-utf-8", "").body
    escaped = unified.render(PROTOBUF_UNDERSCORES, "").body
    (native,) = _natives(utf8, "http.latency").values()
    assert _natives(escaped, "http_latency") == {frozenset({("url_path", "/a")}): native}


def _own_body(harness: Harness) -> bytes:
    return UnifiedCollector([harness.collector]).render(CONTENT_TYPE, "").body


def test_text_answers_never_work_out_native_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored family's native parts are worked out only for a protobuf answer: a text
    answer that merges the family (so builds its `Metric`) pays nothing for them."""
    calls: list[str] = []
    real = collector.series_natives

    def counted(family: Family) -> SeriesParts:
        calls.append(family.descriptor.name)
        return real(family)

    monkeypatch.setattr(collector, "series_natives", counted)
    own = _harness("/a")
    target, _ = _target("/b")
    unified = UnifiedCollector([own.collector, target])
    assert "latency_count" in unified.render("text/plain;version=0.0.4", "").body.decode()
    assert calls == []
    assert len(_natives(unified.render(CONTENT_TYPE, "").body, "latency")) == 2
    assert calls == ["latency"]
