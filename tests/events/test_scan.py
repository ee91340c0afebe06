"""The C batch scanner against the exact decoder: whatever it accepts, it reads the same.

The C code is tested here whatever ``SIDECAR_NO_EXTENSIONS`` says (its pure-Python
stand-in declines every body: the inspector's tests cover that mode).

The scanner (`sidecar/events/_scan.c`) must return None for anything off its plain path,
so that the exact decoder (`codec.decode_batch_request`) answers; when it does answer,
its counts must be the exact decoder's, with the keys observed in the same order. The
reference here is the exact decoder plus the plain key memory of test_dedup.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.demo import samples
from sidecar.events import _scan, scan
from sidecar.events._scan import BatchScanner, KeyMemory
from sidecar.events.codec import (
    MAX_BATCH_EVENTS,
    PAYLOAD_TYPES,
    DecodeError,
    EventSummary,
    decode_batch_request,
    decode_batch_response,
)
from sidecar.events.scan import KINDS
from sidecar.gen.causality.v1 import events_pb2, service_pb2
from tests.support.events import BATCH_ERRORS, ReferenceMemory

CONTENT_TYPES = {
    "json": None,
    "json-names": "application/json",
    "protobuf": "application/octet-stream",
}
BINARY = "application/octet-stream"
Totals = tuple[dict[str, int], dict[str, int], int]


def new_batch_scanner(size_bounds: tuple[float, ...] | None = None) -> BatchScanner:
    """`scan.new_batch_scanner`, in C."""
    return scan.new_batch_scanner(size_bounds, _scan.BatchScanner)


def rejected_count(body: bytes, binary: bool) -> int | None:
    """`scan.rejected_count`, in C."""
    return scan.rejected_count(body, binary, _scan.response_count)


class _Pair:
    """The scanner and the reference fed the same bodies, each with its own memory."""

    def __init__(self, window: float = 1e9, max_keys: int = 1_000_000) -> None:
        self.scanner = new_batch_scanner()
        self.memory = KeyMemory(window, max_keys)
        self.reference = ReferenceMemory(window, max_keys)
        self.expected: Totals = ({}, {}, 0)

    def feed(self, body: bytes, content_type: str | None, now: float = 0.0) -> int | None:
        """Scan `body`; when the scanner reads it, feed the reference too and compare."""
        count = self.scanner.scan(body, content_type == BINARY, self.memory, now)
        if count is not None:
            summary = EventSummary.of(decode_batch_request(body, content_type))
            assert count == summary.count
            self._add(summary, now)
            assert self.totals() == self.expected
            assert len(self.memory) == len(self.reference.keys)
        return count

    def _add(self, summary: EventSummary, now: float) -> None:
        events, duplicates, missing = self.expected
        events = Counter(events) + Counter(dict(summary.types))
        found = self.reference.find_duplicates(summary.keys, now)
        duplicates = Counter(duplicates) + Counter(summary.types_of(found))
        self.expected = (dict(events), dict(duplicates), missing + summary.missing_keys)

    def totals(self) -> Totals:
        events, duplicates, missing = self.scanner.totals()
        return (
            {kind: n for kind, n in zip(KINDS, events, strict=True) if n},
            {kind: n for kind, n in zip(KINDS, duplicates, strict=True) if n},
            missing,
        )


def _random_batch(rng: random.Random, size: int = 40) -> list[events_pb2.EventEnvelope]:
    keys = ["", "", "k-a", "k-b", "k-c", "ключ-é", "k" * 60] + [
        f"key-{rng.random()}" for _ in range(5)
    ]
    events = []
    for index in range(rng.randint(1, size)):
        kind = rng.choice([*PAYLOAD_TYPES, None])
        events.append(samples.envelope(kind, idempotency_key=rng.choice(keys), seed=index + 1))
    return events


@pytest.mark.parametrize("encoding", CONTENT_TYPES)
def test_generated_batches_are_read_as_the_exact_decoder_reads_them(encoding: str) -> None:
    rng = random.Random(f"scan-{encoding}")
    pair = _Pair(window=3.0, max_keys=25)  # expiry and the bound both at work
    for step in range(200):
        body = samples.batch_body(_random_batch(rng), encoding)
        assert pair.feed(body, CONTENT_TYPES[encoding], now=step * 0.5) is not None
    assert sum(pair.expected[1].values()) > 50  # duplicates were found, and typed


def test_the_largest_batch_is_scanned_and_one_more_is_not() -> None:
    for encoding in CONTENT_TYPES:
        events = [
            samples.envelope("app_start", idempotency_key=f"k{i}") for i in range(MAX_BATCH_EVENTS)
        ]
        pair = _Pair()
        assert (
            pair.feed(samples.batch_body(events, encoding), CONTENT_TYPES[encoding])
            == MAX_BATCH_EVENTS
        )
        events.append(samples.envelope("app_start"))
        assert pair.feed(samples.batch_body(events, encoding), CONTENT_TYPES[encoding]) is None


# JSON bodies the scanner reads itself: same answer as the exact decoder.
JSON_PLAIN = [
    (
        "whitespace-everywhere",
        b' \r\n\t{ "events" : [ { "idempotencyKey" : "a" , "screenView" : { } } ] } \n',
    ),
    ("other-members-around", b'{"v":[1,{"events":[]}],"events":[{"appStart":{}}],"x":null}'),
    ("original-names", b'{"events":[{"idempotency_key":"a","add_to_cart":{"n":1}}]}'),
    ("empty-envelope", b'{"events":[{}, {"idempotencyKey":""}]}'),
    ("non-ascii-key", '{"events":[{"idempotencyKey":"ключ ✓ 𝄞"}]}'.encode()),
    (
        "escapes-elsewhere",
        b'{"events":[{"appId":"a\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud834\\udd1e","buttonTap":{"x":"\\u0000"}}]}',
    ),
    (
        "numbers-and-literals",
        b'{"events":[{"t":[0,-0,1.5,-2e10,3E+2,4e-1,true,false,null],"customEvent":{}}]}',
    ),
    (
        "escaped-keys",
        b'{"events":[{"idempotencyKey":"a\\nb\\u00e9\\ud834\\udd1e\\/\\"\\\\"},{"idempotencyKey":"\\u0000"}]}',
    ),
    (
        "same-key-twice-in-batch",
        b'{"events":[{"idempotencyKey":"k","appStart":{}},{"idempotencyKey":"k"}]}',
    ),
    ("deep-but-allowed", b'{"events":[{"customEvent":{"a":' + b"[" * 50 + b"]" * 50 + b"}}]}"),
]


@pytest.mark.parametrize("body", [c[1] for c in JSON_PLAIN], ids=[c[0] for c in JSON_PLAIN])
def test_plain_json_is_scanned(body: bytes) -> None:
    assert _Pair().feed(body, None) is not None


# JSON bodies off the plain path: the scanner declines and records nothing; the exact
# decoder answers (or names the error).
JSON_DECLINED = [
    ("null-payload", [{"screenView": None, "buttonTap": {}}]),
    ("null-payload-alone", [{"idempotencyKey": "a", "screenView": None}]),
    ("camel-key-null-original-set", [{"idempotencyKey": None, "idempotency_key": "x"}]),
    ("camel-key-empty-original-set", [{"idempotencyKey": "", "idempotency_key": "x"}]),
    ("key-twice", '{"events":[{"idempotencyKey":"a","idempotencyKey":"b"}]}'),
    ("key-in-both-spellings", [{"idempotencyKey": "a", "idempotency_key": "b"}]),
    ("escaped-member-name", '{"events":[{"\\u0069dempotencyKey":"a"}]}'),
    ("escaped-events-name", '{"\\u0065vents":[{}]}'),
    ("events-twice", '{"events":[{}],"events":[{},{}]}'),
    ("events-null", '{"events":null}'),
    ("payload-twice", '{"events":[{"appStart":{},"appStart":{}}]}'),
    ("too-deep-for-the-scanner", '{"events":[{"customEvent":{"a":' + "[" * 70 + "]" * 70 + "}}]}"),
    ("bom", "\ufeff" + '{"events":[{}]}'),
]


@pytest.mark.parametrize("events", [c[1] for c in JSON_DECLINED], ids=[c[0] for c in JSON_DECLINED])
def test_json_off_the_plain_path_is_declined(events: object) -> None:
    body = (events if isinstance(events, str) else json.dumps({"events": events})).encode()
    pair = _Pair()
    assert pair.feed(body, None) is None
    assert pair.totals() == ({}, {}, 0)
    assert len(pair.memory) == 0


@pytest.mark.parametrize(
    ("body", "content_type"),
    [c[1:3] for c in BATCH_ERRORS if not c[1].startswith(b"\x1f\x8b") and c[0] != "form"],
    ids=[c[0] for c in BATCH_ERRORS if not c[1].startswith(b"\x1f\x8b") and c[0] != "form"],
)
def test_every_error_body_is_declined(body: bytes, content_type: str | None) -> None:
    pair = _Pair()
    assert pair.feed(body, content_type) is None
    with pytest.raises(DecodeError):
        decode_batch_request(body, content_type)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, wire: int, value: bytes) -> bytes:
    """One field on the wire; `value` already encoded for its wire type, a length-
    delimited one without its length."""
    tag = _varint(number << 3 | wire)
    return tag + (_varint(len(value)) + value if wire == 2 else value)


def _batch(*envelopes: bytes) -> bytes:
    return b"".join(_field(1, 2, envelope) for envelope in envelopes)


LOGIN = samples.envelope("user_login", idempotency_key="k").SerializeToString()
LOGOUT = _field(11, 2, events_pb2.UserLogout(user_id="u").SerializeToString())

# Binary bodies the scanner reads itself.
BINARY_PLAIN = [
    ("explicit-empty-key", _batch(_field(7, 2, b"") + _field(400, 2, b""), LOGIN)),
    (
        "unknown-fields-of-every-wire-type",
        _batch(
            LOGIN
            + _field(50, 0, b"\x96\x01")
            + _field(51, 1, b"12345678")
            + _field(52, 5, b"1234")
            + _field(53, 2, b"xy")
        )
        + _field(9, 0, b"\x01"),
    ),
    ("empty-envelope", _batch(b"")),
    ("ten-byte-varint", _batch(_field(50, 0, b"\xff" * 9 + b"\x01") + LOGIN)),
    ("non-ascii-key", _batch(_field(7, 2, "ключ".encode()))),
]


@pytest.mark.parametrize("body", [c[1] for c in BINARY_PLAIN], ids=[c[0] for c in BINARY_PLAIN])
def test_plain_binary_is_scanned(body: bytes) -> None:
    assert _Pair().feed(body, BINARY) is not None


# Binary bodies off the plain path (the exact decoder may accept them, with protobuf's
# last-one-wins rules, or reject them).
BINARY_DECLINED = [
    ("two-members", _batch(LOGIN + LOGOUT)),
    ("key-twice", _batch(LOGIN + _field(7, 2, b"other"))),
    ("member-as-varint", _batch(_field(10, 0, b"\x01"))),
    ("key-as-fixed32", _batch(_field(7, 5, b"abcd"))),
    ("events-as-varint", _field(1, 0, b"\x01") + _batch(LOGIN)),
    ("group", _batch(_varint(50 << 3 | 3) + _varint(50 << 3 | 4) + LOGIN)),
    ("field-zero", _batch(b"\x00\x01" + LOGIN)),
    ("eleven-byte-varint", _batch(_field(50, 0, b"\xff" * 10 + b"\x01"))),
    ("varint-past-64-bits", _batch(_field(50, 0, b"\xff" * 9 + b"\x02"))),
    ("invalid-utf8-key", _batch(_field(7, 2, b"\xc3\x28"))),
    ("length-past-the-end", _batch(LOGIN)[:-1]),
    ("wire-type-7", _batch(LOGIN) + b"\x0f"),
]


@pytest.mark.parametrize(
    "body", [c[1] for c in BINARY_DECLINED], ids=[c[0] for c in BINARY_DECLINED]
)
def test_binary_off_the_plain_path_is_declined(body: bytes) -> None:
    pair = _Pair()
    assert pair.feed(body, BINARY) is None
    assert pair.totals() == ({}, {}, 0)


def test_two_members_are_read_as_protobuf_reads_them() -> None:
    # declined by the scanner, so the inspector's answer is the exact decoder's: the last
    assert decode_batch_request(_batch(LOGIN + LOGOUT), BINARY) == [("user_logout", "k")]


def _mutate(body: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    data = bytearray(body)
    for kind, position, value in edits:
        if not data:
            break
        at = position % len(data)
        if kind == 0:
            data[at] = value
        elif kind == 1:
            data.insert(at, value)
        elif kind == 2:
            del data[at]
        else:
            del data[at:]
    return bytes(data)


_EDITS = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4
)
_SEEDS = st.integers(0, 2**32)


@pytest.mark.parametrize("encoding", CONTENT_TYPES)
@given(seed=_SEEDS, edits=_EDITS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_mutated_body_is_declined_or_read_exactly(
    encoding: str, seed: int, edits: list[tuple[int, int, int]]
) -> None:
    """The safety property: the scanner never accepts a body the exact decoder rejects
    or reads differently. Mutations of real bodies reach the corners a table misses."""
    body = _mutate(samples.batch_body(_random_batch(random.Random(seed), size=5), encoding), edits)
    pair = _Pair()
    try:
        pair.feed(body, CONTENT_TYPES[encoding])
    except DecodeError:  # raised by the exact decoder on a body the scanner accepted
        pytest.fail(f"scanner accepted a body the exact decoder rejects: {body!r}")


@given(body=st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_crash_and_are_never_misread(body: bytes) -> None:
    for content_type in (None, BINARY):
        pair = _Pair()
        try:
            pair.feed(body, content_type)
        except DecodeError:
            pytest.fail(f"scanner accepted a body the exact decoder rejects: {body!r}")


def test_batch_sizes_are_bucketed_as_prometheus_le_buckets() -> None:
    scanner = new_batch_scanner(size_bounds=(1.0, 5.0, 10.0))
    memory = KeyMemory(1.0, 10)
    assert scanner.take_sizes() is None
    for size in (1, 5, 6, 10, 11, 2):
        body = samples.batch_body([samples.envelope(None, idempotency_key="") for _ in range(size)])
        assert scanner.scan(body, False, memory, 0.0) == size
    assert scanner.scan(b'{"events":[]}', False, memory, 0.0) is None  # declined: not counted
    assert scanner.take_sizes() == ([1, 2, 2, 1], 35.0, 1.0, 11.0, 2.0)  # le=1, 5, 10, +Inf
    assert scanner.take_sizes() is None  # taken: starts over
    assert new_batch_scanner().take_sizes() is None  # no bounds: sizes not kept


def test_scanner_misuse_raises() -> None:
    scanner = new_batch_scanner()
    with pytest.raises(TypeError):
        scanner.scan("text", False, KeyMemory(1.0, 1), 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scanner.scan(b"{}", False, object(), 0.0)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        BatchScanner.__new__(BatchScanner).totals()
    uninitialised = KeyMemory.__new__(KeyMemory)
    with pytest.raises(RuntimeError):
        uninitialised.find_duplicates(["a"], 0.0)
    with pytest.raises(RuntimeError):
        "a" in uninitialised  # noqa: B015
    with pytest.raises(ValueError, match="out of range"):
        BatchScanner((1, "events"), 7, ("k",), (), 10)
    with pytest.raises(ValueError, match="increase"):
        new_batch_scanner(size_bounds=(5.0, 1.0))
    half = BatchScanner.__new__(BatchScanner)
    with pytest.raises(ValueError, match="increase"):
        half.__init__((1, "events"), 7, ("k",), ((10, "a", "a"),), 10, size_bounds=(2.0, 1.0))  # type: ignore[misc]
    with pytest.raises(RuntimeError, match="once"):  # no second try on a half-built scanner
        half.__init__((1, "events"), 7, ("k",), ((10, "a", "a"),), 10)  # type: ignore[misc]
    with pytest.raises(RuntimeError, match="not initialised"):
        half.scan(b"{}", False, KeyMemory(1.0, 1), 0.0)
    assert half.take_sizes() is None


# ----------------------------------------------------------- batch responses' counts

RESPONSE_PLAIN = [
    (b'{"acceptedCount":3,"rejectedCount":2,"results":[{"index":0,"error":"x"}]}', False, 2),
    (b' { "rejected_count" : 7 } ', False, 7),
    (b'{"rejectedCount":null,"rejected_count":4}', False, 4),
    (b'{"rejectedCount":0}', False, 0),
    (b'{"acceptedCount":3}', False, 0),
    (b"{}", False, 0),
    (b'{"rejectedCount":2147483647}', False, 2**31 - 1),
    (
        service_pb2.IngestEventBatchResponse(
            accepted_count=1, rejected_count=5, results=[service_pb2.EventResult(index=1)]
        ).SerializeToString(),
        True,
        5,
    ),
    (b"", True, 0),
]
RESPONSE_DECLINED = [
    (b'{"rejectedCount":"5"}', False),  # the exact reader takes decimal strings
    (b'{"rejectedCount":3.0}', False),
    (b'{"rejectedCount":-1}', False),
    (b'{"rejectedCount":1e2}', False),
    (b'{"rejectedCount":01}', False),
    (b'{"rejectedCount":2147483648}', False),
    (b'{"rejectedCount":1,"rejectedCount":2}', False),
    (b'{"rejectedCount":1,"rejected_count":2,"rejected_count":3}', False),
    (b'{"\\u0072ejectedCount":1}', False),
    (b'{"acceptedCount":NaN,"rejectedCount":2}', False),
    (b"[1]", False),
    (b'{"rejectedCount":1} x', False),
    (b"\x10\xff\xff\xff\xff\x0f", True),  # a negative int32
    (b"\x12\x01x", True),  # the count field as bytes
    (b"\x10", True),
]


@pytest.mark.parametrize(("body", "binary", "count"), RESPONSE_PLAIN)
def test_plain_responses_are_read_in_c_as_the_exact_reader_reads_them(
    body: bytes, binary: bool, count: int
) -> None:
    assert rejected_count(body, binary) == count
    assert decode_batch_response(body, BINARY if binary else None) == count


@pytest.mark.parametrize(("body", "binary"), RESPONSE_DECLINED)
def test_responses_off_the_plain_path_are_declined(body: bytes, binary: bool) -> None:
    assert rejected_count(body, binary) is None


@given(
    body=st.binary(max_size=60)
    | st.sampled_from([c[0] for c in RESPONSE_PLAIN]).flatmap(
        lambda b: st.builds(_mutate, st.just(b), _EDITS)
    )
)
@settings(max_examples=400, deadline=None)
def test_a_response_count_read_in_c_is_the_exact_readers(body: bytes) -> None:
    for binary in (False, True):
        count = rejected_count(body, binary)
        if count is not None:
            assert decode_batch_response(body, BINARY if binary else None) == count


@given(
    seed=_SEEDS,
    edits=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.sampled_from(b' \t\r\n,:{}[]"x0')),
        max_size=3,
    ),
    layout=st.sampled_from([(2, (", ", ": ")), ("\t", (" ,\n", " :\r\n")), (None, (" , ", " : "))]),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_whitespace_anywhere_json_is_declined_or_read_exactly(
    seed: int, edits: list[tuple[int, int, int]], layout: tuple[object, tuple[str, str]]
) -> None:
    """The compact-JSON shortcuts (no whitespace expected after ``,`` and ``:``) must not
    change what is accepted: pretty-printed bodies, then mutated around the separators."""
    indent, separators = layout
    body = samples.batch_body(_random_batch(random.Random(seed), size=4), "json")
    pretty = json.dumps(json.loads(body), indent=indent, separators=separators).encode()  # type: ignore[arg-type]
    pair = _Pair()
    if not edits:
        assert pair.feed(pretty, None) is not None  # whitespace alone is still the plain path
        return
    try:
        pair.feed(_mutate(pretty, edits), None)
    except DecodeError:
        pytest.fail("scanner accepted a body the exact decoder rejects")
