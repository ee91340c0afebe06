"""The naming rules equal opentelemetry-exporter-prometheus's own, input for input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.exporter.prometheus import _mapping as exporter

from sidecar.ingest import naming

NAMES = [
    "http.request.duration",
    "a-b",
    "9lives",
    "é.x",
    "ok:colon",
    "__x__",
    "",
    "1",
    "a..b",
    "Ünïcode",
    "٣digit",
    "sp ace",
]
UNITS = [
    "ms",
    "s",
    "By",
    "1",
    "{requests}",
    "m/s",
    "By/s",
    "1/s",
    "/s",
    "%",
    "KiBy",
    "x{y}z",
    "",
    "foo bar",
    "_a_",
    "m/",
    "/",
]


@pytest.mark.parametrize("name", NAMES)
def test_metric_names(name):
    assert naming.sanitize_metric_name(name) == exporter.sanitize_full_name(name)


@pytest.mark.parametrize("key", NAMES)
def test_label_names(key):
    assert naming.sanitize_label(key) == exporter.sanitize_attribute(key)


@pytest.mark.parametrize("unit", UNITS)
def test_units(unit):
    assert naming.map_unit(unit) == exporter.map_unit(unit)


@given(st.text(max_size=20))
def test_any_text(text):
    assert naming.sanitize_metric_name(text) == exporter.sanitize_full_name(text)
    assert naming.sanitize_label(text) == exporter.sanitize_attribute(text)
    assert naming.map_unit(text) == exporter.map_unit(text)


@pytest.mark.parametrize(
    ("name", "unit", "is_counter", "expected"),
    [
        ("http_request_total", "", True, "http_request"),
        ("http_request_total", "", False, "http_request_total"),
        ("latency", "milliseconds", False, "latency_milliseconds"),
        ("latency_milliseconds", "milliseconds", False, "latency_milliseconds"),
        ("sent_total", "bytes", True, "sent_bytes"),
    ],
)
def test_family_name(name, unit, is_counter, expected):
    assert naming.family_name(name, unit, is_counter=is_counter) == expected
