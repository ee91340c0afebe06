"""prometheus_client families written as OpenMetrics by `sidecar.unified` directly are
byte for byte what prometheus_client's own encoder writes (`tests.support.reference_render.render`),
for any names, label values, values, timestamps and exemplars, in either escaping."""

from __future__ import annotations

import math
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import Exemplar, Metric
from prometheus_client.utils import floatToGoString

from sidecar.sampletext import go_float
from sidecar.unified import UnifiedCollector
from tests.support.reference_render import render

ACCEPTS = (
    "application/openmetrics-text;version=1.0.0",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=0.0.1",
    "text/plain;version=0.0.4",
)
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum"),
    "unknown": ("",),
    "info": ("_info",),
}
NAMES = st.sampled_from(("req", "http_server", "job:rate5m", "app.latency", "ünits", "a9"))
LABEL_NAMES = st.sampled_from(("path", "le", "_x", "status_code", "http.method", "ä", "9z"))
VALUES = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from((0.0, -0.0, 1e-9, 1e21, math.nan, math.inf)),
)
LABEL_VALUES = st.text(st.sampled_from('ab\\"\n/é{} ='), max_size=6)


class Source:
    """A collector of fixed families (as the sidecar's own registry hands them over)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


@st.composite
def families(draw: st.DrawFn) -> list[Metric]:
    out = []
    for index in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(sorted(SUFFIXES)))
        name = f"{draw(NAMES)}{index}"  # distinct: no merge rule drops one
        doc = draw(st.text(st.sampled_from('Help \\"\n.é'), max_size=8))
        metric = Metric(name, doc, kind, draw(st.sampled_from(("", "seconds"))))
        for _ in range(draw(st.integers(0, 4))):
            labels = draw(st.dictionaries(LABEL_NAMES, LABEL_VALUES, max_size=3))
            suffix = draw(st.sampled_from(SUFFIXES[kind]))
            stamp = draw(st.one_of(st.none(), st.sampled_from((1.5, 1700000000))))
            exemplar = None
            if suffix in ("_total", "_bucket") and draw(st.booleans()):
                exemplar = Exemplar({"trace_id": "abc"}, draw(VALUES), None)
            metric.add_sample(name + suffix, labels, draw(VALUES), stamp, exemplar)
        out.append(metric)
    return out


@settings(max_examples=400, deadline=None)
@given(families(), st.sampled_from(ACCEPTS))
def test_unified_writes_what_prometheus_client_writes(metrics: list[Metric], accept: str) -> None:
    source = Source(metrics)
    try:
        want = render(source, accept, "").body
    except ValueError:  # prometheus_client refuses it (e.g. an exemplar it cannot place)
        return
    assert UnifiedCollector([source]).render(accept, "").body == want


def test_awkward_help_and_label_values_are_escaped_as_prometheus_client_does() -> None:
    metric = Metric("http_server_duration_seconds", 'Time "served"\\', "histogram", "seconds")
    for bound, count in (("0.1", 3), ("+Inf", 5)):
        metric.add_sample(
            "http_server_duration_seconds_bucket", {"path": '/a"b\n', "le": bound}, count
        )
    metric.add_sample("http_server_duration_seconds_count", {"path": '/a"b\n'}, 5)
    metric.add_sample("http_server_duration_seconds_sum", {"path": '/a"b\n'}, 0.5)
    accept = ACCEPTS[0]
    body = UnifiedCollector([Source([metric])]).render(accept, "").body
    assert body == render(Source([metric]), accept, "").body
    assert b'_bucket{le="+Inf",path="/a\\"b\\n"} 5.0\n' in body


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**60), 2**60),
        st.sampled_from((999_999, 1_000_000, 999_999.9999, 1e6, -1e6, 2**53, -(2**53), -0.0)),
    )
)
def test_go_float_is_floattogostring(value: float) -> None:
    """The fast path writes what prometheus_client's ``floatToGoString`` writes."""
    assert go_float(value) == floatToGoString(value)
