"""OTLP names, units and attributes to Prometheus names and labels.

Follows the OpenTelemetry "Prometheus and OpenMetrics compatibility" specification
(v1.33.0, "Metric metadata" and "Metric attributes") exactly as
``opentelemetry-exporter-prometheus`` (``opentelemetry/exporter/prometheus/_mapping.py``,
0.66b2) implements it; the unit tables are the ones that module copies from the
Collector's ``pkg/translator/prometheus/normalize_name.go`` (v0.101.0). A table test
compares every function here with the exporter's own on the same inputs.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping

__all__ = [
    "TranslationStrategy",
    "compliant_label_name",
    "compliant_name",
    "family_name",
    "label_name",
    "label_value",
    "map_unit",
    "metric_name",
    "sanitize_label",
    "sanitize_metric_name",
]

_SANITIZE_NAME_RE = re.compile(r"[^a-zA-Z0-9:]+")
_SANITIZE_LABEL_RE = re.compile(r"[^a-zA-Z0-9]+")
_NOT_NAME_RE = re.compile(r"[^a-zA-Z0-9:_]+")  # what separates a name's fields (not "_")
_UNIT_ANNOTATION_RE = re.compile(r"{.*}")

UNIT_MAPPINGS: Mapping[str, str] = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent",
}  # fmt: skip
PER_UNIT_MAPPINGS: Mapping[str, str] = {
    "s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month",
    "y": "year",
}  # fmt: skip
TOTAL_SUFFIX = "_total"


class TranslationStrategy(enum.StrEnum):
    """``ingest.translation_strategy``: Prometheus's OTLP receiver's strategies.

    - ``UnderscoreEscapingWithSuffixes`` (default): names and label names escaped to
      the legacy character set, the unit (and ``_total``) appended: today's names;
    - ``UnderscoreEscapingWithoutSuffixes``: escaped, no unit suffix;
    - ``NoUTF8EscapingWithSuffixes``: names and label names kept as OTLP wrote them
      (``http.server.request.duration_seconds``), the unit appended;
    - ``NoTranslation``: names and label names as OTLP wrote them, no unit suffix.

    A counter's samples are ``<name>_total`` under every strategy: both exposition
    formats name them so (OpenMetrics requires it), where Prometheus's OTLP receiver,
    writing to its TSDB directly, leaves ``_total`` out without suffixes. Kept UTF-8
    names reach only a scraper that asked ``escaping=allow-utf-8`` (`sidecar.escaping`).
    """

    UNDERSCORE_ESCAPING_WITH_SUFFIXES = "UnderscoreEscapingWithSuffixes"
    UNDERSCORE_ESCAPING_WITHOUT_SUFFIXES = "UnderscoreEscapingWithoutSuffixes"
    NO_UTF8_ESCAPING_WITH_SUFFIXES = "NoUTF8EscapingWithSuffixes"
    NO_TRANSLATION = "NoTranslation"

    @property
    def escapes(self) -> bool:
        """Names are escaped to the legacy character set."""
        return self.value.startswith("Underscore")

    @property
    def suffixes(self) -> bool:
        """The unit is appended to the name."""
        return self.value.endswith("WithSuffixes")


DEFAULT_STRATEGY = TranslationStrategy.UNDERSCORE_ESCAPING_WITH_SUFFIXES


def sanitize_metric_name(name: str) -> str:
    """Replace runs of characters outside ``[a-zA-Z0-9:]`` by ``_``; a leading digit too."""
    if name and name[0].isdigit():
        name = "_" + name[1:]
    return _SANITIZE_NAME_RE.sub("_", name)


def compliant_name(name: str) -> str:
    """A name escaped as Prometheus's OTLP receiver does without suffixes
    (prometheus/otlptranslator ``buildCompliantMetricName``, its simple case): the runs of
    characters outside ``[a-zA-Z0-9:_]`` separate fields joined by one ``_`` (so leading
    and trailing ones go, and existing underscores stay as they are), then ``_`` before a
    leading digit. Nothing is taken off: a unit already in the name (``_seconds``) stays.
    Empty when the escaped name is only underscores (the receiver refuses that metric)."""
    escaped = "_".join(field for field in _NOT_NAME_RE.split(name) if field)
    if escaped and escaped[0].isdigit():
        escaped = "_" + escaped
    if escaped != name and not escaped.strip("_"):
        return ""
    return escaped


def sanitize_label(key: str) -> str:
    """Replace runs of characters outside ``[a-zA-Z0-9]`` by ``_``; a leading digit too."""
    if key and key[0].isdigit():
        key = "_" + key[1:]
    return _SANITIZE_LABEL_RE.sub("_", key)


def map_unit(unit: str) -> str:
    """The Prometheus suffix of a UCUM unit: ``ms`` → ``milliseconds``, ``{x}`` → ``""``."""
    unit = _UNIT_ANNOTATION_RE.sub("", unit)
    if unit in UNIT_MAPPINGS:
        return UNIT_MAPPINGS[unit]
    top, slash, bottom = unit.partition("/")
    if slash:
        bottom = _SANITIZE_NAME_RE.sub("_", bottom)
        if bottom:
            top = _SANITIZE_NAME_RE.sub("_", top)
            top = UNIT_MAPPINGS.get(top, top)
            bottom = PER_UNIT_MAPPINGS.get(bottom, bottom)
            return f"{top}_per_{bottom}" if top else f"per_{bottom}"
    return _SANITIZE_NAME_RE.sub("_", unit).strip("_")


def family_name(name: str, unit: str, *, is_counter: bool) -> str:
    """The family name prometheus_client derives (``_total`` stripped from counters, unit appended).

    Args:
        name: the sanitized metric name.
        unit: the mapped unit suffix (may be empty).
        is_counter: counters lose a trailing ``_total`` first (it is added back per sample).
    """
    if is_counter and name.endswith(TOTAL_SUFFIX):
        name = name[: -len(TOTAL_SUFFIX)]
    if unit and not name.endswith("_" + unit):
        name += "_" + unit
    return name


def label_value(value: object) -> str:
    """A label value as the exporter writes it: strings as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def metric_name(
    name: str,
    unit: str,
    *,
    is_counter: bool,
    strategy: TranslationStrategy = DEFAULT_STRATEGY,
    is_gauge: bool = False,
) -> str:
    """The family name of an OTLP metric (``unit`` as OTLP wrote it) under ``strategy``;
    empty when nothing is left of it. ``UnderscoreEscapingWithSuffixes`` (the default)
    escapes as the OpenTelemetry Prometheus exporter does (today's names); the other
    three build the name as Prometheus's OTLP receiver does (prometheus/otlptranslator
    ``MetricNamer.Build``). ``is_gauge``: an OTLP gauge (not a non-monotonic sum), whose
    unit ``1`` becomes ``_ratio`` under ``NoUTF8EscapingWithSuffixes``. A counter's family
    name is its samples' name without ``_total``."""
    if strategy is DEFAULT_STRATEGY:
        name = sanitize_metric_name(name)
        return family_name(name, map_unit(unit), is_counter=is_counter) if name else ""
    if strategy.escapes:  # UnderscoreEscapingWithoutSuffixes
        name = compliant_name(name)
        return family_name(name, "", is_counter=is_counter) if name else ""
    if not name:
        return ""
    if not strategy.suffixes:  # NoTranslation
        return family_name(name, "", is_counter=is_counter)
    return _utf8_name_with_suffixes(name, unit, is_counter=is_counter, is_gauge=is_gauge)


