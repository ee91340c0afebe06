"""Metric and label names outside the legacy character set, escaped for one scraper.

Prometheus's escaping schemes (``allow-utf-8``, ``underscores``, ``dots``, ``values``:
the ``escaping`` parameter read by `sidecar.negotiation`), with the rules of
``EscapeName`` and ``EscapeMetricFamily`` in prometheus/common ``model/metric.go``. A
family's sample names are its escaped name plus the sample's suffix, so the family stays
one family. The rules of each scheme: docs/ingest.md.
"""

from __future__ import annotations

import functools
import re

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from sidecar.negotiation import Escaping
from sidecar.protobuf import DerivedNatives, SeriesParts, series_natives

__all__ = [
    "escape_label_name",
    "escape_metric",
    "escape_metric_name",
    "escaped",
    "is_legacy_label_name",
    "is_legacy_metric_name",
    "metric_is_legacy",
]

_LEGACY_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
CACHED_NAMES = 1 << 14


def is_legacy_metric_name(name: str) -> bool:
    """``[a-zA-Z_:][a-zA-Z0-9_:]*``."""
    return _LEGACY_METRIC.fullmatch(name) is not None


def is_legacy_label_name(name: str) -> bool:
    """``[a-zA-Z_][a-zA-Z0-9_]*``."""
    return _LEGACY_LABEL.fullmatch(name) is not None


def _legacy_rune(char: str, index: int, colon: bool) -> bool:
    return (
        "a" <= char <= "z"
        or "A" <= char <= "Z"
        or char == "_"
        or (colon and char == ":")
        or ("0" <= char <= "9" and index > 0)
    )


def _escape(name: str, scheme: Escaping, colon: bool) -> str:
    if not name or scheme is Escaping.ALLOW_UTF8:
        return name
    if (is_legacy_metric_name if colon else is_legacy_label_name)(name):
        return name
    out: list[str] = []
    if scheme is Escaping.UNDERSCORES:
        for index, char in enumerate(name):
            out.append(char if _legacy_rune(char, index, colon) else "_")
    elif scheme is Escaping.DOTS:
        for index, char in enumerate(name):
            if char == "_":
                out.append("__")
            elif char == ".":
                out.append("_dot_")
            else:
                out.append(char if _legacy_rune(char, index, colon) else "__")
    else:  # VALUES
        out.append("U__")
        for index, char in enumerate(name):
            if char == "_":
                out.append("__")
            elif _legacy_rune(char, index, colon):
                out.append(char)
            elif 0xD800 <= ord(char) <= 0xDFFF:  # a lone surrogate: not a valid rune
                out.append("_FFFD_")
            else:
                out.append(f"_{ord(char):x}_")
    return "".join(out)


@functools.lru_cache(maxsize=CACHED_NAMES)
def escape_metric_name(name: str, scheme: Escaping) -> str:
    """``name`` as a scraper that asked for ``scheme`` gets it."""
    return _escape(name, scheme, colon=True)


@functools.lru_cache(maxsize=CACHED_NAMES)
def escape_label_name(name: str, scheme: Escaping) -> str:
    """A label name as a scraper that asked for ``scheme`` gets it."""
    return _escape(name, scheme, colon=False)


def metric_is_legacy(metric: Metric) -> bool:
    """Every name of ``metric`` (family, samples, labels) is in the legacy set.

    A family may say so itself (``legacy_names``, set by the own registry's collector,
    whose label names it made): its samples are then not read."""
    known: bool | None = getattr(metric, "legacy_names", None)
    if known is not None:
        return known
    if not is_legacy_metric_name(metric.name):
        return False
    sample_names: set[str] = set()
    label_names: set[str] = set()
    for sample in metric.samples:  # (set.update of a dict's keys runs in C)
        sample_names.add(sample.name)
        label_names.update(sample.labels)
    return all(map(is_legacy_metric_name, sample_names)) and all(
        map(is_legacy_label_name, label_names)
    )


def escape_metric(metric: Metric, scheme: Escaping) -> Metric:
    """A copy of ``metric`` with every name escaped by ``scheme`` (itself for ``allow-utf-8``)."""
    if scheme is Escaping.ALLOW_UTF8:
        return metric
    family = escape_metric_name(metric.name, scheme)
    out = Metric(family, metric.documentation, metric.type, metric.unit)
    out.samples = [_escape_sample(s, metric.name, family, scheme) for s in metric.samples]
    if getattr(metric, "native_parts", None) is not None:  # a histogram's, new labels
        out.native_parts = DerivedNatives(  # type: ignore[attr-defined]
            family, functools.partial(_escaped_natives, metric, scheme)
        )
    return out


def _escaped_natives(metric: Metric, scheme: Escaping) -> SeriesParts:
    return {
        frozenset((escape_label_name(k, scheme), v) for k, v in labels): part
        for labels, part in series_natives(metric).items()
    }


def _escape_sample(sample: Sample, name: str, family: str, scheme: Escaping) -> Sample:
    if sample.name.startswith(name):
        sample_name = family + sample.name[len(name) :]
    else:
        sample_name = escape_metric_name(sample.name, scheme)
    labels = {escape_label_name(k, scheme): v for k, v in sample.labels.items()}
    return sample._replace(name=sample_name, labels=labels)


def escaped(metric: Metric, scheme: Escaping) -> Metric:
    """``metric`` for a scraper that asked for ``scheme``: itself when its names need no
    escaping (always with ``allow-utf-8``: the encoder quotes them), else `escape_metric`."""
    if scheme is Escaping.ALLOW_UTF8 or metric_is_legacy(metric):
        return metric
    return escape_metric(metric, scheme)
