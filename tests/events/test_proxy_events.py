"""Real envelopes through the real proxy to the stand-in gateway on 127.0.0.1.

Every test checks both sides: what the gateway received (byte for byte what the client
sent) and answered (the client gets that answer, never one from the sidecar), and the
event metrics on the proxy's own registry.
"""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest

from sidecar.demo import samples
from sidecar.demo.gateway import send_event_trickle
from sidecar.events.codec import PAYLOAD_TYPES
from sidecar.gen.causality.v1 import service_pb2
from tests.support.events_proxy import EventsProxy, EventsProxyFactory

BATCH = "/v1/events/batch"
INGEST = "/v1/events/ingest"
CONTENT_TYPES = {
    "json": "application/json",
    "json-names": None,
    "protobuf": "application/x-protobuf",
    "octet": "application/octet-stream",
}


def _encoding(name: str) -> str:
    return "protobuf" if name == "octet" else name


@pytest.mark.parametrize("name", CONTENT_TYPES)
async def test_batch_round_trip_is_byte_exact_and_counted(
    events_proxy: EventsProxy, name: str
) -> None:
    events = list(samples.envelopes(2 * len(PAYLOAD_TYPES)))
    events.append(samples.envelope(None, idempotency_key=""))
    body = samples.batch_body(events, _encoding(name))
    status, answer, _ = await events_proxy.post(BATCH, body, CONTENT_TYPES[name])
    assert status == 200
    assert events_proxy.gateway.bodies == [body]
    if name in ("protobuf", "octet"):
        response = service_pb2.IngestEventBatchResponse.FromString(answer)
        accepted, rejected = response.accepted_count, response.rejected_count
    else:
        parsed = json.loads(answer)
        accepted, rejected = parsed["acceptedCount"], parsed["rejectedCount"]
    assert (accepted, rejected) == (2 * len(PAYLOAD_TYPES), 1)
    p = events_proxy
    for kind in PAYLOAD_TYPES:
        assert p.value("causality_events_total", type=kind) == 2, kind
    assert p.value("causality_events_total", type="none") == 1
    assert p.value("causality_events_missing_idempotency_key_total") == 1
    assert p.value("causality_event_batch_size_count") == 1
    assert p.value("causality_event_batch_size_sum") == len(events)
    await p.wait_for_value("causality_events_rejected_total", 1)
    assert (
        p.value("http_request_total", method="POST", path=BATCH, status="200", reporter="sidecar")
        == 1
    )


@pytest.mark.parametrize("name", CONTENT_TYPES)
async def test_single_ingest_round_trip(events_proxy: EventsProxy, name: str) -> None:
    body = samples.ingest_body(
        samples.envelope("purchase_complete", idempotency_key="k-1"), _encoding(name)
    )
    status, answer, _ = await events_proxy.post(INGEST, body, CONTENT_TYPES[name])
    assert status == 200
    assert events_proxy.gateway.bodies == [body]
    if name not in ("protobuf", "octet"):
        assert json.loads(answer)["status"] == "EVENT_STATUS_ACCEPTED"
    assert events_proxy.value("causality_events_total", type="purchase_complete") == 1
    assert events_proxy.value("causality_event_batch_size_count") == 0


async def test_chunked_request_is_inspected(events_proxy: EventsProxy) -> None:
    body = samples.batch_body(list(samples.envelopes(40)))

    async def chunks():  # type: ignore[no-untyped-def]
        for offset in range(0, len(body), 1000):
            yield body[offset : offset + 1000]

    status, _, _ = await events_proxy.post(BATCH, chunks(), "application/json")
    assert status == 200
    assert events_proxy.gateway.bodies == [body]
    assert events_proxy.value("causality_event_batch_size_sum") == 40


@pytest.mark.parametrize(
    ("advance", "duplicates"), [(30.0, 1), (601.0, 0)], ids=["within-window", "after-window"]
)
async def test_duplicates_through_the_proxy(
    events_proxy: EventsProxy, advance: float, duplicates: int
) -> None:
    event = samples.envelope("add_to_cart", idempotency_key="retry-1")
    body = samples.batch_body([event])
    await events_proxy.post(BATCH, body, None)
    events_proxy.clock.now += advance
    status, answer, _ = await events_proxy.post(BATCH, body, None)
    assert status == 200
    assert (
        json.loads(answer)["results"][0]["status"] == "EVENT_STATUS_DUPLICATE"
    )  # the gateway's view
    assert events_proxy.value("causality_events_duplicate_total", type="add_to_cart") == duplicates
    assert events_proxy.value("causality_events_total", type="add_to_cart") == 2


