"""Golden text, one test per translation rule (design §8), OTLP request → exposition."""

from __future__ import annotations

import math

import pytest

from sidecar.ingest.codec import Encoding
from sidecar.ingest.store import StoreLimits
from tests.support.otlp import (
    DELTA,
    Harness,
    counter,
    epoint,
    exponential,
    gauge,
    histogram,
    hpoint,
    number,
    request,
    summary,
)

CASES = [
    pytest.param(
        request(counter("orders.placed", [number(3, {"region": "eu"})], description="Orders")),
        '# HELP orders_placed_total Orders\n# TYPE orders_placed_total counter\norders_placed_total{region="eu",service_name="shop"} 3.0\n',
        id="monotonic-sum-is-counter",
    ),
    pytest.param(
        request(counter("queue.depth", [number(-2)], monotonic=False)),
        '# HELP queue_depth \n# TYPE queue_depth gauge\nqueue_depth{service_name="shop"} -2.0\n',
        id="non-monotonic-sum-is-gauge",
    ),
    pytest.param(
        request(gauge("temp", [number(21.5)], unit="Cel")),
        '# HELP temp_celsius \n# TYPE temp_celsius gauge\ntemp_celsius{service_name="shop"} 21.5\n',
        id="gauge-with-unit",
    ),
    pytest.param(
        request(counter("http.request.total", [number(1)])),
        '# HELP http_request_total \n# TYPE http_request_total counter\nhttp_request_total{service_name="shop"} 1.0\n',
        id="total-suffix-not-doubled",
    ),
    pytest.param(
        request(counter("latency", [number(1)], unit="ms")),
        '# HELP latency_milliseconds_total \n# TYPE latency_milliseconds_total counter\nlatency_milliseconds_total{service_name="shop"} 1.0\n',
        id="unit-ms",
    ),
    pytest.param(
        request(gauge("uptime", [number(1)], unit="s")),
        '# HELP uptime_seconds \n# TYPE uptime_seconds gauge\nuptime_seconds{service_name="shop"} 1.0\n',
        id="unit-s",
    ),
    pytest.param(
        request(counter("sent", [number(1)], unit="By")),
        '# HELP sent_bytes_total \n# TYPE sent_bytes_total counter\nsent_bytes_total{service_name="shop"} 1.0\n',
        id="unit-By",
    ),
    pytest.param(
        request(gauge("ratio", [number(0.5)], unit="1")),
        '# HELP ratio \n# TYPE ratio gauge\nratio{service_name="shop"} 0.5\n',
        id="unit-1-dropped",
    ),
    pytest.param(
        request(counter("calls", [number(1)], unit="{requests}")),
        '# HELP calls_total \n# TYPE calls_total counter\ncalls_total{service_name="shop"} 1.0\n',
        id="unit-annotation-dropped",
    ),
    pytest.param(
        request(gauge("speed", [number(1)], unit="m/s")),
        '# HELP speed_meters_per_second \n# TYPE speed_meters_per_second gauge\nspeed_meters_per_second{service_name="shop"} 1.0\n',
        id="unit-per",
    ),
    pytest.param(
        request(gauge("9lives.cat-count.é", [number(1)])),
        '# HELP _lives_cat_count_ \n# TYPE _lives_cat_count_ gauge\n_lives_cat_count_{service_name="shop"} 1.0\n',
        id="name-sanitised",
    ),
    pytest.param(
        request(
            gauge(
                "g",
                [
                    number(
                        1,
                        {
                            "s": "x",
                            "b": True,
                            "i": 7,
                            "d": 2.5,
                            "arr": ["a", 1],
                            "http.method": "GET",
                            "0x": "y",
                            "q": 'a"b\\c\nd',
                        },
                    )
                ],
            )
        ),
        '# HELP g \n# TYPE g gauge\ng{_x="y",arr="[\\"a\\", 1]",b="true",d="2.5",http_method="GET",i="7",q="a\\"b\\\\c\\nd",s="x",service_name="shop"} 1.0\n',
        id="attribute-types",
    ),
    pytest.param(
        request(gauge("g", [number(1, {"empty": ""})])),
        '# HELP g \n# TYPE g gauge\ng{service_name="shop"} 1.0\n',
        id="empty-value-is-absent",
    ),
    pytest.param(
        request(histogram("rt", [hpoint([1.0, 10.0], [1, 2, 3], 42.5, {"path": "/a"})], unit="ms")),
        "# HELP rt_milliseconds \n# TYPE rt_milliseconds histogram\n"
        'rt_milliseconds_bucket{le="1.0",path="/a",service_name="shop"} 1.0\n'
        'rt_milliseconds_bucket{le="10.0",path="/a",service_name="shop"} 3.0\n'
        'rt_milliseconds_bucket{le="+Inf",path="/a",service_name="shop"} 6.0\n'
        'rt_milliseconds_count{path="/a",service_name="shop"} 6.0\n'
        'rt_milliseconds_sum{path="/a",service_name="shop"} 42.5\n',
        id="histogram-explicit-buckets",
    ),
    pytest.param(
        request(summary("rpc", [(0.5, 3.0), (0.99, 9.0)], 120.0, 30)),
        "# HELP rpc \n# TYPE rpc summary\n"
        'rpc{quantile="0.5",service_name="shop"} 3.0\n'
        'rpc{quantile="0.99",service_name="shop"} 9.0\n'
        'rpc_count{service_name="shop"} 30.0\n'
        'rpc_sum{service_name="shop"} 120.0\n',
        id="summary",
    ),
    pytest.param(
        request(exponential("size", [epoint(0, (0, [1, 2]), zero_count=1, total=7.0)])),
        "# HELP size \n# TYPE size histogram\n"
        'size_bucket{le="0.0",service_name="shop"} 1.0\n'
        'size_bucket{le="2.0",service_name="shop"} 2.0\n'
        'size_bucket{le="4.0",service_name="shop"} 4.0\n'
        'size_bucket{le="+Inf",service_name="shop"} 4.0\n'
        'size_count{service_name="shop"} 4.0\n'
        'size_sum{service_name="shop"} 7.0\n',
        id="exponential-as-classic",
    ),
    pytest.param(
        request(
            gauge(
                "g",
                [
                    number(math.nan, {"k": "nan"}),
                    number(math.inf, {"k": "inf"}),
                    number(-math.inf, {"k": "-inf"}),
                ],
            )
        ),
        '# HELP g \n# TYPE g gauge\ng{k="nan",service_name="shop"} NaN\ng{k="inf",service_name="shop"} +Inf\ng{k="-inf",service_name="shop"} -Inf\n',
        id="nan-and-infinities",
    ),
    pytest.param(
        request(
            gauge("g", [number(1)]),
            resource={
                "service.name": "a",
                "service.namespace": "ns",
                "service.instance.id": "i-1",
                "host.name": "h",
            },
        ),
        '# HELP g \n# TYPE g gauge\ng{service_instance_id="i-1",service_name="a",service_namespace="ns"} 1.0\n',
        id="promoted-resource-attributes",
    ),
]


