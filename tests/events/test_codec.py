"""Body decoding: content types, both JSON spellings, binary, every decode-error reason."""

from __future__ import annotations

import gzip
import json

import pytest

from sidecar.demo import samples
from sidecar.events.codec import (
    MAX_BATCH_EVENTS,
    NO_TYPE,
    DecodeError,
    DecodeReason,
    Encoding,
    EventSummary,
    decode_batch_request,
    decode_batch_response,
    decode_ingest_request,
    encoding_of,
    summarize_ingest_request,
)
from sidecar.gen.causality.v1 import service_pb2
from tests.support.events import BATCH_ERRORS, json_batch

R = DecodeReason


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, Encoding.JSON),
        ("", Encoding.JSON),
        ("application/json", Encoding.JSON),
        ("Application/JSON; charset=utf-8", Encoding.JSON),
        ("application/vnd.causality+json", Encoding.JSON),
        ("application/x-protobuf", Encoding.PROTOBUF),
        ("application/octet-stream", Encoding.PROTOBUF),
        (
            "application/x-protobuf; messageType=causality.v1.IngestEventBatchRequest",
            Encoding.PROTOBUF,
        ),
    ],
    ids=[
        "absent",
        "empty",
        "json",
        "json-params",
        "plus-json",
        "x-protobuf",
        "octet",
        "proto-params",
    ],
)
def test_encoding_of(content_type: str | None, expected: Encoding) -> None:
    assert encoding_of(content_type) is expected


@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data; boundary=x", "application/xml"]
)
def test_unsupported_content_type(content_type: str) -> None:
    with pytest.raises(DecodeError) as caught:
        encoding_of(content_type)
    assert caught.value.reason is R.UNSUPPORTED_CONTENT_TYPE


ENCODINGS = {
    "json": "application/json",
    "json-names": None,
    "protobuf": "application/x-protobuf",
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_batch_gives_type_and_key_per_event(encoding: str) -> None:
    events = [
        samples.envelope("screen_view", idempotency_key="k1"),
        samples.envelope("custom_event", idempotency_key=""),
        samples.envelope(None, idempotency_key="k3"),
    ]
    body = samples.batch_body(events, encoding)
    assert decode_batch_request(body, ENCODINGS[encoding]) == [
        ("screen_view", "k1"),
        ("custom_event", ""),
        ("none", "k3"),
    ]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_ingest_gives_its_event(encoding: str) -> None:
    body = samples.ingest_body(samples.envelope("app_crash", idempotency_key="k"), encoding)
    assert decode_ingest_request(body, ENCODINGS[encoding]) == [("app_crash", "k")]


def test_json_mixed_spellings_and_nulls() -> None:
    body = json.dumps(
        {
            "events": [
                {"idempotency_key": "a", "addToCart": {"quantity": 1}},
                {"idempotencyKey": "b", "add_to_cart": {}, "screenView": None},
                {"idempotencyKey": None, "checkoutStep": {}},
                {"unknownFieldFromANewerSdk": 1},
            ]
        }
    ).encode()
    assert decode_batch_request(body, None) == [
        ("add_to_cart", "a"),
        ("add_to_cart", "b"),
        ("checkout_step", ""),
        ("none", ""),
    ]


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [case[1:] for case in BATCH_ERRORS],
    ids=[c[0] for c in BATCH_ERRORS],
)
def test_batch_decode_errors(body: bytes, content_type: str | None, reason: DecodeReason) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_batch_request(body, content_type)
    assert caught.value.reason is reason


def test_batch_of_exactly_1000_is_fine() -> None:
    assert len(decode_batch_request(json_batch(MAX_BATCH_EVENTS), None)) == MAX_BATCH_EVENTS


INGEST_ERRORS = [
    ("no-event", b"{}", None, R.SCHEMA),
    ("event-null", b'{"event": null}', None, R.SCHEMA),
    ("event-array", b'{"event": []}', None, R.SCHEMA),
    ("no-event-protobuf", b"", "application/x-protobuf", R.SCHEMA),
    ("not-json", b"", None, R.INVALID_JSON),
    ("not-protobuf", b"\x0a\xff", "application/x-protobuf", R.INVALID_PROTOBUF),
]


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [c[1:] for c in INGEST_ERRORS],
    ids=[c[0] for c in INGEST_ERRORS],
)
def test_ingest_decode_errors(body: bytes, content_type: str | None, reason: DecodeReason) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_ingest_request(body, content_type)
    assert caught.value.reason is reason


