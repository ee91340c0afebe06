"""Read the event metrics back from a real Prometheus exposition (shared by the tests)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

SCOPE_LABELS = frozenset({"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"})


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition as {(name, labels without otel_scope_*): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset((k, v) for k, v in sample.labels.items() if k not in SCOPE_LABELS)
            found[(sample.name, labels)] = sample.value
    return found


def value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """One sample's value, 0 when the series does not exist (yet)."""
    return samples(text).get((name, frozenset((labels or {}).items())), 0.0)


def event_family_names(text: str) -> set[str]:
    """Names of the exposed sample families that belong to the event metrics."""
    return {name for name, _ in samples(text) if name.startswith("causality_")}
