"""Our OTLP names against Prometheus's own: the test tables of prometheus/otlptranslator.

Ported from github.com/prometheus/otlptranslator (commit 51da773), ``label_namer_test.go``
(``labelTestCases``: the ``sanitized`` column is ``LabelNamer{}``, what we build when
escaping without suffixes; with UTF-8 allowed the label stays as is) and
``metric_namer_test.go`` (``TestMetricNamer_Build``; the cases with a ``Namespace`` are
left out: we have no namespace). An expected ``""`` is a name the receiver refuses.

Two documented differences:
- a counter's family name is its samples' name without ``_total``: both exposition
  formats write ``<name>_total`` samples under every strategy, where the receiver writes
  ``http.requests`` to its TSDB as is without suffixes;
- ``UnderscoreEscapingWithSuffixes``, the default, keeps today's names, those of the
  OpenTelemetry Prometheus exporter (tests/ingest/test_naming.py compares them with the
  exporter itself): where they differ from the receiver's, `DEFAULT_DIFFERS` says how.
"""

from __future__ import annotations

import enum

import pytest

from sidecar.ingest.naming import TranslationStrategy, label_name, metric_name


class S:
    UE_WITH = TranslationStrategy.UNDERSCORE_ESCAPING_WITH_SUFFIXES
    UE_WITHOUT = TranslationStrategy.UNDERSCORE_ESCAPING_WITHOUT_SUFFIXES
    NO_UTF8_WITH = TranslationStrategy.NO_UTF8_ESCAPING_WITH_SUFFIXES
    NO_TRANSLATION = TranslationStrategy.NO_TRANSLATION


class T(enum.Enum):
    MetricTypeGauge = "gauge"
    MetricTypeMonotonicCounter = "counter"
    MetricTypeNonMonotonicCounter = "updown"
    MetricTypeHistogram = "histogram"
    MetricTypeExponentialHistogram = "exponential"
    MetricTypeSummary = "summary"
    MetricTypeUnknown = "unknown"