def _trim_suffix(name: str, suffix: str) -> str:
    """otlptranslator ``trimSuffixAndDelimiter``: ``suffix`` and the one character before it."""
    if name.endswith(suffix) and len(name) > len(suffix) + 1:
        return name[: -(len(suffix) + 1)]
    return name


def _unit_suffixes(unit: str) -> tuple[str, str]:
    """otlptranslator ``buildUnitSuffixes``: the main and ``per_`` suffixes of a unit,
    not escaped; a part with ``{`` or ``}`` is left out."""
    main_otel, slash, per_otel = unit.partition("/")
    main_otel, per_otel = main_otel.strip(), per_otel.strip()
    main = ""
    if main_otel and not ("{" in main_otel or "}" in main_otel):
        main = UNIT_MAPPINGS.get(main_otel, main_otel)
    per = ""
    if slash and per_otel and not ("{" in per_otel or "}" in per_otel):
        per = "per_" + PER_UNIT_MAPPINGS.get(per_otel, per_otel)
    return main, per


def _utf8_name_with_suffixes(name: str, unit: str, *, is_counter: bool, is_gauge: bool) -> str:
    """otlptranslator ``buildMetricName`` with suffixes (``NoUTF8EscapingWithSuffixes``),
    ``_total`` left to the samples."""
    ratio = unit == "1" and is_gauge
    if ratio:
        name = _trim_suffix(name, "ratio")
    if is_counter:
        name = _trim_suffix(name, "total")
    main, per = _unit_suffixes(unit)
    if per:
        name = _trim_suffix(name, per)
    if main and not name.endswith(main):
        name += "_" + main
    if per:
        name += "_" + per
    if ratio:
        name += "_ratio"
    return name


def label_name(key: str, strategy: TranslationStrategy = DEFAULT_STRATEGY) -> str:
    """The label name of an OTLP attribute key under ``strategy``; empty when refused
    (the label is then left out). The default escapes as the OpenTelemetry Prometheus
    exporter does (today's names); the other strategies as Prometheus's OTLP receiver
    (prometheus/otlptranslator ``LabelNamer``, its defaults): `compliant_label_name`
    when escaping, else the key as is unless it is empty or only underscores."""
    if strategy is DEFAULT_STRATEGY:
        return sanitize_label(key)
    if strategy.escapes:
        return compliant_label_name(key)
    return "" if not key.strip("_") else key


def compliant_label_name(key: str) -> str:
    """otlptranslator ``LabelNamer.Build`` (no UTF-8): each run of characters outside
    ``[a-zA-Z0-9]`` (underscores too) becomes one ``_``; a reserved name
    (``__x__``) keeps its two leading and trailing underscores; ``key_`` before a
    leading digit; empty (refused) when nothing but underscores is left."""
    if not key:
        return ""
    reserved = len(key) >= 4 and key.startswith("__") and key.endswith("__")
    name = _SANITIZE_LABEL_RE.sub("_", key[2:-2] if reserved else key)
    if reserved:
        name = f"__{name}__"
    if name[0].isdigit():
        name = "key_" + name
    return name if name.strip("_") else ""
