"""Golden tables of name escaping, one per scheme (prometheus/common model/metric.go's
``EscapeName`` cases, as ``EscapeMetricFamily`` applies them: legacy names untouched)."""

from __future__ import annotations

import pytest

from sidecar.escaping import (
    escape_label_name,
    escape_metric_name,
    is_legacy_label_name,
    is_legacy_metric_name,
)
from sidecar.negotiation import Escaping

NAMES = [
    "no:escaping_required",
    "mysystem.prod.west.cpu.load",
    "mysystem.prod.west.cpu.load_total",
    "http.status:sum",
    "label with 😱",
    "1st.thing",
    "a/b-c",
    "",
]

GOLDEN: dict[Escaping, list[str]] = {
    Escaping.ALLOW_UTF8: NAMES,
    Escaping.UNDERSCORES: [
        "no:escaping_required",
        "mysystem_prod_west_cpu_load",
        "mysystem_prod_west_cpu_load_total",
        "http_status:sum",
        "label_with__",
        "_st_thing",
        "a_b_c",
        "",
    ],
    Escaping.DOTS: [
        "no:escaping_required",
        "mysystem_dot_prod_dot_west_dot_cpu_dot_load",
        "mysystem_dot_prod_dot_west_dot_cpu_dot_load__total",
        "http_dot_status:sum",
        "label__with____",
        "__st_dot_thing",
        "a__b__c",
        "",
    ],
    Escaping.VALUES: [
        "no:escaping_required",
        "U__mysystem_2e_prod_2e_west_2e_cpu_2e_load",
        "U__mysystem_2e_prod_2e_west_2e_cpu_2e_load__total",
        "U__http_2e_status:sum",
        "U__label_20_with_20__1f631_",
        "U___31_st_2e_thing",
        "U__a_2f_b_2d_c",
        "",
    ],
}


@pytest.mark.parametrize("scheme", list(Escaping), ids=lambda s: s.value)
def test_metric_names(scheme):
    assert [escape_metric_name(name, scheme) for name in NAMES] == GOLDEN[scheme]


@pytest.mark.parametrize("scheme", [Escaping.UNDERSCORES, Escaping.DOTS, Escaping.VALUES])
def test_every_escaped_name_is_legacy(scheme):
    assert all(is_legacy_metric_name(n) for n in GOLDEN[scheme] if n)


LABELS = {
    Escaping.ALLOW_UTF8: {"http.method": "http.method", "a:b": "a:b", "ok": "ok"},
    Escaping.UNDERSCORES: {"http.method": "http_method", "a:b": "a_b", "ok": "ok"},
    Escaping.DOTS: {"http.method": "http_dot_method", "a:b": "a__b", "ok": "ok"},
    Escaping.VALUES: {"http.method": "U__http_2e_method", "a:b": "U__a_3a_b", "ok": "ok"},
}


@pytest.mark.parametrize("scheme", list(Escaping), ids=lambda s: s.value)
def test_label_names(scheme):
    """A label name has no ``:`` in the legacy set: escaped, so text 0.0.4 stays valid."""
    table = LABELS[scheme]
    assert {name: escape_label_name(name, scheme) for name in table} == table
    if scheme is not Escaping.ALLOW_UTF8:
        assert all(is_legacy_label_name(v) for v in table.values())