# (case name, strategy, OTLP name, unit, type, the receiver's name)
METRIC_CASES = [
    ("simple metric name without suffixes", S.UE_WITHOUT, "simple_metric", "", T.MetricTypeGauge, "simple_metric"),
    ("metric with special characters replaced", S.UE_WITHOUT, "metric@with#special$chars", "", T.MetricTypeGauge, "metric_with_special_chars"),
    ("metric starting with digit gets underscore prefix", S.UE_WITHOUT, "123metric", "", T.MetricTypeGauge, "_123metric"),
    ("empty metric name without suffixes", S.UE_WITHOUT, "", "", T.MetricTypeGauge, ""),
    ("metric with multiple consecutive special chars", S.UE_WITHOUT, "metric@@##$$name", "", T.MetricTypeGauge, "metric_name"),
    ("metric name with only special characters", S.UE_WITHOUT, "@#$%", "", T.MetricTypeGauge, ""),
    ("metric name with only special characters (2)", S.UE_WITHOUT, "@_#_$_%", "", T.MetricTypeGauge, ""),
    ("counter metric with total suffix", S.UE_WITH, "requests", "", T.MetricTypeMonotonicCounter, "requests_total"),
    ("gauge with unit 1 gets ratio suffix", S.UE_WITH, "cpu_usage", "1", T.MetricTypeGauge, "cpu_usage_ratio"),
    ("counter with unit 1 does not get ratio suffix", S.UE_WITH, "items", "1", T.MetricTypeMonotonicCounter, "items_total"),
    ("metric with time unit", S.UE_WITH, "response_time", "ms", T.MetricTypeGauge, "response_time_milliseconds"),
    ("metric with bytes unit", S.UE_WITH, "memory_usage", "By", T.MetricTypeGauge, "memory_usage_bytes"),
    ("metric with per unit", S.UE_WITH, "requests", "1/s", T.MetricTypeGauge, "requests_per_second"),
    ("metric with complex per unit", S.UE_WITH, "throughput", "By/s", T.MetricTypeGauge, "throughput_bytes_per_second"),
    ("metric with unknown unit", S.UE_WITH, "custom_metric", "custom_unit", T.MetricTypeGauge, "custom_metric_custom_unit"),
    ("metric with unit containing braces is ignored", S.UE_WITH, "custom_metric", "{custom}", T.MetricTypeGauge, "custom_metric"),
    ("metric with per unit containing braces is ignored", S.UE_WITH, "custom_metric", "By/{custom}", T.MetricTypeGauge, "custom_metric_bytes"),
    ("metric name already contains total suffix", S.UE_WITH, "requests_total", "", T.MetricTypeMonotonicCounter, "requests_total"),
    ("metric name already contains ratio suffix", S.UE_WITH, "cpu_usage_ratio", "1", T.MetricTypeGauge, "cpu_usage_ratio"),
    ("metric name already contains unit suffix", S.UE_WITH, "response_time_seconds", "s", T.MetricTypeGauge, "response_time_seconds"),
    ("metric name already contains total suffix with UTF8Allowed", S.NO_UTF8_WITH, "requests_total", "", T.MetricTypeMonotonicCounter, "requests_total"),
    ("metric name already contains ratio suffix with UTF8Allowed", S.NO_UTF8_WITH, "cpu_usage_ratio", "1", T.MetricTypeGauge, "cpu_usage_ratio"),
    ("metric name already contains unit suffix with UTF8Allowed", S.NO_UTF8_WITH, "response_time_seconds", "s", T.MetricTypeGauge, "response_time_seconds"),
    ("metric name already contains type and unit suffix with UTF8Allowed", S.NO_UTF8_WITH, "cpu_seconds_total", "s", T.MetricTypeMonotonicCounter, "cpu_seconds_total"),
    ("reproduction case for opentelemetry-collector metrics", S.NO_UTF8_WITH, "otelcol_process_cpu_seconds", "s", T.MetricTypeMonotonicCounter, "otelcol_process_cpu_seconds_total"),
    ("metric with only underscores (escaped)", S.UE_WITHOUT, "___", "", T.MetricTypeGauge, "___"),
    ("metric with only underscores (utf8)", S.NO_TRANSLATION, "___", "", T.MetricTypeGauge, "___"),
    ("metric with multiple underscores normalized", S.UE_WITH, "metric__with__multiple__underscores", "unit__multiple__underscores", T.MetricTypeGauge, "metric_with_multiple_underscores_unit_multiple_underscores"),
    ("metric with special chars in unit", S.UE_WITH, "custom_metric", "unit@with#special/chars", T.MetricTypeGauge, "custom_metric_unit_with_special_per_chars"),
    ("metric name with only special characters (3)", S.UE_WITH, "@#$%", "", T.MetricTypeGauge, ""),
    ("utf8 metric without suffixes", S.NO_TRANSLATION, "métric_with_ñ_chars", "", T.MetricTypeGauge, "métric_with_ñ_chars"),
    ("utf8 counter metric with total suffix", S.NO_UTF8_WITH, "requêsts", "", T.MetricTypeMonotonicCounter, "requêsts_total"),
    ("utf8 gauge with unit 1 gets ratio suffix", S.NO_UTF8_WITH, "cpu_usagé", "1", T.MetricTypeGauge, "cpu_usagé_ratio"),
    ("utf8 metric with time unit", S.NO_UTF8_WITH, "respønse_time", "ms", T.MetricTypeGauge, "respønse_time_milliseconds"),
    ("utf8 metric with per unit", S.NO_UTF8_WITH, "requêsts", "1/s", T.MetricTypeGauge, "requêsts_per_second"),
    ("metric name with only special characters (utf8)", S.NO_UTF8_WITH, "@#$%", "", T.MetricTypeMonotonicCounter, "@#$%_total"),
    ("histogram metric type", S.UE_WITH, "request_duration", "s", T.MetricTypeHistogram, "request_duration_seconds"),
    ("exponential histogram metric type", S.UE_WITH, "request_size", "By", T.MetricTypeExponentialHistogram, "request_size_bytes"),
    ("summary metric type", S.UE_WITH, "response_time", "ms", T.MetricTypeSummary, "response_time_milliseconds"),
    ("non-monotonic counter metric type", S.UE_WITH, "active_connections", "", T.MetricTypeNonMonotonicCounter, "active_connections"),
    ("unknown metric type", S.UE_WITH, "unknown_metric", "", T.MetricTypeUnknown, "unknown_metric"),
    ("metric with days unit", S.UE_WITH, "uptime", "d", T.MetricTypeGauge, "uptime_days"),
    ("metric with hours unit", S.UE_WITH, "duration", "h", T.MetricTypeGauge, "duration_hours"),
    ("metric with minutes unit", S.UE_WITH, "timeout", "min", T.MetricTypeGauge, "timeout_minutes"),
    ("metric with microseconds unit", S.UE_WITH, "latency", "us", T.MetricTypeGauge, "latency_microseconds"),
    ("metric with nanoseconds unit", S.UE_WITH, "precision_time", "ns", T.MetricTypeGauge, "precision_time_nanoseconds"),
    ("metric with kibibytes unit", S.UE_WITH, "cache_size", "KiBy", T.MetricTypeGauge, "cache_size_kibibytes"),
    ("metric with mebibytes unit", S.UE_WITH, "memory", "MiBy", T.MetricTypeGauge, "memory_mebibytes"),
    ("metric with gibibytes unit", S.UE_WITH, "storage", "GiBy", T.MetricTypeGauge, "storage_gibibytes"),
    ("metric with tibibytes unit", S.UE_WITH, "capacity", "TiBy", T.MetricTypeGauge, "capacity_tibibytes"),
    ("metric with kilobytes unit", S.UE_WITH, "transfer", "KBy", T.MetricTypeGauge, "transfer_kilobytes"),
    ("metric with megabytes unit", S.UE_WITH, "download", "MBy", T.MetricTypeGauge, "download_megabytes"),
    ("metric with gigabytes unit", S.UE_WITH, "backup", "GBy", T.MetricTypeGauge, "backup_gigabytes"),
    ("metric with terabytes unit", S.UE_WITH, "archive", "TBy", T.MetricTypeGauge, "archive_terabytes"),
    ("metric with meters unit", S.UE_WITH, "distance", "m", T.MetricTypeGauge, "distance_meters"),
    ("metric with volts unit", S.UE_WITH, "voltage", "V", T.MetricTypeGauge, "voltage_volts"),
    ("metric with amperes unit", S.UE_WITH, "current", "A", T.MetricTypeGauge, "current_amperes"),
    ("metric with joules unit", S.UE_WITH, "energy", "J", T.MetricTypeGauge, "energy_joules"),
    ("metric with watts unit", S.UE_WITH, "power", "W", T.MetricTypeGauge, "power_watts"),
    ("metric with grams unit", S.UE_WITH, "weight", "g", T.MetricTypeGauge, "weight_grams"),
    ("metric with celsius unit", S.UE_WITH, "temperature", "Cel", T.MetricTypeGauge, "temperature_celsius"),
    ("metric with hertz unit", S.UE_WITH, "frequency", "Hz", T.MetricTypeGauge, "frequency_hertz"),
    ("metric with percent unit", S.UE_WITH, "cpu_usage", "%", T.MetricTypeGauge, "cpu_usage_percent"),
    ("metric with per minute unit", S.UE_WITH, "requests", "1/m", T.MetricTypeGauge, "requests_per_minute"),
    ("metric with per hour unit", S.UE_WITH, "events", "1/h", T.MetricTypeGauge, "events_per_hour"),
    ("metric with per day unit", S.UE_WITH, "transactions", "1/d", T.MetricTypeGauge, "transactions_per_day"),
    ("metric with per week unit", S.UE_WITH, "reports", "1/w", T.MetricTypeGauge, "reports_per_week"),
    ("metric with per month unit", S.UE_WITH, "invoices", "1/mo", T.MetricTypeGauge, "invoices_per_month"),
    ("metric with per year unit", S.UE_WITH, "renewals", "1/y", T.MetricTypeGauge, "renewals_per_year"),
    ("metric with unknown per unit", S.UE_WITH, "custom", "1/custom_unit", T.MetricTypeGauge, "custom_per_custom_unit"),
    ("metric with empty per unit", S.UE_WITH, "metric", "By/", T.MetricTypeGauge, "metric_bytes"),
    ("metric with whitespace in unit", S.UE_WITH, "metric", " By / s ", T.MetricTypeGauge, "metric_bytes_per_second"),
    ("metric with only slash in unit", S.UE_WITH, "metric", "/", T.MetricTypeGauge, "metric"),
    ("http.request.duration/Prometheus-style", S.UE_WITH, "http.request.duration", "ms", T.MetricTypeHistogram, "http_request_duration_milliseconds"),
    ("http.request.duration/OTel-style", S.NO_TRANSLATION, "http.request.duration", "ms", T.MetricTypeHistogram, "http.request.duration"),
    ("http.requests/Prometheus-style", S.UE_WITH, "http.requests", "1", T.MetricTypeMonotonicCounter, "http_requests_total"),
    ("http.requests/OTel-style", S.NO_TRANSLATION, "http.requests", "1", T.MetricTypeMonotonicCounter, "http.requests"),
]  # fmt: skip

