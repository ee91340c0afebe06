"""Names under ``UnderscoreEscapingWithoutSuffixes`` and ``NoTranslation``: golden tables.

The expected names are what Prometheus's OTLP receiver builds (prometheus/otlptranslator,
``MetricNamer.Build`` with ``WithMetricSuffixes: false``: ``buildCompliantMetricName``'s
simple case when escaping, the name untouched with UTF-8 allowed), read from its source:
no unit is appended and none is taken off, a name that already ends in its unit keeps
it. No Prometheus that runs here has an OTLP receiver with ``translation_strategy``
(Debian's is 2.42), so the table is the reference. One documented difference stays: a
counter's samples are ``<name>_total`` under every strategy (the exposition formats name
them so), where the receiver writes ``requests`` to its TSDB as is.
"""

from __future__ import annotations

import pytest

from sidecar.ingest.naming import TranslationStrategy, metric_name

S = TranslationStrategy

# (OTLP name, unit, is a counter) -> family name under each strategy; a counter's
# family name is its samples' name without ``_total``
WITHOUT_SUFFIXES = [
    ("http.server.request.duration", "s", False, "http_server_request_duration"),
    ("http.server.request.duration_seconds", "s", False, "http_server_request_duration_seconds"),
    ("process.memory.usage", "By", False, "process_memory_usage"),
    ("queue.depth_ratio", "1", False, "queue_depth_ratio"),
    ("http.server.requests", "{request}", True, "http_server_requests"),
    ("jobs_total", "1", True, "jobs"),  # samples: jobs_total, as the receiver's name
    ("a__b", "", False, "a__b"),  # underscores stay as written
    ("a._b", "", False, "a__b"),  # "." separates the fields "a" and "_b"
    ("a..b", "", False, "a_b"),  # a run of other characters is one separator
    (".leading.and.trailing.", "", False, "leading_and_trailing"),
    ("1st.metric", "", False, "_1st_metric"),  # "_" before a leading digit, kept
    ("cpu:usage/ms", "ms", False, "cpu:usage_ms"),
    ("héllo wörld", "", False, "h_llo_w_rld"),
    ("___", "", False, "___"),  # already compliant: kept
    ("._.", "", False, ""),  # only underscores left: refused (no family)
]
NO_TRANSLATION = [
    ("http.server.request.duration", "s", False, "http.server.request.duration"),
    ("http.server.request.duration_seconds", "s", False, "http.server.request.duration_seconds"),
    ("process.memory.usage", "By", False, "process.memory.usage"),
    ("http.server.requests", "{request}", True, "http.server.requests"),
    ("jobs_total", "1", True, "jobs"),
    ("a__b", "", False, "a__b"),
    ("1st.metric", "", False, "1st.metric"),
    ("héllo wörld", "", False, "héllo wörld"),
]
# today's default, unchanged (the OpenTelemetry Prometheus exporter's rules)
WITH_SUFFIXES = [
    ("http.server.request.duration", "s", False, "http_server_request_duration_seconds"),
    ("http.server.request.duration_seconds", "s", False, "http_server_request_duration_seconds"),
    ("process.memory.usage", "By", False, "process_memory_usage_bytes"),
    ("a__b", "", False, "a_b"),
    ("1st.metric", "", False, "_st_metric"),
]


@pytest.mark.parametrize(("name", "unit", "is_counter", "expected"), WITHOUT_SUFFIXES)
def test_underscore_escaping_without_suffixes(
    name: str, unit: str, is_counter: bool, expected: str
) -> None:
    strategy = S.UNDERSCORE_ESCAPING_WITHOUT_SUFFIXES
    assert metric_name(name, unit, is_counter=is_counter, strategy=strategy) == expected


@pytest.mark.parametrize(("name", "unit", "is_counter", "expected"), NO_TRANSLATION)
def test_no_translation(name: str, unit: str, is_counter: bool, expected: str) -> None:
    assert metric_name(name, unit, is_counter=is_counter, strategy=S.NO_TRANSLATION) == expected


@pytest.mark.parametrize(("name", "unit", "is_counter", "expected"), WITH_SUFFIXES)
def test_the_default_is_unchanged(name: str, unit: str, is_counter: bool, expected: str) -> None:
    assert metric_name(name, unit, is_counter=is_counter) == expected
