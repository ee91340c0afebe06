"""Helpers of the relabel tests: an app's exposition, a merge target's families, the
dropped counter as a tally, hypothesis rules, comparable families."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, Summary
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from sidecar.config import config_from_dict
from sidecar.merge.rawtext import RawFamily, parse_fast
from sidecar.relabel.rules import Rule, compile_rules

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def app_exposition(openmetrics: bool = False) -> str:
    registry = CollectorRegistry()
    requests = Counter("app_requests", "Requests", ["code", "otel_scope_name"], registry=registry)
    requests.labels("200", "lib").inc(3)
    requests.labels("500", "lib").inc(1)
    latency = Histogram("app_latency_seconds", "Latency", ["code"], registry=registry,
                        buckets=(0.1, 1.0))  # fmt: skip
    latency.labels("200").observe(0.05)
    latency.labels("500").observe(2)
    size = Summary("app_size_bytes", "Sizes", ["code"], registry=registry)
    size.labels("200").observe(10)
    Gauge("go_goroutines", "Goroutines", registry=registry).set(7)
    Gauge("app_queue", "Queue", ["queue"], registry=registry).labels("a").set(1)
    Info("app_build", "Build", registry=registry).info({"version": "1.2"})
    return (generate_openmetrics if openmetrics else generate_latest)(registry).decode()


class Recorded:
    """``sidecar_relabel_dropped_total`` as a plain tally (our `Dropped` interface)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, amount: int, attributes: dict[str, str]) -> None:
        reason = attributes["reason"]
        self.counts[reason] = self.counts.get(reason, 0) + amount


class Target:
    """A merge target's families (as `sidecar.merge` parses them)."""

    relabel_source = "merge"

    def __init__(self, body: str, openmetrics: bool = False) -> None:
        self._families = parse_fast(body, openmetrics, {})

    def families(self) -> list[Any]:
        return list(self._families)

    def collect(self) -> list[Any]:
        return [f.to_metric() if hasattr(f, "to_metric") else f for f in self._families]


LABELS = ["code", "otel_scope_name", "queue", "le", "quantile", "version", "__name__", "x"]
REGEXES = ["5..", "200", ".*", "", "app_.*", ".*_created", ".*_bucket", "go_.*", "(.*)", "l.*"]

rule = st.one_of(
    st.builds(
        lambda action, labels, regex: {"action": action, "source_labels": labels, "regex": regex},
        st.sampled_from(["keep", "drop"]),
        st.lists(st.sampled_from(LABELS), min_size=1, max_size=2),
        st.sampled_from(REGEXES),
    ),
    st.builds(
        lambda labels, regex, target, replacement: {
            "source_labels": labels,
            "regex": regex,
            "target_label": target,
            "replacement": replacement,
        },
        st.lists(st.sampled_from(LABELS), max_size=2),
        st.sampled_from(REGEXES),
        st.sampled_from(LABELS),
        st.sampled_from(["$1", "", "x", "app_y", "${1}_z", "app_queue"]),
    ),
    st.builds(
        lambda action, regex: {"action": action, "regex": regex},
        st.sampled_from(["labeldrop", "labelkeep", "labelmap"]),
        st.sampled_from(["code|le|quantile|__name__", *REGEXES]),
    ),
)

CODES = ["200", "404", "500", "5xx", 'a"b\\c']
# a series of `body`: (family, code, x)
series_strategy = st.tuples(
    st.sampled_from(["app_requests", "app_queue", "app_other"]),
    st.sampled_from(CODES),
    st.sampled_from(["", "1", "2"]),
)
# what a remembering relabeller is held to: rules, a scrape's series, a later scrape's
# series and the values (each body holds a series once; values drawn per scrape)
rescrapes = {
    "rules": st.lists(rule, min_size=1, max_size=3),
    "first": st.lists(series_strategy, min_size=1, max_size=12, unique=True),
    "later": st.lists(series_strategy, max_size=12, unique=True),
    "values": st.lists(st.integers(0, 10**6), min_size=12, max_size=12),
}


def body(series: list[tuple[str, str, str]], values: list[int], openmetrics: bool) -> str:
    """An app's exposition: counters ``app_requests``, gauges ``app_queue`` and
    ``app_other`` (labels ``code`` and ``x``)."""
    registry = CollectorRegistry()
    kinds: dict[str, Any] = {
        "app_requests": Counter("app_requests", "R", ["code", "x"], registry=registry),
        "app_queue": Gauge("app_queue", "Q", ["code", "x"], registry=registry),
        "app_other": Gauge("app_other", "O", ["code", "x"], registry=registry),
    }
    for (name, code, x), value in zip(series, values, strict=False):
        metric = kinds[name].labels(code, x)
        if name == "app_requests":
            metric.inc(value)
        else:
            metric.set(value)
    return (generate_openmetrics if openmetrics else generate_latest)(registry).decode()


def shown(families: list[Any]) -> list[tuple[str, str, Any]]:
    """Families as comparable values (a raw family: its text, and where a counter's
    ``_created`` lines begin when it came as text)."""
    return [
        (f.name, f.type, (f.chunks, f.split) if isinstance(f, RawFamily) else samples_of(f))
        for f in families
    ]


def samples_of(metric: Metric) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for s in metric.samples]


def compiled(rules: list[dict[str, Any]]) -> tuple[Rule, ...]:
    return compile_rules(config_from_dict({"relabel": rules}).relabel)