async def test_key_memory_bound_through_the_proxy(events_proxy_factory: EventsProxyFactory) -> None:
    proxy = await events_proxy_factory(dedup_max_keys=2)
    events = [samples.envelope("screen_view", idempotency_key=k) for k in "abc"]
    await proxy.post(BATCH, samples.batch_body(events), None)  # "a" forgotten
    await proxy.post(BATCH, samples.batch_body([events[2], events[0]]), None)
    assert proxy.value("causality_events_duplicate_total", type="screen_view") == 1  # only "c"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_bodies_pass_uninspected(
    events_proxy_factory: EventsProxyFactory, chunked: bool
) -> None:
    proxy = await events_proxy_factory(max_body_bytes=4096)
    body = samples.batch_body(list(samples.envelopes(30)))
    assert len(body) > 4096

    async def chunks():  # type: ignore[no-untyped-def]
        for offset in range(0, len(body), 1024):
            yield body[offset : offset + 1024]

    status, answer, _ = await proxy.post(BATCH, chunks() if chunked else body, "application/json")
    assert status == 200
    assert json.loads(answer)["acceptedCount"] == 30
    assert proxy.gateway.bodies == [body]
    assert proxy.value("causality_event_decode_errors_total", reason="body_too_large") == 1
    assert proxy.value("causality_events_total", type="user_login") == 0
    assert proxy.value("causality_event_batch_size_count") == 0


@pytest.mark.parametrize("oversized", [False, True], ids=["inspected", "oversized"])
async def test_a_body_arriving_with_its_head_is_inspected_and_forwarded(
    events_proxy_factory: EventsProxyFactory, oversized: bool
) -> None:
    """Head and body in one packet (the body is whole when the proxy sees the head): it
    is inspected (or counted as skipped past the limit) and forwarded byte for byte."""
    proxy = await events_proxy_factory(max_body_bytes=64 if oversized else 4096)
    body = samples.batch_body([samples.envelope("app_start", idempotency_key="one-packet")])
    assert 64 < len(body) <= 4096
    port = proxy.component.addresses[0].port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {BATCH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)  # one send: one segment on loopback
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert proxy.gateway.bodies == [body]
    if oversized:
        assert proxy.value("causality_event_decode_errors_total", reason="body_too_large") == 1
        assert proxy.value("causality_events_total", type="app_start") == 0
    else:
        assert proxy.value("causality_events_total", type="app_start") == 1
        assert proxy.value("causality_event_decode_errors_total", reason="body_too_large") == 0


UNDECODABLE = [
    ("invalid_json", BATCH, b'{"events": [', "application/json"),
    ("invalid_protobuf", BATCH, b"\x0a\xff\xff\xff", "application/x-protobuf"),
    ("schema", INGEST, b'{"event": [1, 2]}', "application/json"),
    ("empty_batch", BATCH, b'{"events": []}', "application/json"),
    ("too_many_events", BATCH, json.dumps({"events": [{"screenView": {}}] * 1001}).encode(), None),
    ("unsupported_content_type", BATCH, b"events=1", "application/x-www-form-urlencoded"),
]
REFUSAL_STATUS = {"unsupported_content_type": 415}


@pytest.mark.parametrize(
    ("reason", "path", "body", "content_type"), UNDECODABLE, ids=[c[0] for c in UNDECODABLE]
)
async def test_undecodable_bodies_are_forwarded_and_counted(
    events_proxy: EventsProxy, reason: str, path: str, body: bytes, content_type: str | None
) -> None:
    status, answer, answer_type = await events_proxy.post(path, body, content_type)
    assert events_proxy.gateway.bodies == [body]
    assert status == REFUSAL_STATUS.get(reason, 400)  # the gateway's refusal, passed through
    assert (answer_type or "").startswith("application/json")
    assert json.loads(answer)["code"] == 3
    assert events_proxy.value("causality_event_decode_errors_total", reason=reason) == 1
    assert events_proxy.value("causality_event_decode_errors_total", reason="invalid_response") == 0