@pytest.mark.parametrize(
    "encoding", [None, Encoding.PROTOBUF, Encoding.JSON], ids=["message", "protobuf", "json"]
)
@pytest.mark.parametrize(("req", "expected"), CASES)
def test_rule(req, expected, encoding):
    harness = Harness()
    _, outcome = harness.push(req, encoding)
    assert outcome.rejected == {}
    assert harness.text() == expected


def test_scope_labels_and_target_info():
    harness = Harness(scope_labels=True, target_info=True)
    harness.push(
        request(
            gauge("g", [number(1)]),
            resource={"service.name": "a", "host.name": "h"},
            scope=("lib", "2.0"),
        )
    )
    assert harness.text() == (
        "# HELP target_info Target metadata\n# TYPE target_info gauge\n"
        'target_info{host_name="h",service_name="a"} 1.0\n'
        '# HELP g \n# TYPE g gauge\ng{otel_scope_name="lib",otel_scope_version="2.0",service_name="a"} 1.0\n'
    )


def test_openmetrics_has_unit_and_base_names():
    harness = Harness()
    harness.push(request(counter("sent", [number(1)], unit="By", description='say "hi"')))
    assert harness.text(openmetrics=True) == (
        '# HELP sent_bytes say \\"hi\\"\n# TYPE sent_bytes counter\n# UNIT sent_bytes bytes\n'
        'sent_bytes_total{service_name="shop"} 1.0\n'
    )


def test_delta_sums_accumulate():
    harness = Harness()
    for i, value in enumerate([2, 3, 5]):
        harness.push(
            request(counter("c", [number(value, start=10 + i, time=11 + i)], temporality=DELTA))
        )
    assert 'c_total{service_name="shop"} 10.0' in harness.text()


def test_delta_non_monotonic_sums_accumulate():
    harness = Harness()
    for i, value in enumerate([5, -2, -1]):
        harness.push(
            request(
                counter(
                    "q",
                    [number(value, start=10 + i, time=11 + i)],
                    temporality=DELTA,
                    monotonic=False,
                )
            )
        )
    assert 'q{service_name="shop"} 2.0' in harness.text()


