"""Case 9: hostile OTLP bodies get the right 4xx, bounded memory, and touch no series.

Every case first stores one good counter series, sends the hostile body to the real
receiver over loopback, and then checks the answer's status, that the stored exposition
is byte for byte what it was (or, for a body that is partly fine, that the good series is
unchanged), and that a normal push still works.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import time
import tracemalloc
import zlib
from collections.abc import Callable

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList

from sidecar.ingest.collector import OtlpCollector
from tests.support.otlp import (
    counter,
    histogram,
    hpoint,
    number,
    request,
    summary,
)

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
GOOD = request(counter("good", [number(7, {"k": "v"})], description="a good counter"))


def _text(ingest) -> str:
    out: list[str] = []
    for family in OtlpCollector(ingest.state.store).families():
        family.render(False, out)
    return "".join(out)


async def _seeded(ingest_factory, **limits):
    ingest = await ingest_factory(**limits)
    response = await ingest.client.post(
        "/v1/metrics", data=GOOD.SerializeToString(), headers=PROTOBUF
    )
    assert response.status == 200
    return ingest, _text(ingest)


async def _still_ingests(ingest) -> None:
    later = request(counter("later", [number(1)]))
    response = await ingest.client.post(
        "/v1/metrics", data=later.SerializeToString(), headers=PROTOBUF
    )
    assert response.status == 200
    assert "later_total" in _text(ingest)


def _nested_kvlist(depth: int) -> AnyValue:
    value = AnyValue(string_value="leaf")
    for _ in range(depth):
        value = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=value)]))
    return value


def _with_attribute(any_value: bytes) -> bytes:
    """An ExportMetricsServiceRequest whose one point has attribute ``d`` = ``any_value``."""

    def field(number: int, payload: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload

    kv = field(1, b"d") + field(2, any_value)
    point = field(7, kv) + b"\x11" + (1).to_bytes(8, "little") + b"\x19" + (2).to_bytes(8, "little")
    point += b"\x31" + (1).to_bytes(8, "little", signed=True)  # as_int = 1
    sum_ = field(1, point) + b"\x10\x02\x18\x01"  # cumulative, monotonic
    metric = field(1, b"deep") + field(7, sum_)
    scope_metrics = field(2, metric)
    resource_metrics = field(2, scope_metrics)
    return field(1, resource_metrics)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _nested_json(depth: int) -> bytes:
    inner = '{"stringValue":"leaf"}'
    for _ in range(depth):
        inner = '{"kvlistValue":{"values":[{"key":"k","value":' + inner + "}]}}"
    body = json_format.MessageToJson(request(counter("deep", [number(1)])), indent=None)
    return body.replace(
        '"asInt"', '"attributes":[{"key":"d","value":' + inner + '}],"asInt"'
    ).encode()


def _gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(compressor.compress(zeros) for _ in range(size >> 20)) + compressor.flush()


def _many_attributes(count: int) -> bytes:
    point = number(1)
    point.attributes.extend(
        KeyValue(key=f"a{i}", value=AnyValue(string_value="v")) for i in range(count)
    )
    return request(counter("wide", [point])).SerializeToString()


def _invalid_utf8_protobuf() -> bytes:
    body = request(counter("bad_name_x", [number(1, {"key_x": "v"})])).SerializeToString()
    return body.replace(b"bad_name_x", b"bad_name\xff\xfe").replace(
        b"key_x", b"key\xc3\x28"
    )  # same lengths


def _invalid_utf8_attribute_only() -> bytes:
    body = request(counter("fine", [number(1, {"key_x": "value_x"})])).SerializeToString()
    return body.replace(b"key_x", b"key\xc3\x28").replace(b"value_x", b"value\xed\xa0")


def _json_malformed_integer() -> bytes:
    """Found by the fuzzer: a string integer that is not one (``"-----4"``)."""
    point = {"timeUnixNano": "2", "count": "-----4", "sum": 1.0}
    metric = {"name": "s", "summary": {"dataPoints": [point]}}
    return json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]}).encode()


CASES: dict[str, tuple[Callable[[], bytes], dict[str, str], set[int]]] = {
    "kvlist-nested-10000-protobuf": (lambda: _with_attribute(_deep_any(10_000)), PROTOBUF, {400}),
    "kvlist-nested-10000-json": (lambda: _nested_json(10_000), JSON, {400}),
    "invalid-utf8-names-protobuf": (_invalid_utf8_protobuf, PROTOBUF, {400}),
    "invalid-utf8-attribute-protobuf": (_invalid_utf8_attribute_only, PROTOBUF, {400}),
    "invalid-utf8-json": (
        lambda: (
            b'{"resourceMetrics":[{"resource":{"attributes":[{"key":"\xff\xfe","value":{"stringValue":"x"}}]}}]}'
        ),
        JSON,
        {400},
    ),
    "truncated-protobuf": (lambda: GOOD.SerializeToString()[:-3], PROTOBUF, {400}),
    "json-malformed-string-integer": (_json_malformed_integer, JSON, {400}),
}


def _deep_any(depth: int) -> bytes:
    def field(number: int, payload: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload

    body = AnyValue(string_value="leaf").SerializeToString()
    for _ in range(depth):
        body = field(6, field(1, field(1, b"k") + field(2, body)))
    return body


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_hostile_body_is_refused_and_touches_nothing(ingest_factory, case: str) -> None:
    make, headers, statuses = CASES[case]
    ingest, before = await _seeded(ingest_factory)
    body = make()
    tracemalloc.start()
    try:
        response = await ingest.client.post("/v1/metrics", data=io.BytesIO(body), headers=headers)
        await response.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status in statuses
    assert _text(ingest) == before
    assert peak < 64 * len(body) + 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    await _still_ingests(ingest)


async def test_gzip_bomb_is_413_with_bounded_memory(ingest_factory) -> None:
    ingest, before = await _seeded(ingest_factory, max_body_bytes=4 * 2**20)
    bomb = _gzip_bomb(512 * 2**20)  # ~500 KiB inflating to 512 MiB
    tracemalloc.start()
    try:
        response = await ingest.client.post(
            "/v1/metrics", data=io.BytesIO(bomb), headers={**PROTOBUF, "Content-Encoding": "gzip"}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status == 413
    assert peak < 6 * 4 * 2**20
    assert _text(ingest) == before
    await _still_ingests(ingest)


async def test_100mb_declared_with_a_short_body_is_413_at_once(ingest_factory) -> None:
    ingest, before = await _seeded(ingest_factory)
    port = ingest.client.server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(
            b"POST /v1/metrics HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 100000000\r\n\r\n" + b"\x0a\x00" * 8
        )
        await writer.drain()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert status_line.split(b" ")[1] == b"413"
    assert time.monotonic() - started < 5  # answered from the header, not after a read timeout
    assert _text(ingest) == before
    await _still_ingests(ingest)


@pytest.mark.xdist_group("adversarial-long")
async def test_a_million_attributes_is_refused_with_bounded_memory(ingest_factory) -> None:
    ingest, before = await _seeded(ingest_factory)
    body = _many_attributes(1_000_000)
    assert (
        len(body) < 20 * 2**20
    )  # under ingest.max_body_bytes: the size check alone does not stop it
    tracemalloc.start()
    try:
        started = time.monotonic()
        response = await ingest.client.post("/v1/metrics", data=io.BytesIO(body), headers=PROTOBUF)
        await response.read()
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a series with a million labels would make every scrape megabytes long: refuse the point
    assert 400 <= response.status < 500 or "wide" not in _text(ingest)
    assert _text(ingest).startswith(before.rstrip("\n").split("\n")[0])
    assert "good_total" in _text(ingest)
    assert peak < 1024 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert elapsed < 60
    await _still_ingests(ingest)


NAN = math.nan


def _with_count(point, count: int):
    point.count = count
    return point


HISTOGRAM_CASES = {
    "nan-sum": histogram("h", description="h", points=[hpoint([1.0], [1, 1], NAN)]),
    "nan-bound": histogram("h", description="h", points=[hpoint([NAN], [1, 1], 1.0)]),
    "inf-bound": histogram("h", description="h", points=[hpoint([math.inf], [1, 1], 1.0)]),
    "unsorted-bounds": histogram("h", description="h", points=[hpoint([5.0, 1.0], [1, 1, 1], 1.0)]),
    "counts-mismatch": histogram("h", description="h", points=[hpoint([1.0], [1, 1, 1, 1], 1.0)]),
    "huge-bucket-counts": histogram(
        "h",
        description="h",
        points=[_with_count(hpoint([1.0], [2**63, 2**63 - 1], 1.0), 2**64 - 1)],
    ),
    "count-not-sum-of-buckets": histogram(
        "h", description="h", points=[_with_count(hpoint([1.0], [1, 1], 1.0), 10**6)]
    ),
    "nan-summary": summary("s", [(NAN, 1.0), (0.5, NAN)], NAN, 3, description="s"),
    "quantile-out-of-range": summary("s", [(7.0, 1.0)], 1.0, 3, description="s"),
}


@pytest.mark.parametrize("metric", list(HISTOGRAM_CASES.values()), ids=list(HISTOGRAM_CASES))
async def test_odd_histogram_points_never_corrupt_the_exposition(ingest_factory, metric) -> None:
    """Stored or rejected (in partial_success), but the good series stays and /metrics parses."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.support.prometheus import check_metrics

    ingest, before = await _seeded(ingest_factory)
    body = request(metric).SerializeToString()
    response = await ingest.client.post("/v1/metrics", data=body, headers=PROTOBUF)
    assert response.status in (200, 400)
    text = _text(ingest)
    assert before.strip() in text  # the good series' lines, unchanged
    list(text_string_to_metric_families(text))
    check = check_metrics(text)
    assert check.passes, check.unexpected
    await _still_ingests(ingest)


