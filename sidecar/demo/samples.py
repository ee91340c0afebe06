"""Sample envelopes of every payload type, for the demo, the benchmarks and the tests.

`fill` sets every field of a message (recursively, maps and repeated fields with one
entry) to a value derived from a seed, so a round trip through any encoding exercises
the whole schema.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from sidecar.events.codec import PAYLOAD_TYPES
from sidecar.gen.causality.v1 import events_pb2, service_pb2

__all__ = [
    "batch_body",
    "envelope",
    "envelopes",
    "fill",
    "ingest_body",
]

_T = FieldDescriptor
_INTEGERS = frozenset({_T.CPPTYPE_INT32, _T.CPPTYPE_INT64, _T.CPPTYPE_UINT32, _T.CPPTYPE_UINT64})


def fill(message: Message, seed: int = 1) -> Message:
    """Set every field of `message` (outside oneofs other than the first) and return it."""
    field: FieldDescriptor
    for field in message.DESCRIPTOR.fields:  # type: ignore[assignment]  # upb's own class
        oneof = field.containing_oneof
        if oneof is not None and field is not oneof.fields[0]:
            continue
        _fill_field(message, field, seed)
    return message


def _fill_field(message: Message, field: FieldDescriptor, seed: int) -> None:
    name = field.name
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field, value_field = field.message_type.fields
        getattr(message, name)[_scalar(key_field, seed)] = _scalar(value_field, seed)
    elif field.message_type is not None:
        target = getattr(message, name).add() if field.is_repeated else getattr(message, name)
        fill(target, seed + 1)
    elif field.is_repeated:
        getattr(message, name).append(_scalar(field, seed))
    else:
        setattr(message, name, _scalar(field, seed))


def _scalar(field: FieldDescriptor, seed: int) -> object:
    kind = field.cpp_type
    if kind == _T.CPPTYPE_STRING:
        return f"{field.name}-{seed}"
    if kind in _INTEGERS:
        return seed
    if kind in (_T.CPPTYPE_FLOAT, _T.CPPTYPE_DOUBLE):
        return seed + 0.5
    if kind == _T.CPPTYPE_BOOL:
        return True
    if kind == _T.CPPTYPE_ENUM and field.enum_type is not None:
        return field.enum_type.values[-1].number
    raise TypeError(f"no sample value for {field.full_name}")


def envelope(
    kind: str | None, *, idempotency_key: str | None = None, seed: int = 1
) -> events_pb2.EventEnvelope:
    """An envelope with all header fields and a filled `kind` payload (None: no payload).

    `idempotency_key` defaults to a fresh UUID; pass ``""`` for an envelope without one.
    """
    event = events_pb2.EventEnvelope(
        app_id="demo-app",
        device_id=f"device-{seed % 7}",
        timestamp_ms=1_767_225_600_000 + seed,
        correlation_id=f"corr-{seed}",
        idempotency_key=str(uuid.uuid4()) if idempotency_key is None else idempotency_key,
    )
    fill(event.device_context, seed)
    if kind is not None:
        fill(getattr(event, kind), seed)
    return event


def envelopes(count: int, *, start: int = 0) -> Iterator[events_pb2.EventEnvelope]:
    """`count` envelopes cycling through every payload type, each with its own key."""
    for index in range(start, start + count):
        yield envelope(PAYLOAD_TYPES[index % len(PAYLOAD_TYPES)], seed=index + 1)


def ingest_body(event: events_pb2.EventEnvelope, encoding: str = "json") -> bytes:
    """An ``IngestEventRequest`` body: ``json``, ``json-names`` (original names) or ``protobuf``."""
    return _encode(service_pb2.IngestEventRequest(event=event), encoding)


def batch_body(events: Sequence[events_pb2.EventEnvelope], encoding: str = "json") -> bytes:
    """An ``IngestEventBatchRequest`` body in the given encoding (see `ingest_body`)."""
    return _encode(service_pb2.IngestEventBatchRequest(events=events), encoding)


def _encode(message: Message, encoding: str) -> bytes:
    if encoding == "protobuf":
        return message.SerializeToString()
    names = encoding == "json-names"
    value = json_format.MessageToDict(message, preserving_proto_field_name=names)
    return json.dumps(value, separators=(",", ":")).encode()
