"""Relabel rules on one label set: the same inputs and outputs as Prometheus's relabelling.

The cases are Prometheus's own (``model/relabel/relabel_test.go``, ``TestRelabel``) and
the examples of its ``relabel_config`` documentation, written as our config entries.
"""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.config import config_from_dict
from sidecar.relabel.regex import anchored, expand
from sidecar.relabel.rules import compile_rules, process


def run(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    compiled = compile_rules(config_from_dict({"relabel": rules}).relabel)
    return process(compiled, dict(labels))


ABC = {"a": "foo", "b": "bar", "c": "baz"}

CASES: list[tuple[str, dict[str, str], list[dict[str, Any]], dict[str, str] | None]] = [
    (
        "replace with two group references",
        ABC,
        [{"source_labels": ["a"], "regex": "f(.*)", "target_label": "d",
          "separator": ";", "replacement": "ch${1}-ch${1}", "action": "replace"}],
        {"a": "foo", "b": "bar", "c": "baz", "d": "choo-choo"},
    ),
    (
        "replace across two source labels and the separator",
        ABC,
        [{"source_labels": ["a", "b"], "regex": "f(.*);(.*)r", "target_label": "a",
          "separator": ";", "replacement": "b${1}${2}m"}],
        {"a": "boobam", "b": "bar", "c": "baz"},
    ),
    (
        "replace chained: later rules see earlier results",
        ABC,
        [
            {"source_labels": ["c"], "regex": "(b).*", "target_label": "d", "replacement": "$1"},
            {"source_labels": ["d"], "regex": "(.*)", "target_label": "e", "replacement": "${1}z"},
        ],
        {"a": "foo", "b": "bar", "c": "baz", "d": "b", "e": "bz"},
    ),
    (
        "drop matching",
        ABC,
        [{"source_labels": ["a"], "regex": ".*o.*", "action": "drop"}],
        None,
    ),
    (
        "drop not matching: the regex is anchored (o alone does not match foo)",
        ABC,
        [{"source_labels": ["a"], "regex": "o", "action": "drop"}],
        ABC,
    ),
    (
        "keep matching",
        ABC,
        [{"source_labels": ["a"], "regex": "f.*", "action": "keep"}],
        ABC,
    ),
    (
        "keep not matching",
        ABC,
        [{"source_labels": ["a"], "regex": "no-match", "action": "keep"}],
        None,
    ),
    (
        "keep on a missing label: its value is the empty string",
        {"a": "foo"},
        [{"source_labels": ["z"], "regex": "", "action": "keep"}],
        {"a": "foo"},
    ),
    (
        "replace with a missing source label and the default regex deletes the target",
        {"a": "foo", "d": "x"},
        [{"source_labels": ["z"], "target_label": "d"}],
        {"a": "foo"},
    ),
    (
        "replacement naming a group that does not exist deletes the target",
        {"a": "foo"},
        [{"source_labels": ["a"], "regex": "(f)oo", "target_label": "a", "replacement": "$2"}],
        {},
    ),
    (
        "$1x names group 1x (empty); ${1}x is group 1 then x",
        {"a": "foo"},
        [
            {"source_labels": ["a"], "regex": "(f)oo", "target_label": "b", "replacement": "$1x"},
            {"source_labels": ["a"], "regex": "(f)oo", "target_label": "c", "replacement": "${1}x"},
        ],
        {"a": "foo", "c": "fx"},
    ),
    (
        "replace with a target from the match (Prometheus's some-name-value case)",
        {"a": "some-name-value"},
        [{"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "target_label": "${1}",
          "replacement": "${2}"}],
        {"a": "some-name-value", "name": "value"},
    ),
    (
        "replace whose expanded target is not a label name is skipped",
        {"a": "some-name-0"},
        [{"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "target_label": "${3}",
          "replacement": "${1}"}],
        {"a": "some-name-0"},
    ),
    (
        "labelmap copies matching names",
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [{"action": "labelmap", "regex": "(b.*)", "replacement": "bar_${1}"}],
        {"a": "foo", "b1": "bar", "b2": "baz", "bar_b1": "bar", "bar_b2": "baz"},
    ),
    (
        "labelmap of Kubernetes-style meta labels",
        {"__meta_kubernetes_pod_label_app": "web", "a": "x"},
        [{"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"}],
        {"__meta_kubernetes_pod_label_app": "web", "app": "web", "a": "x"},
    ),
    (
        "labeldrop",
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [{"action": "labeldrop", "regex": "(b.*)"}],
        {"a": "foo"},
    ),
    (
        "labelkeep",
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [{"action": "labelkeep", "regex": "(b.*)"}],
        {"b1": "bar", "b2": "baz"},
    ),
    (
        "labeldrop is anchored: b does not drop b1",
        {"a": "foo", "b1": "bar"},
        [{"action": "labeldrop", "regex": "b"}],
        {"a": "foo", "b1": "bar"},
    ),
    (
        "empty values are removed at the end",
        {"a": "foo"},
        [{"source_labels": ["a"], "regex": "foo", "target_label": "b", "replacement": ""}],
        {"a": "foo"},
    ),
    (
        "$$ is a literal dollar",
        {"a": "foo"},
        [{"source_labels": ["a"], "target_label": "b", "replacement": "$$1"}],
        {"a": "foo", "b": "$1"},
    ),
    (
        "match shorthand: drop by name",
        {"__name__": "go_goroutines", "a": "1"},
        [{"action": "drop", "match": {"__name__": "go_.*"}}],
        None,
    ),
    (
        "match shorthand: keep drops what does not match",
        {"__name__": "process_cpu_seconds_total"},
        [{"action": "keep", "match": {"__name__": "app_.*|http_.*"}}],
        None,
    ),
    (
        "match shorthand: every listed label must match",
        {"__name__": "app_x", "code": "200"},
        [{"action": "drop", "match": {"__name__": "app_.*", "code": "5.."}}],
        {"__name__": "app_x", "code": "200"},
    ),
    (
        "match shorthand guards a replace",
        {"__name__": "app_x", "service_name": "shop"},
        [
            {"match": {"__name__": "other_.*"}, "source_labels": ["service_name"],
             "target_label": "job"},
            {"match": {"__name__": "app_.*"}, "source_labels": ["service_name"],
             "target_label": "svc"},
        ],
        {"__name__": "app_x", "service_name": "shop", "svc": "shop"},
    ),
    (
        "the issue's rule: service_name becomes job",
        {"__name__": "app_x", "service_name": "shop"},
        [{"action": "replace", "source_labels": ["service_name"], "target_label": "job"}],
        {"__name__": "app_x", "service_name": "shop", "job": "shop"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("labels", "rules", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_relabel_like_prometheus(
    labels: dict[str, str], rules: list[dict[str, Any]], expected: dict[str, str] | None
) -> None:
    assert run(rules, labels) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$1", "a"),
        ("${1}", "a"),
        ("$name", "b"),
        ("${name}x", "bx"),
        ("$namex", ""),
        ("$9", ""),
        ("$$", "$"),
        ("$", "$"),
        ("${1", "${1"),
        ("x$1-$2y", "xa-"),
    ],
)
def test_expand_is_gos_regexp_expand(template: str, expected: str) -> None:
    found = anchored(r"(a)(?P<name>b)").fullmatch("ab")
    assert found is not None
    assert expand(template, found) == expected


def test_regex_is_anchored_at_both_ends_even_before_a_newline() -> None:
    """Python's ``$`` matches before a final newline; Prometheus's anchoring does not."""
    assert anchored("foo").fullmatch("foo\n") is None
    assert anchored("foo|bar").fullmatch("bar") is not None
    assert anchored("foo|bar").fullmatch("foobar") is None
