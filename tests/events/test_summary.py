"""The bulk batch summary against the exact per-event decoder: same answers, same errors."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from sidecar.events import samples
from sidecar.events.codec import (
    NO_TYPE,
    PAYLOAD_TYPES,
    DecodeError,
    DecodeReason,
    EventSummary,
    _binary_summary,
    _json_summary,
    _types,
    decode_batch_request,
    summarize_batch_request,
    summarize_ingest_request,
)
from sidecar.gen.causality.v1 import events_pb2, service_pb2
from tests.events.test_codec import BATCH_ERRORS

CONTENT_TYPES = {
    "json": None,
    "json-names": "application/json",
    "protobuf": "application/octet-stream",
}


def _same(summary: EventSummary, exact: EventSummary) -> None:
    assert summary.count == exact.count
    assert dict(summary.types) == dict(exact.types)
    assert summary.keys == exact.keys
    assert summary.missing_keys == exact.missing_keys
    everything = range(len(exact.keys))
    assert summary.types_of(everything) == exact.types_of(everything)


def _random_batch(rng: random.Random) -> list[events_pb2.EventEnvelope]:
    keys = ["", "", "k-a", "k-b", "k-c"] + [f"key-{rng.random()}" for _ in range(5)]
    events = []
    for index in range(rng.randint(1, 40)):
        kind = rng.choice([*PAYLOAD_TYPES, None])
        events.append(samples.envelope(kind, idempotency_key=rng.choice(keys), seed=index + 1))
    return events


@pytest.mark.parametrize("encoding", CONTENT_TYPES)
def test_summary_equals_the_exact_decoder_on_generated_batches(encoding: str) -> None:
    rng = random.Random(f"summary-{encoding}")
    content_type = CONTENT_TYPES[encoding]
    fast = _binary_summary if encoding == "protobuf" else _json_summary
    for _ in range(150):
        body = samples.batch_body(_random_batch(rng), encoding)
        if rng.random() < 0.1:
            body = gzip.compress(body)
        summary = summarize_batch_request(body, content_type)
        _same(summary, EventSummary.of(decode_batch_request(body, content_type)))
    # and the bulk path really ran on plain bodies (not the exact fallback)
    assert fast(samples.batch_body(_random_batch(rng), encoding)) is not None


# JSON bodies off the plain path: the bulk path declines, the exact one answers.
JSON_FALLBACKS = [
    ("null-payload", [{"screenView": None, "buttonTap": {}}]),
    ("null-payload-alone", [{"idempotencyKey": "a", "screenView": None}]),
    ("camel-key-null-original-set", [{"idempotencyKey": None, "idempotency_key": "x"}]),
    ("camel-key-empty-original-set", [{"idempotencyKey": "", "idempotency_key": "x"}]),
    ("array-member", [{"tags": [1, 2], "appStart": {}, "idempotencyKey": "k"}]),
    ("mixed-spellings", [{"idempotency_key": "a", "add_to_cart": {}}, {"idempotencyKey": "b"}]),
]


@pytest.mark.parametrize(
    "events", [case[1] for case in JSON_FALLBACKS], ids=[case[0] for case in JSON_FALLBACKS]
)
def test_json_edge_cases_match_the_exact_decoder(events: list[dict[str, object]]) -> None:
    body = json.dumps({"events": events}).encode()
    _same(summarize_batch_request(body, None), EventSummary.of(decode_batch_request(body, None)))


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [case[1:] for case in BATCH_ERRORS],
    ids=[case[0] for case in BATCH_ERRORS],
)
def test_summary_errors_are_the_exact_decoders(
    body: bytes, content_type: str | None, reason: DecodeReason
) -> None:
    with pytest.raises(DecodeError) as caught:
        summarize_batch_request(body, content_type)
    assert caught.value.reason is reason


def _member(field_number: int, payload: bytes) -> bytes:
    """One length-delimited field on the wire (tag and length fit one byte here)."""
    assert field_number < 16
    assert len(payload) < 128
    return bytes([field_number << 3 | 2, len(payload)]) + payload


def test_binary_envelope_with_two_members_takes_the_exact_path() -> None:
    first = samples.envelope("user_login", idempotency_key="k").SerializeToString()
    second = _member(11, events_pb2.UserLogout(user_id="u").SerializeToString())  # user_logout
    envelope = first + second  # two oneof members on the wire: protobuf keeps the last
    body = bytes([1 << 3 | 2]) + _varint(len(envelope)) + envelope
    assert _binary_summary(body) is None  # more members than envelopes
    summary = summarize_batch_request(body, "application/x-protobuf")
    assert dict(summary.types) == {"user_logout": 1}
    assert summary.keys == ["k"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_binary_explicit_empty_key_counts_as_missing() -> None:
    envelope = samples.envelope("app_start", idempotency_key="").SerializeToString()
    envelope += _member(7, b"")  # an explicit empty idempotency_key, which proto3 omits
    body = bytes([1 << 3 | 2]) + _varint(len(envelope)) + envelope
    body += service_pb2.IngestEventBatchRequest(
        events=[samples.envelope("app_start", idempotency_key="z")]
    ).SerializeToString()
    summary = summarize_batch_request(body, "application/x-protobuf")
    _same(summary, EventSummary.of(decode_batch_request(body, "application/x-protobuf")))
    assert summary.keys == ["z"]
    assert summary.missing_keys == 1


@pytest.mark.parametrize("encoding", CONTENT_TYPES)
def test_types_of_picks_the_duplicates_types(encoding: str) -> None:
    events = [
        samples.envelope("screen_view", idempotency_key="a"),
        samples.envelope(None, idempotency_key=""),
        samples.envelope("button_tap", idempotency_key="b"),
        samples.envelope(None, idempotency_key="c"),
    ]
    summary = summarize_batch_request(samples.batch_body(events, encoding), CONTENT_TYPES[encoding])
    assert summary.keys == ["a", "b", "c"]
    assert summary.types_of([2, 0]) == [NO_TYPE, "screen_view"]
    assert summary.types_of([1]) == ["button_tap"]


@pytest.mark.parametrize("encoding", CONTENT_TYPES)
def test_types_of_when_every_event_has_a_key(encoding: str) -> None:
    kinds = ["text_input", None, "custom_event"]
    events = [samples.envelope(k, idempotency_key=f"k{i}") for i, k in enumerate(kinds)]
    summary = summarize_batch_request(samples.batch_body(events, encoding), CONTENT_TYPES[encoding])
    assert summary.types_of([2, 1, 0]) == ["custom_event", NO_TYPE, "text_input"]


def test_ingest_summary() -> None:
    body = samples.ingest_body(samples.envelope("app_crash", idempotency_key=""))
    summary = summarize_ingest_request(body, None)
    assert (summary.count, dict(summary.types), summary.keys) == (1, {"app_crash": 1}, [])
    assert summary.missing_keys == 1


@pytest.mark.parametrize(
    ("count", "members", "expected"),
    [
        (3, [("a", 1), ("b", 2)], {"a": 1, "b": 2}),
        (5, [("a", 1), ("b", 0), ("a", 2)], {"a": 3, NO_TYPE: 2}),
        (2, [], {NO_TYPE: 2}),
        (1, [("b", 0)], {NO_TYPE: 1}),
    ],
    ids=["all-typed", "merged-spellings-and-none", "no-members", "zero-counts-dropped"],
)
def test_types(count: int, members: list[tuple[str, int]], expected: dict[str, int]) -> None:
    assert _types(count, members) == expected


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
