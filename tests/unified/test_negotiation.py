"""Content negotiation of /metrics: Accept (with q-values) → format, escaping, Content-Type.

Prometheus 2 (no ``escaping``) gets exactly the bytes and header prometheus_client's own
negotiation gave before; Prometheus 3's default header gets OpenMetrics 1.0.0 with
``escaping=allow-utf-8``; every text answer passes promtool, every OpenMetrics answer
parses with prometheus_client's parser.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.negotiation import Escaping, Format, negotiate, parse_accept
from sidecar.unified import UnifiedCollector
from tests.support.otlp import mixed_harness
from tests.support.prometheus import check_metrics
from tests.support.reference_render import render

PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PROMETHEUS_3_NATIVE = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited;q=0.7," + PROMETHEUS_3
)
PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_2_TEXT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
OM1 = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OM0 = "application/openmetrics-text; version=0.0.1; charset=utf-8"
TEXT1 = "text/plain; version=1.0.0; charset=utf-8"
TEXT0 = "text/plain; version=0.0.4; charset=utf-8"
PROTOBUF = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)
PROTOBUF_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
)

ACCEPT_TABLE = [
    (PROMETHEUS_3, OM1 + "; escaping=allow-utf-8"),
    (PROMETHEUS_3_NATIVE, PROTOBUF + "; escaping=underscores"),
    (PROTOBUF_ACCEPT + ";escaping=allow-utf-8", PROTOBUF + "; escaping=allow-utf-8"),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", TEXT0),
    ("application/vnd.google.protobuf", TEXT0),
    (PROMETHEUS_2, OM1 + "; escaping=underscores"),
    (PROMETHEUS_2_TEXT, TEXT0),
    ("", TEXT0),
    ("*/*", TEXT0),
    ("text/*", TEXT0),
    ("application/*", OM1 + "; escaping=underscores"),
    ("text/html", TEXT0),  # nothing served: the default, as Prometheus falls back
    ("text/plain", TEXT0),
    ("text/plain;version=0.0.4", TEXT0),
    ("text/plain;version=1.0.0", TEXT1 + "; escaping=underscores"),
    ("text/plain;version=1.0.0;escaping=allow-utf-8", TEXT1 + "; escaping=allow-utf-8"),
    ("text/plain;version=1.0.0;escaping=dots", TEXT1 + "; escaping=dots"),
    ("text/plain;version=1.0.0;escaping=values", TEXT1 + "; escaping=values"),
    ("text/plain;version=1.0.0;escaping=bogus", TEXT1 + "; escaping=underscores"),
    ("text/plain;version=0.0.4;escaping=allow-utf-8", TEXT0),  # 0.0.4 cannot carry UTF-8
    ("text/plain;version=0.0.4;escaping=dots", TEXT0 + "; escaping=dots"),
    ("text/plain;version=2.0.0,text/plain;version=0.0.4;q=0.1", TEXT0),
    ("application/openmetrics-text", OM1 + "; escaping=underscores"),
    ("application/openmetrics-text;version=0.0.1", OM0),
    ("application/openmetrics-text;version=0.0.1;escaping=allow-utf-8", OM0),
    ("application/openmetrics-text;version=2.0.0", TEXT0),
    ('Application/OpenMetrics-Text; Version="1.0.0"; Escaping="dots"', OM1 + "; escaping=dots"),
    # q-values decide, not the order
    ("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.1", TEXT0),
    ("application/openmetrics-text;version=1.0.0;q=0,text/plain", TEXT0),
    ("application/openmetrics-text;q=0.5,text/plain;version=1.0.0;q=0.5", OM1 + "; escaping=underscores"),
    ("application/openmetrics-text;q=x,text/plain;version=1.0.0", TEXT1 + "; escaping=underscores"),
    ("text/plain;version=1.0.0;escaping=values;q=0.2,text/plain;version=0.0.4;q=0.3", TEXT0),
]  # fmt: skip


@pytest.mark.parametrize(("accept", "content_type"), ACCEPT_TABLE)
def test_accept_table(accept, content_type):
    assert negotiate(accept).content_type == content_type


def test_the_prometheus_3_header():
    negotiated = negotiate(PROMETHEUS_3)
    assert negotiated.format is Format.OPENMETRICS_1_0_0
    assert negotiated.escaping is Escaping.ALLOW_UTF8
    assert [(r.media_type, r.q) for r in parse_accept(PROMETHEUS_3)] == [
        ("application/openmetrics-text", 0.6),
        ("application/openmetrics-text", 0.5),
        ("text/plain", 0.4),
        ("text/plain", 0.3),
        ("*/*", 0.2),
    ]


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("shared", "own help", ["a"], registry=registry).labels("1").set(1)
    Counter("x", "own counter", registry=registry).inc(2)
    return registry


@pytest.mark.parametrize("accept", [PROMETHEUS_2, PROMETHEUS_2_TEXT, "", "text/plain"])
def test_a_prometheus_2_scrape_gets_todays_bytes(accept):
    """prometheus_client's own choice (what /metrics answered before) is the reference."""
    unified = UnifiedCollector([_registry(), mixed_harness(40).collector])
    encoder, content_type = choose_encoder(accept)
    answer = unified.render(accept, "")
    assert answer.body == encoder(unified)
    assert answer.content_type == content_type
    registry = _registry()
    assert render(registry, accept, "").body == encoder(registry)