async def test_gateway_errors_on_the_batch_route_are_not_counted(events_proxy: EventsProxy) -> None:
    await events_proxy.post(BATCH, b"{}", None)  # empty batch: gateway answers 400
    await events_proxy.wait_for_value(
        "http_request_total", 1, method="POST", path=BATCH, status="400", reporter="sidecar"
    )
    assert events_proxy.value("causality_events_rejected_total") == 0
    assert events_proxy.value("causality_event_decode_errors_total", reason="invalid_response") == 0


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
async def test_batch_response_rejected_count(events_proxy: EventsProxy, encoding: str) -> None:
    events = [samples.envelope(None, seed=i) for i in range(3)] + [samples.envelope("app_start")]
    content_type = "application/x-protobuf" if encoding == "protobuf" else None
    for _ in range(2):
        status, _, _ = await events_proxy.post(
            BATCH, samples.batch_body(events, encoding), content_type
        )
        assert status == 200
    await events_proxy.wait_for_value("causality_events_rejected_total", 6)


async def test_other_routes_and_methods_are_not_inspected(events_proxy: EventsProxy) -> None:
    body = samples.batch_body([samples.envelope("app_start")])
    status, _, _ = await events_proxy.post("/v1/events/other", body, None)
    assert status == 404
    async with events_proxy.session.put(events_proxy.url + BATCH, data=body) as response:
        assert response.status == 405
    assert "causality_events_total" not in events_proxy.text()


async def test_inspection_disabled_counts_nothing(events_proxy_factory: EventsProxyFactory) -> None:
    proxy = await events_proxy_factory(enabled=False)
    body = samples.batch_body([samples.envelope("app_start")])
    status, _, _ = await proxy.post(BATCH, body, None)
    assert status == 200
    assert proxy.gateway.bodies == [body]
    assert "causality_events_total" not in proxy.text()


async def test_demo_trickle_shows_every_event_metric(events_proxy: EventsProxy) -> None:
    stop = asyncio.Event()
    trickle = asyncio.create_task(send_event_trickle(events_proxy.url, stop, interval=0.01, seed=7))
    try:
        deadline = asyncio.get_running_loop().time() + 30.0
        while not _trickle_shows_everything(events_proxy):
            assert asyncio.get_running_loop().time() < deadline, events_proxy.text()
            assert not trickle.done()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        answered = await asyncio.wait_for(trickle, 10)
    assert answered == len(events_proxy.gateway.bodies) > 0


def _trickle_shows_everything(proxy: EventsProxy) -> bool:
    text = proxy.text()
    return (
        "causality_events_duplicate_total{" in text
        and proxy.value("causality_events_rejected_total") > 0
        and proxy.value("causality_events_missing_idempotency_key_total") > 0
        and proxy.value("causality_event_batch_size_count") > 0
        and proxy.value("causality_events_total", type="none") > 0
    )


async def test_client_sees_the_gateway_answer_not_the_sidecar(events_proxy: EventsProxy) -> None:
    body = samples.batch_body([samples.envelope("app_crash", idempotency_key="x")], "protobuf")
    status, answer, answer_type = await events_proxy.post(BATCH, body, "application/x-protobuf")
    assert (status, answer_type) == (200, "application/x-protobuf")
    response = service_pb2.IngestEventBatchResponse.FromString(answer)
    assert response.accepted_count == 1
    assert response.results[0].event_id[14] == "7"  # a UUID v7 filled in by the gateway


async def test_gzip_response_is_counted(events_proxy: EventsProxy) -> None:
    events = [samples.envelope("checkout_step", idempotency_key="z"), samples.envelope(None)]
    status, answer, _ = await events_proxy.post(
        BATCH, samples.batch_body(events), "application/json", **{"Accept-Encoding": "gzip"}
    )
    assert status == 200
    assert json.loads(gzip.decompress(answer))["rejectedCount"] == 1  # passed on compressed
    await events_proxy.wait_for_value("causality_events_rejected_total", 1)
    assert events_proxy.value("causality_event_decode_errors_total", reason="invalid_response") == 0


async def test_gzip_request_is_forwarded_as_sent_and_counted(events_proxy: EventsProxy) -> None:
    plain = samples.batch_body([samples.envelope("checkout_step", idempotency_key="z")])
    status, _, _ = await events_proxy.post(
        BATCH, gzip.compress(plain), "application/json", **{"Content-Encoding": "gzip"}
    )
    assert status == 200
    assert events_proxy.gateway.bodies == [plain]  # aiohttp's server inflated what it got
    assert events_proxy.value("causality_events_total", type="checkout_step") == 1