# The default's names where the OpenTelemetry Prometheus exporter's rules (today's names)
# differ from the receiver's: no ``_ratio`` for a gauge of unit ``1``, a unit that does not
# map is sanitized as a whole (``By/{custom}`` → ``By``, `` By / s `` with its spaces), and
# a name of symbols only becomes ``_`` instead of being refused.
DEFAULT_DIFFERS = {
    "gauge with unit 1 gets ratio suffix": "cpu_usage",
    "metric with per unit containing braces is ignored": "custom_metric_By",
    "metric name with only special characters (3)": "_",
    "metric with empty per unit": "metric_By",
    "metric with whitespace in unit": "metric__By__per__s_",
}
# and its label names: a leading digit becomes ``_`` (no ``key_``), a reserved ``__x__``
# name keeps one underscore at each end, and an only-underscores name is ``_``, not refused
DEFAULT_LABEL_DIFFERS = {
    "123label": "_23label",
    "ようこそ": "_",
    "__reserved__label__name__": "_reserved_label_name_",
    "__": "_",
}

# (label, LabelNamer{} — escaping, LabelNamer{UTF8Allowed: true})
LABEL_CASES = [
    ("label:with:colons", "label_with_colons", "label:with:colons"),
    ("LabelWithCapitalLetters", "LabelWithCapitalLetters", "LabelWithCapitalLetters"),
    ("label!with&special$chars)", "label_with_special_chars_", "label!with&special$chars)"),
    ("label_with_foreign_characters_字符", "label_with_foreign_characters_", "label_with_foreign_characters_字符"),
    ("label.with.dots", "label_with_dots", "label.with.dots"),
    (".foo", "_foo", ".foo"),
    ("123label", "key_123label", "123label"),
    ("_label_starting_with_underscore", "_label_starting_with_underscore", "_label_starting_with_underscore"),
    ("__label_starting_with_2underscores", "_label_starting_with_2underscores", "__label_starting_with_2underscores"),
    ("ようこそ", "", "ようこそ"),
    ("label__with__double__underscores", "label_with_double_underscores", "label__with__double__underscores"),
    ("label.name__with&&special##chars", "label_name_with_special_chars", "label.name__with&&special##chars"),
    ("__reserved__label__name__", "__reserved_label_name__", "__reserved__label__name__"),
    ("trailing_underscores___", "trailing_underscores_", "trailing_underscores___"),
    ("", "", ""),
    ("__", "", ""),
]  # fmt: skip