class _Utf8:
    """Families named as OTLP names them, kept UTF-8 (dots, slashes)."""

    def collect(self) -> list[Metric]:
        gauge = GaugeMetricFamily("http.server.active_requests", "active", labels=["http.method"])
        gauge.add_metric(["GET"], 3)
        histogram = HistogramMetricFamily("rpc/duration", "d", labels=["net/peer", "ok"])
        histogram.add_metric(["a", "b"], [("1.0", 1), ("+Inf", 2)], 3.0)
        return [gauge, histogram]


SERVED = [
    PROMETHEUS_3,
    PROMETHEUS_2,
    PROMETHEUS_2_TEXT,
    "application/openmetrics-text;version=0.0.1",
    "text/plain;version=1.0.0",
    "text/plain;version=1.0.0;escaping=dots",
    "text/plain;version=1.0.0;escaping=values",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
]


@pytest.mark.parametrize("accept", SERVED)
def test_every_answer_parses(accept):
    unified = UnifiedCollector([_registry(), mixed_harness(20).collector, _Utf8()])
    answer = unified.render(accept, "")
    body = answer.body.decode()
    negotiated = negotiate(accept)
    families = list(parse_om(body) if negotiated.openmetrics else parse_text(body))
    names = {f.name for f in families}
    if negotiated.escaping is Escaping.ALLOW_UTF8:
        assert {"http.server.active_requests", "rpc/duration"} <= names
    else:  # only a scraper that asked for UTF-8 gets UTF-8 names
        assert all(c.isascii() and (c.isalnum() or c in "_:") for n in names for c in n)
    if not negotiated.openmetrics and negotiated.escaping is not Escaping.ALLOW_UTF8:
        check = check_metrics(answer.body)
        assert check.passes, check.findings


@pytest.mark.parametrize(
    ("accept", "gauge", "histogram_bucket"),
    [
        (
            PROMETHEUS_2_TEXT,
            'http_server_active_requests{http_method="GET"} 3.0',
            'rpc_duration_bucket{le="1.0",net_peer="a",ok="b"} 1.0',
        ),
        (
            "text/plain;version=1.0.0;escaping=dots",
            'http_dot_server_dot_active__requests{http_dot_method="GET"} 3.0',
            'rpc__duration_bucket{le="1.0",net__peer="a",ok="b"} 1.0',
        ),
        (
            "text/plain;version=1.0.0;escaping=values",
            'U__http_2e_server_2e_active__requests{U__http_2e_method="GET"} 3.0',
            'U__rpc_2f_duration_bucket{U__net_2f_peer="a",le="1.0",ok="b"} 1.0',
        ),
        (
            "text/plain;version=1.0.0;escaping=allow-utf-8",
            '{"http.server.active_requests","http.method"="GET"} 3.0',
            '{"rpc/duration_bucket",le="1.0","net/peer"="a",ok="b"} 1.0',
        ),
    ],
    ids=["underscores", "dots", "values", "allow-utf-8"],
)
def test_utf8_names_escaped_per_scheme(accept, gauge, histogram_bucket):
    lines = UnifiedCollector([_Utf8()]).render(accept, "").body.decode().splitlines()
    assert gauge in lines
    assert histogram_bucket in lines