def test_the_hand_encoded_nesting_is_what_the_classes_decode() -> None:
    """Guard for the encoder above: shallow nesting decodes to the same message."""
    decoded = ExportMetricsServiceRequest.FromString(_with_attribute(_deep_any(3)))
    value = (
        decoded.resource_metrics[0]
        .scope_metrics[0]
        .metrics[0]
        .sum.data_points[0]
        .attributes[0]
        .value
    )
    assert value == _nested_kvlist(3)


async def test_an_extreme_exponential_histogram_never_breaks_the_scrape(ingest_factory) -> None:
    """Found by the fuzzer: scale -10 with bucket offset 10^6 stored fine, then every
    render raised OverflowError (math.ldexp in text._power) until the series expired."""
    from tests.support.otlp import epoint, exponential

    ingest, before = await _seeded(ingest_factory)
    body = request(exponential("e", [epoint(-10, (1_000_000, [1]))], description="d"))
    response = await ingest.client.post(
        "/v1/metrics", data=body.SerializeToString(), headers=PROTOBUF
    )
    assert response.status in (200, 400)
    text = _text(ingest)  # must not raise
    assert before.strip() in text
    await _still_ingests(ingest)


async def test_exponential_buckets_near_zero_keep_distinct_increasing_bounds(
    ingest_factory,
) -> None:
    """Found by the fuzzer: at scale -6, bucket indexes around -50 have bounds that
    underflow to 0.0, so several classic buckets were all written as ``le="-0.0"`` —
    duplicate series that OpenMetrics parsers (and Prometheus) refuse."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    from tests.support.otlp import epoint, exponential

    ingest, before = await _seeded(ingest_factory)
    point = epoint(-6, (-19, [1, 0, 4]), negative=(-53, [1, 0, 4, 2, 2]), zero_count=1)
    body = request(exponential("e", [point], description="d"))
    response = await ingest.client.post(
        "/v1/metrics", data=body.SerializeToString(), headers=PROTOBUF
    )
    assert response.status in (200, 400)
    out: list[str] = []
    for family in OtlpCollector(ingest.state.store).families():
        family.render(True, out)
    text = "".join(out) + "# EOF\n"
    bounds = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("e_bucket")
    ]
    assert len(bounds) == len(set(bounds)), bounds
    list(text_string_to_metric_families(text))  # raises on out-of-order or duplicate buckets
    assert before.strip() in _text(ingest)
