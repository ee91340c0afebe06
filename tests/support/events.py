"""Shared data of the event decoding and scanning tests: batches the decoder must refuse,
and the idempotency-key memory's contract written plainly."""

from __future__ import annotations

import gzip
import json
from collections import OrderedDict

from sidecar.events.codec import DEFAULT_MAX_BYTES, MAX_BATCH_EVENTS, DecodeReason
from sidecar.gen.causality.v1 import events_pb2, service_pb2

R = DecodeReason


def json_batch(count: int) -> bytes:
    """A JSON batch of `count` empty events, each with its own idempotency key."""
    return json.dumps({"events": [{"idempotencyKey": str(i)} for i in range(count)]}).encode()


def binary_batch(count: int) -> bytes:
    """A binary batch of `count` empty events."""
    return service_pb2.IngestEventBatchRequest(
        events=[events_pb2.EventEnvelope() for _ in range(count)]
    ).SerializeToString()


# (id, body, content type, the reason it is refused with)
BATCH_ERRORS = [
    ("not-json", b"{nope", "application/json", R.INVALID_JSON),
    ("not-utf8", b'{"events": [{"idempotencyKey": "\xff"}]}', None, R.INVALID_JSON),
    ("bad-nested-json", b'{"events": [{"screenView": {"a": }}]}', None, R.INVALID_JSON),
    ("trailing-garbage", b'{"events": [{}]} x', None, R.INVALID_JSON),
    (
        "too-deep",
        b'{"events": [{"customEvent": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
        None,
        R.INVALID_JSON,
    ),
    ("truncated-gzip", gzip.compress(b'{"events": [{}]}')[:-9], None, R.INVALID_GZIP),
    ("corrupt-gzip", b"\x1f\x8b\x08\x00garbage", None, R.INVALID_GZIP),
    ("gzip-bomb", gzip.compress(b" " * (DEFAULT_MAX_BYTES + 1)), None, R.BODY_TOO_LARGE),
    ("not-protobuf", b"\xff\xff\xff\xff", "application/x-protobuf", R.INVALID_PROTOBUF),
    (
        "truncated-protobuf",
        binary_batch(2)[:-1] + b"\x0a\x05ab",
        "application/octet-stream",
        R.INVALID_PROTOBUF,
    ),
    ("array-body", b"[]", None, R.SCHEMA),
    ("events-not-array", b'{"events": {}}', None, R.SCHEMA),
    ("event-not-object", b'{"events": [1]}', None, R.SCHEMA),
    ("key-not-string", b'{"events": [{"idempotencyKey": 5}]}', None, R.SCHEMA),
    ("two-payloads", b'{"events": [{"screenView": {}, "buttonTap": {}}]}', None, R.SCHEMA),
    ("payload-not-object", b'{"events": [{"screenView": "x"}]}', None, R.SCHEMA),
    ("empty-json", b"{}", None, R.EMPTY_BATCH),
    ("empty-array", b'{"events": []}', None, R.EMPTY_BATCH),
    ("empty-protobuf", b"", "application/x-protobuf", R.EMPTY_BATCH),
    ("1001-json", json_batch(MAX_BATCH_EVENTS + 1), None, R.TOO_MANY_EVENTS),
    (
        "1001-protobuf",
        binary_batch(MAX_BATCH_EVENTS + 1),
        "application/x-protobuf",
        R.TOO_MANY_EVENTS,
    ),
    ("form", b"a=b", "application/x-www-form-urlencoded", R.UNSUPPORTED_CONTENT_TYPE),
]


class ReferenceMemory:
    """The memory's contract written plainly: an ordered dict in first-seen order."""

    def __init__(self, window: float, max_keys: int) -> None:
        self.window = window
        self.max_keys = max_keys
        self.keys: OrderedDict[str, float] = OrderedDict()
        self.forgotten = 0

    def find_duplicates(self, batch: list[str], now: float) -> list[int]:
        while self.keys and next(iter(self.keys.values())) <= now - self.window:
            self.keys.popitem(last=False)
        found = []
        for index, key in enumerate(batch):
            if key in self.keys:
                found.append(index)
            else:
                self.keys[key] = now
        while len(self.keys) > self.max_keys:
            self.keys.popitem(last=False)
            self.forgotten += 1
        return found
