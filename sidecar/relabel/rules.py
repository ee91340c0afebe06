"""Prometheus's ``relabel_config`` on one label set (pure; no I/O, no families).

`compile_rules` turns the validated ``relabel:`` entries into `Rule`; `process` runs a
chain over one series' labels (``__name__`` included) exactly as Prometheus's
``relabel.Process`` does: ``keep``/``drop`` test the source labels' values joined with
``separator`` against the anchored ``regex``; ``replace`` writes the expanded
``replacement`` to the expanded ``target_label`` (an empty result deletes it; an
invalid target name skips the rule); ``labeldrop``/``labelkeep`` remove the labels
whose names match / do not match; ``labelmap`` copies each label whose name matches to
the expanded ``replacement``. Our addition, ``match``: label name → anchored regex, all
of which must hold (a missing label is the empty string) for the rule to apply; for
``keep`` a series that fails ``match`` is dropped, as one that fails ``regex``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sidecar.relabel.regex import anchored, expand

__all__ = [
    "ACTIONS",
    "NAME",
    "SOURCES",
    "Rule",
    "RuleSpec",
    "compile_rules",
    "is_label_name",
    "is_metric_name",
    "process",
]

NAME = "__name__"
ACTIONS = ("replace", "keep", "drop", "labeldrop", "labelkeep", "labelmap")
SOURCES = ("proxy", "ingest", "merge", "sidecar")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def is_label_name(name: str) -> bool:
    """Prometheus's (legacy) label name grammar."""
    return _LABEL_NAME.fullmatch(name) is not None


def is_metric_name(name: str) -> bool:
    """Prometheus's metric name grammar."""
    return _METRIC_NAME.fullmatch(name) is not None


class RuleSpec(Protocol):
    """What `compile_rules` reads of one ``relabel:`` entry (`sidecar.config.RelabelRule`)."""

    @property
    def action(self) -> str: ...
    @property
    def source_labels(self) -> tuple[str, ...]: ...
    @property
    def separator(self) -> str: ...
    @property
    def target_label(self) -> str | None: ...
    @property
    def regex(self) -> str: ...
    @property
    def replacement(self) -> str: ...
    @property
    def match(self) -> Mapping[str, str]: ...
    @property
    def source(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule."""

    action: str
    source_labels: tuple[str, ...]
    separator: str
    target_label: str
    regex: re.Pattern[str]
    replacement: str
    match: tuple[tuple[str, re.Pattern[str]], ...]
    source: str | None
    reads: frozenset[str]  # the labels whose values the rule reads

    def matches(self, labels: Mapping[str, str]) -> bool:
        """``match`` holds for these labels."""
        return all(p.fullmatch(labels.get(k, "")) is not None for k, p in self.match)

    def value(self, labels: Mapping[str, str]) -> str:
        """The source labels' values joined with ``separator`` (missing ones empty)."""
        return self.separator.join(labels.get(name, "") for name in self.source_labels)


def compile_rules(specs: Sequence[RuleSpec]) -> tuple[Rule, ...]:
    """The validated config entries, compiled."""
    return tuple(
        Rule(
            action=s.action,
            source_labels=tuple(s.source_labels),
            separator=s.separator,
            target_label=s.target_label or "",
            regex=anchored(s.regex),
            replacement=s.replacement,
            match=tuple((k, anchored(v)) for k, v in s.match.items()),
            source=s.source,
            reads=frozenset((*s.source_labels, *s.match)),
        )
        for s in specs
    )


def process(rules: Sequence[Rule], labels: dict[str, str]) -> dict[str, str] | None:
    """Run ``rules`` over ``labels`` (changed in place); None when a rule drops the series.

    Labels with an empty value are removed at the end, as Prometheus's label builder does.
    """
    for rule in rules:
        action = rule.action
        if action == "keep":
            if (rule.match and not rule.matches(labels)) or rule.regex.fullmatch(
                rule.value(labels)
            ) is None:
                return None
            continue
        if rule.match and not rule.matches(labels):
            continue
        if action == "drop":
            if rule.regex.fullmatch(rule.value(labels)) is not None:
                return None
        elif action == "replace":
            _replace(rule, labels)
        elif action == "labeldrop":
            for name in [n for n in labels if rule.regex.fullmatch(n) is not None]:
                del labels[name]
        elif action == "labelkeep":
            for name in [n for n in labels if rule.regex.fullmatch(n) is None]:
                del labels[name]
        else:  # labelmap: every original label is read before any is written
            for name, value in list(labels.items()):
                found = rule.regex.fullmatch(name)
                if found is not None:
                    labels[expand(rule.replacement, found)] = value
    for name in [n for n, v in labels.items() if not v]:
        del labels[name]
    return labels


def replace_target(rule: Rule, labels: Mapping[str, str]) -> tuple[str, str] | None:
    """What a ``replace`` rule writes: (target label, value; "" deletes), or None."""
    found = rule.regex.fullmatch(rule.value(labels))
    if found is None:
        return None
    target = expand(rule.target_label, found)
    if not is_label_name(target):
        return None
    return target, expand(rule.replacement, found)


def _replace(rule: Rule, labels: dict[str, str]) -> None:
    written = replace_target(rule, labels)
    if written is None:
        return
    target, value = written
    if value:
        labels[target] = value
    else:
        labels.pop(target, None)