def _family(expected: str, kind: T, strategy: TranslationStrategy) -> str:
    """The receiver's name as our family name: a counter's without ``_total``."""
    if kind is T.MetricTypeMonotonicCounter and expected.endswith("_total"):
        return expected[: -len("_total")]
    return expected


@pytest.mark.parametrize(
    ("case", "strategy", "name", "unit", "kind", "expected"),
    METRIC_CASES,
    ids=[c[0] for c in METRIC_CASES],
)
def test_metric_names_as_prometheus_builds_them(
    case: str, strategy: TranslationStrategy, name: str, unit: str, kind: T, expected: str
) -> None:
    got = metric_name(
        name,
        unit,
        is_counter=kind is T.MetricTypeMonotonicCounter,
        strategy=strategy,
        is_gauge=kind is T.MetricTypeGauge,
    )
    if strategy is S.UE_WITH and case in DEFAULT_DIFFERS:
        assert got == DEFAULT_DIFFERS[case]
        assert got != _family(expected, kind, strategy)
    else:
        assert got == _family(expected, kind, strategy)


@pytest.mark.parametrize(
    ("label", "escaped", "utf8"), LABEL_CASES, ids=[c[0] or "empty" for c in LABEL_CASES]
)
def test_label_names_as_prometheus_builds_them(label: str, escaped: str, utf8: str) -> None:
    assert label_name(label, S.UE_WITHOUT) == escaped
    assert label_name(label, S.NO_UTF8_WITH) == utf8
    assert label_name(label, S.NO_TRANSLATION) == utf8
    default = label_name(label, S.UE_WITH)
    if label in DEFAULT_LABEL_DIFFERS:
        assert (default, escaped) == (DEFAULT_LABEL_DIFFERS[label], escaped)
        assert default != escaped
    else:
        assert default == escaped
