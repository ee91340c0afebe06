"""POST /v1/metrics over real HTTP on loopback: every answer, with its body."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import tracemalloc
import zlib
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from prometheus_client.exposition import generate_latest

from sidecar.config import Config
from sidecar.ingest import ingest_state, receiver
from sidecar.ingest.collector import OtlpCollector
from sidecar.instruments import SeriesGauge
from sidecar.observability import Module
from tests.support.otlp import DELTA, counter, gauge, number, request
from tests.support.otlp import PROTOBUF_HEADERS as PROTOBUF

JSON = {"Content-Type": "application/json"}
ONE_GIB = 1 << 30


def _body() -> bytes:
    return request(counter("c", [number(1, {"k": "v"})])).SerializeToString()


def _json_body() -> bytes:
    return json_format.MessageToJson(request(counter("c", [number(1, {"k": "v"})]))).encode()


async def _text(ingest) -> str:
    out: list[str] = []
    for family in OtlpCollector(ingest.state.store).families():
        family.render(False, out)
    return "".join(out)


async def test_protobuf_200_empty_response(ingest):
    response = await ingest.client.post("/v1/metrics", data=_body(), headers=PROTOBUF)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-protobuf"
    message = ExportMetricsServiceResponse.FromString(await response.read())
    assert not message.HasField("partial_success")
    assert (
        'c_total{k="v",otel_scope_name="app",otel_scope_version="1.0",service_name="shop"} 1.0'
        in await _text(ingest)
    )


async def test_json_200_with_charset(ingest):
    response = await ingest.client.post(
        "/v1/metrics",
        data=_json_body(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(await response.read()) == {}


async def test_json_snake_case_string_ints_and_unknown_fields(ingest):
    body = {
        "resource_metrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}], "futureField": 1},
            "scopeMetrics": [{"scope": {"name": "s"}, "metrics": [{
                "name": "c", "someNewThing": {"x": 1},
                "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [
                    {"asInt": "9007199254740993", "timeUnixNano": "2", "startTimeUnixNano": 1, "unknown": True},
                ]},
            }]}],
        }],
    }  # fmt: skip
    response = await ingest.client.post("/v1/metrics", data=json.dumps(body), headers=JSON)
    assert response.status == 200, await response.text()
    assert 'c_total{otel_scope_name="s",service_name="shop"} 9.007199254740992e+15' in await _text(
        ingest
    )


async def test_partial_success_counts_and_explains(ingest):
    await ingest.client.post(
        "/v1/metrics",
        data=request(
            counter("c", [number(1, start=5, time=10)], temporality=DELTA)
        ).SerializeToString(),
        headers=PROTOBUF,
    )
    late = request(
        counter("c", [number(1, start=1, time=3)], temporality=DELTA),
        gauge("c_total", [number(1)]),
        counter("d", [number(1)], temporality=0),
    )
    response = await ingest.client.post(
        "/v1/metrics", data=late.SerializeToString(), headers=PROTOBUF
    )
    assert response.status == 200
    message = ExportMetricsServiceResponse.FromString(await response.read())
    assert message.partial_success.rejected_data_points == 2
    assert message.partial_success.error_message == "1 out_of_order; 1 unspecified_temporality"


async def test_partial_success_json(ingest):
    body = json_format.MessageToJson(request(counter("d", [number(1)], temporality=0)))
    response = await ingest.client.post("/v1/metrics", data=body, headers=JSON)
    assert json.loads(await response.read()) == {
        "partialSuccess": {"rejectedDataPoints": "1", "errorMessage": "1 unspecified_temporality"}
    }


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw"])
async def test_compressed_bodies(ingest, encoding):
    if encoding == "gzip":
        data = gzip.compress(_body())
    elif encoding == "deflate":
        data = zlib.compress(_body())
    else:
        compressor = zlib.compressobj(wbits=-15)
        data = compressor.compress(_body()) + compressor.flush()
    headers = {**PROTOBUF, "Content-Encoding": encoding.removesuffix("-raw")}
    response = await ingest.client.post("/v1/metrics", data=data, headers=headers)
    assert response.status == 200
    assert "c_total" in await _text(ingest)


@pytest.mark.parametrize(
    ("data", "headers", "reason"),
    [
        pytest.param(
            b"\xff\xff\xff\xff garbage",
            PROTOBUF,
            "cannot decode protobuf body",
            id="garbage-protobuf",
        ),
        pytest.param(
            _body()[:-3], PROTOBUF, "cannot decode protobuf body", id="truncated-protobuf"
        ),
        pytest.param(b'{"resourceMetrics": [', JSON, "cannot decode json body", id="broken-json"),
        pytest.param(
            b'{"resourceMetrics": 3}', JSON, "cannot decode json body", id="wrong-json-type"
        ),
        pytest.param(
            gzip.compress(_body())[:-8],
            {**PROTOBUF, "Content-Encoding": "gzip"},
            "truncated gzip stream",
            id="truncated-gzip",
        ),
        pytest.param(
            b"not gzip at all",
            {**PROTOBUF, "Content-Encoding": "gzip"},
            "corrupt gzip stream",
            id="corrupt-gzip",
        ),
        pytest.param(
            _body(),
            {**PROTOBUF, "Content-Encoding": "br"},
            "unsupported Content-Encoding",
            id="unknown-encoding",
        ),
    ],
)
async def test_400_undecodable(ingest, data, headers, reason):
    response = await ingest.client.post("/v1/metrics", data=data, headers=headers)
    assert response.status == 400
    assert response.headers["Content-Type"] == headers["Content-Type"]
    if headers is JSON:
        status = json_format.Parse(await response.read(), status_pb2.Status())
    else:
        status = status_pb2.Status.FromString(await response.read())
    assert status.code == 3
    assert reason in status.message
    assert len(ingest.state.store) == 0


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        pytest.param({"asInt": "twelve"}, "expected an integer for as_int", id="int-not-a-number"),
        pytest.param({"asDouble": [1]}, "expected a number for as_double", id="double-a-list"),
        pytest.param(
            {"asInt": 1, "attributes": [{"key": 3, "value": {}}]},
            "expected a KeyValue object",
            id="key-not-a-string",
        ),
        pytest.param(
            {"asInt": 1, "attributes": [{"key": "k", "value": {"bytesValue": "%%%"}}]},
            "expected base64",
            id="bytes-not-base64",
        ),
        pytest.param(
            {"asInt": 1, "attributes": "k=v"},
            "expected a list for attributes",
            id="attributes-not-a-list",
        ),
        pytest.param(
            {"asInt": 1, "timeUnixNano": True},
            "expected an integer for time_unix_nano",
            id="bool-for-int",
        ),
    ],
)
async def test_400_json_wrong_types_store_nothing(ingest, point, reason):
    good = {"name": "ok", "gauge": {"dataPoints": [{"asInt": 1}]}}
    bad = {"name": "bad", "gauge": {"dataPoints": [point]}}
    body = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [good, bad]}]}]}
    response = await ingest.client.post("/v1/metrics", data=json.dumps(body), headers=JSON)
    assert response.status == 400
    status = json.loads(await response.read())
    assert reason in status["message"]
    assert len(ingest.state.store) == 0


async def test_400_json_body_is_json_status(ingest):
    response = await ingest.client.post("/v1/metrics", data=b"{", headers=JSON)
    assert response.status == 400
    body = json.loads(await response.read())
    assert body["code"] == 3
    assert body["message"].startswith("cannot decode json body")


@pytest.mark.parametrize("signal", ["traces", "logs"])
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_404_traces_and_logs_say_metrics_only(ingest, signal, method):
    """An SDK pointed at the port with OTEL_EXPORTER_OTLP_ENDPOINT sends all three signals:
    the two it cannot take get a 404 (not retried by OTLP exporters) that says why."""
    response = await ingest.client.request(method, f"/v1/{signal}", data=_body(), headers=PROTOBUF)
    assert response.status == 404
    assert response.reason == "Not Found (metrics only: traces and logs are not accepted here)"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert await response.text() == (
        "404: metrics only: traces and logs are not accepted here (POST /v1/metrics)\n"
    )
    text = generate_latest(ingest.module.registry).decode()  # counted, so it can be seen
    assert 'sidecar_otlp_requests_total{code="404",encoding="protobuf"' in text


async def test_404_other_paths(ingest):
    response = await ingest.client.post("/v1/other", data=_body(), headers=PROTOBUF)
    assert response.status == 404
    assert await response.text() == "404: Not Found"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_405_other_methods(ingest, method):
    response = await ingest.client.request(method, "/v1/metrics")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert await response.text() == "405: only POST is allowed on /v1/metrics\n"


@pytest.mark.parametrize("content_type", ["text/plain", "application/protobuf", ""])
async def test_415_other_content_types(ingest, content_type):
    response = await ingest.client.post(
        "/v1/metrics", data=_body(), headers={"Content-Type": content_type}
    )
    assert response.status == 415
    assert (
        await response.text()
        == "415: Content-Type must be application/x-protobuf or application/json\n"
    )


async def test_413_plain_body_over_limit(ingest_factory):
    ingest = await ingest_factory(max_body_bytes=1024)
    response = await ingest.client.post("/v1/metrics", data=b"\0" * 2048, headers=PROTOBUF)
    assert response.status == 413
    assert "over 1024 bytes" in status_pb2.Status.FromString(await response.read()).message


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(ONE_GIB >> 20)]
    return b"".join(parts) + compressor.flush()


async def test_413_gzip_bomb_with_bounded_memory(ingest_factory, gzip_bomb):
    limit = 1 << 20
    ingest = await ingest_factory(max_body_bytes=limit)
    assert len(gzip_bomb) < 2 * limit  # ~1 MiB that inflates to 1 GiB
    tracemalloc.start()
    try:
        started = time.monotonic()
        response = await ingest.client.post(
            "/v1/metrics", data=gzip_bomb, headers={**PROTOBUF, "Content-Encoding": "gzip"}
        )
        body = await response.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status == 413
    assert "after decompression" in status_pb2.Status.FromString(body).message
    assert peak < 8 * limit  # the bomb never allocated anywhere near its 1 GiB
    assert time.monotonic() - started < 10


async def test_429_when_the_store_is_full(ingest_factory):
    ingest = await ingest_factory(max_series=1)
    first = await ingest.client.post(
        "/v1/metrics",
        data=request(gauge("a", [number(1)]), resource={}).SerializeToString(),
        headers=PROTOBUF,
    )
    assert first.status == 200
    second = await ingest.client.post(
        "/v1/metrics",
        data=request(gauge("b", [number(1)]), resource={}).SerializeToString(),
        headers=PROTOBUF,
    )
    assert second.status == 429
    assert second.headers["Retry-After"] == "30"
    status = status_pb2.Status.FromString(await second.read())
    assert (status.code, status.message) == (8, "metric store is full")
    # an existing series still takes updates
    third = await ingest.client.post(
        "/v1/metrics",
        data=request(gauge("a", [number(2, time=3)]), resource={}).SerializeToString(),
        headers=PROTOBUF,
    )
    assert third.status == 200


async def test_self_metrics_names(ingest_factory):
    ingest = await ingest_factory(max_series_per_metric=1, series_ttl=0.0)
    await ingest.client.post(
        "/v1/metrics",
        data=request(gauge("g", [number(1, {"a": 1}), number(1, {"a": 2})])).SerializeToString(),
        headers=PROTOBUF,
    )
    await ingest.client.post("/v1/metrics", data=b"{", headers=JSON)
    await ingest.client.post(
        "/v1/metrics",
        data=request(counter("d", [number(1)], temporality=0)).SerializeToString(),
        headers=PROTOBUF,
    )
    ingest.state.store.expire(time.monotonic() + 1)
    text = generate_latest(ingest.module.registry).decode()
    for line in [
        'sidecar_otlp_requests_total{code="200",encoding="protobuf",otel_scope_name="causality-sidecar"',
        'sidecar_otlp_requests_total{code="400",encoding="json"',
        "sidecar_otlp_data_points_received_total{",
        'sidecar_otlp_data_points_rejected_total{otel_scope_name="causality-sidecar",otel_scope_version="',
        'reason="unspecified_temporality"} 1.0',
        'sidecar_series{otel_scope_name="causality-sidecar"',
        'source="ingest"} 0.0',
        "sidecar_series_expired_total{",
        'sidecar_cardinality_overflow_total{metric="g"',
    ]:
        assert line in text, line


def test_series_gauge_takes_several_sources():
    module = Module.new("series-gauge")
    series = SeriesGauge(module.meter)
    ingest_state(Config(), module, series)
    series.add_source("merge", lambda: 42)
    text = generate_latest(module.registry).decode()
    module.provider.shutdown()
    assert 'source="ingest"} 0.0' in text
    assert 'source="merge"} 42.0' in text


async def test_every_push_is_decoded_in_the_one_decoder_thread(ingest_factory, monkeypatch):
    """Not on the event loop (a push of 1,000 points is ~3 ms of CPU), and always in the
    same thread (the translator's caches are used by that thread only), concurrent
    pushes too; each is stored whole."""
    ingest = await ingest_factory(max_series_per_metric=10_000)
    threads: list[str] = []
    original, store = receiver._translate, receiver._store
    stored: list[str] = []  # the threads that stored them

    def recorded(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args)

    def recorded_store(*args: Any) -> Any:
        stored.append(threading.current_thread().name)
        return store(*args)

    monkeypatch.setattr(receiver, "_translate", recorded)
    monkeypatch.setattr(receiver, "_store", recorded_store)
    bodies = [
        request(
            counter(f"big{n}", [number(i, {"k": f"key-{i}", "pad": "x" * 40}) for i in range(500)])
        ).SerializeToString()
        for n in range(6)
    ]
    responses = await asyncio.gather(
        *(ingest.client.post("/v1/metrics", data=body, headers=PROTOBUF) for body in bodies)
    )
    assert [r.status for r in responses] == [200] * 6
    assert len(ingest.state.store) == 6 * 500 + 1  # and target_info
    assert len(threads) == 6
    assert len(set(threads)) == 1
    assert threads[0].startswith("otlp-decode")
    assert threads[0] != threading.current_thread().name
    assert stored == threads  # stored by the same thread, not on the event loop