def test_delta_histograms_accumulate():
    harness = Harness()
    harness.push(
        request(histogram("h", [hpoint([1.0], [1, 2], 5.0, start=1, time=2)], temporality=DELTA))
    )
    harness.push(
        request(histogram("h", [hpoint([1.0], [3, 4], 6.0, start=2, time=3)], temporality=DELTA))
    )
    text = harness.text()
    assert 'h_bucket{le="1.0",service_name="shop"} 4.0' in text
    assert 'h_bucket{le="+Inf",service_name="shop"} 10.0' in text
    assert 'h_sum{service_name="shop"} 11.0' in text


def test_delta_exponential_histograms_accumulate_at_the_lower_scale():
    harness = Harness()
    harness.push(
        request(
            exponential(
                "e", [epoint(1, (0, [1, 1]), total=3.0, start=1, time=2)], temporality=DELTA
            )
        )
    )
    harness.push(
        request(
            exponential("e", [epoint(0, (0, [2]), total=3.0, start=2, time=3)], temporality=DELTA)
        )
    )
    # scale 1 buckets 0 and 1 ((1, 1.41], (1.41, 2]) merge into scale 0 bucket 0 ((1, 2])
    text = harness.text()
    assert 'e_bucket{le="2.0",service_name="shop"} 4.0' in text
    assert 'e_sum{service_name="shop"} 6.0' in text


def test_exponential_scale_reduced_to_max_buckets():
    harness = Harness(StoreLimits(exponential_max_buckets=4))
    harness.push(request(exponential("e", [epoint(3, (0, [1] * 16), total=20.0)])))
    text = harness.text()
    buckets = [line for line in text.splitlines() if line.startswith("e_bucket")]
    # 16 buckets at scale 3 span (1, 4]: at scale 1 that is 4 buckets, bounds exact powers of sqrt(2)
    assert len(buckets) == 1 + 4 + 1  # zero bucket, four, +Inf
    assert 'e_bucket{le="2.0",service_name="shop"} 8.0' in text
    assert 'e_bucket{le="4.0",service_name="shop"} 16.0' in text


def test_out_of_order_and_overlapping_deltas_rejected():
    harness = Harness()
    harness.push(request(counter("c", [number(1, start=10, time=20)], temporality=DELTA)))
    _, outcome = harness.push(
        request(counter("c", [number(5, start=15, time=25)], temporality=DELTA))
    )
    assert outcome.rejected == {"out_of_order": 1}
    _, outcome = harness.push(
        request(counter("c", [number(5, start=5, time=10)], temporality=DELTA))
    )
    assert outcome.rejected == {"out_of_order": 1}
    assert 'c_total{service_name="shop"} 1.0' in harness.text()


def test_cumulative_reset_passes_through():
    harness = Harness()
    harness.push(request(counter("c", [number(100, start=1, time=5)])))
    _, outcome = harness.push(request(counter("c", [number(3, start=6, time=7)])))
    assert outcome.accepted == 1
    assert 'c_total{service_name="shop"} 3.0' in harness.text()


def test_older_cumulative_point_rejected():
    harness = Harness()
    harness.push(request(counter("c", [number(10, start=1, time=5)])))
    _, outcome = harness.push(request(counter("c", [number(7, start=1, time=4)])))
    assert outcome.rejected == {"out_of_order": 1}
    assert 'c_total{service_name="shop"} 10.0' in harness.text()


def test_type_change_rejected_old_series_stand():
    harness = Harness()
    harness.push(request(gauge("m", [number(1)])))
    _, outcome = harness.push(request(histogram("m", [hpoint([1.0], [1, 1], 1.0)])))
    assert outcome.rejected == {"type_conflict": 1}
    assert harness.text() == '# HELP m \n# TYPE m gauge\nm{service_name="shop"} 1.0\n'


def test_unspecified_temporality_rejected():
    harness = Harness()
    batch, _ = harness.push(request(counter("c", [number(1)], temporality=0)))
    assert batch.rejected == {"unspecified_temporality": 1}
    assert harness.text() == ""


def test_negative_exponential_buckets_drop_count_and_sum_like_prometheus_client():
    harness = Harness()
    harness.push(request(exponential("e", [epoint(0, (0, [1]), negative=(0, [2]), total=-1.0)])))
    text = harness.text()
    assert 'e_bucket{le="-1.0",service_name="shop"} 2.0' in text
    assert 'e_bucket{le="0.0",service_name="shop"} 2.0' in text
    assert 'e_bucket{le="2.0",service_name="shop"} 3.0' in text
    assert "e_count" not in text