def test_ingest_summary() -> None:
    body = samples.ingest_body(samples.envelope("app_crash", idempotency_key=""))
    summary = summarize_ingest_request(body, None)
    assert (summary.count, dict(summary.types), summary.keys) == (1, {"app_crash": 1}, [])
    assert summary.missing_keys == 1


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], (0, {}, [])),
        ([("a", "k1"), ("a", ""), ("b", "k2")], (3, {"a": 2, "b": 1}, ["k1", "k2"])),
        ([(NO_TYPE, "")], (1, {NO_TYPE: 1}, [])),
    ],
    ids=["empty", "mixed", "none-without-key"],
)
def test_summary_of_pairs(
    events: list[tuple[str, str]], expected: tuple[int, dict[str, int], list[str]]
) -> None:
    summary = EventSummary.of(events)
    assert (summary.count, dict(summary.types), summary.keys) == expected
    assert summary.missing_keys == expected[0] - len(expected[2])


def _response(rejected: int) -> service_pb2.IngestEventBatchResponse:
    return service_pb2.IngestEventBatchResponse(accepted_count=3, rejected_count=rejected)


RESPONSES = [
    ("json-camel", b'{"acceptedCount": 3, "rejectedCount": 2}', "application/json", 2),
    ("json-original", b'{"rejected_count": 4}', None, 4),
    ("json-string-int", b'{"rejectedCount": "5"}', None, 5),
    ("json-omitted", b'{"acceptedCount": 3}', None, 0),
    (
        "json-with-results",
        b'{"results": [{"index": 0, "error": "x"}], "rejectedCount": 1}',
        None,
        1,
    ),
    ("json-last-of-two", b'{"rejectedCount": 1, "rejectedCount": 6}', None, 6),
    ("json-camel-null", b'{"rejectedCount": null, "rejected_count": 2}', None, 2),
    ("json-float-integral", b'{"rejectedCount": 3.0}', None, 3),
    (
        "json-nan-elsewhere",
        b'{"acceptedCount": NaN, "rejectedCount": 2}',
        None,
        2,
    ),  # json.loads reads it
    ("protobuf", _response(7).SerializeToString(), "application/x-protobuf", 7),
    (
        "protobuf-with-results",
        service_pb2.IngestEventBatchResponse(
            rejected_count=2, results=[service_pb2.EventResult(index=1, error="bad")]
        ).SerializeToString(),
        "application/x-protobuf",
        2,
    ),
    ("protobuf-zero", _response(0).SerializeToString(), "application/octet-stream", 0),
]


@pytest.mark.parametrize(
    ("body", "content_type", "rejected"), [c[1:] for c in RESPONSES], ids=[c[0] for c in RESPONSES]
)
def test_batch_response_rejected_count(
    body: bytes, content_type: str | None, rejected: int
) -> None:
    assert decode_batch_response(body, content_type) == rejected


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html>", "text/html"),
        (b"{", None),
        (b"[]", None),
        (b'{"rejectedCount": -1}', None),
        (b'{"rejectedCount": "many"}', None),
        (b'{"rejectedCount": true}', None),
        (b'{"rejectedCount": {"n": 1}}', None),
        (b'{"rejectedCount": NaN}', None),
        (b"\xff", "application/x-protobuf"),
    ],
    ids=["html", "bad-json", "array", "negative", "word", "bool", "object", "nan", "bad-protobuf"],
)
def test_invalid_batch_responses(body: bytes, content_type: str | None) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_batch_response(body, content_type)
    assert caught.value.reason is R.INVALID_RESPONSE


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_gzip_bodies_are_decompressed(encoding: str) -> None:
    events = [samples.envelope("scroll_event", idempotency_key="g1")]
    body = gzip.compress(samples.batch_body(events, encoding))
    assert decode_batch_request(body, ENCODINGS[encoding]) == [("scroll_event", "g1")]
    single = gzip.compress(samples.ingest_body(events[0], encoding))
    assert decode_ingest_request(single, ENCODINGS[encoding]) == [("scroll_event", "g1")]


def test_gzip_limit_is_the_given_one() -> None:
    body = gzip.compress(samples.batch_body([samples.envelope("app_start")]))
    with pytest.raises(DecodeError) as caught:
        decode_batch_request(body, None, max_bytes=100)
    assert caught.value.reason is R.BODY_TOO_LARGE


def test_gzip_batch_response() -> None:
    body = gzip.compress(b'{"rejectedCount": 3}')
    assert decode_batch_response(body, "application/json") == 3
    with pytest.raises(DecodeError) as caught:
        decode_batch_response(body[:-4], "application/json")
    assert caught.value.reason is R.INVALID_RESPONSE
