"""Decoding of the gateway's event routes: request bodies to (type, key) pairs, responses
to their rejected count.

`decode_batch_request` is the exact reference (the C scanner of `sidecar.events.scan`
hands anything off its plain path back here): protobuf JSON mapping by default, binary
protobuf for ``application/x-protobuf`` and ``application/octet-stream``, a gzip body
inflated first, and only the parts the metrics need read and checked. A body that cannot
be read raises `DecodeError` with one of the `DecodeReason` values. How and why a body is
read so, with the costs: docs/events.md.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, TypeVar

import msgspec
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from sidecar.gen.causality.v1 import events_pb2, service_pb2

__all__ = [
    "BINARY_CONTENT_TYPES",
    "KEY_FIELD",
    "MAX_BATCH_EVENTS",
    "NO_TYPE",
    "PAYLOAD",
    "PAYLOAD_TYPES",
    "DecodeError",
    "DecodeReason",
    "Encoding",
    "EventKey",
    "EventSummary",
    "decode_batch_request",
    "decode_batch_response",
    "decode_ingest_request",
    "encoding_of",
    "gunzip",
    "summarize_ingest_request",
]

MAX_BATCH_EVENTS = 1000  # the gateway takes 1 to 1000 events per batch
DEFAULT_MAX_BYTES = 5 * 2**20  # events.max_body_bytes' default
GZIP_MAGIC = b"\x1f\x8b"
NO_TYPE = "none"  # the type label of an envelope whose payload is empty
BINARY_CONTENT_TYPES = frozenset({"application/x-protobuf", "application/octet-stream"})
JSON_CONTENT_TYPES = frozenset({"application/json", "text/json"})

PAYLOAD = events_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["payload"]
# Payload oneof field names, in field-number order: the `type` label values.
PAYLOAD_TYPES: tuple[str, ...] = tuple(field.name for field in PAYLOAD.fields)
# JSON member name (lowerCamelCase or original) -> payload field name.
_JSON_PAYLOAD_KEYS: Mapping[str, str] = {
    **{field.json_name: field.name for field in PAYLOAD.fields},
    **{field.name: field.name for field in PAYLOAD.fields},
}

EventKey = tuple[str, str]  # (type label, idempotency key or "")
_M = TypeVar("_M", bound=Message)
_S = TypeVar("_S")
_JsonEnvelope = dict[str, msgspec.Raw]  # members of one envelope object, values unparsed


class _JsonBatch(msgspec.Struct):
    events: list[_JsonEnvelope] | None = None


class _JsonIngest(msgspec.Struct):
    event: _JsonEnvelope | None = None


_BATCH_DECODER = msgspec.json.Decoder(_JsonBatch)
_INGEST_DECODER = msgspec.json.Decoder(_JsonIngest)
_KEY_DECODER = msgspec.json.Decoder(str | None)
_OBJECT_START = ord("{")
_NULL = msgspec.Raw(b"null")


class DecodeReason(StrEnum):
    """Why a body was not decoded: the ``reason`` label values."""

    INVALID_JSON = "invalid_json"
    INVALID_PROTOBUF = "invalid_protobuf"
    SCHEMA = "schema"
    TOO_MANY_EVENTS = "too_many_events"
    EMPTY_BATCH = "empty_batch"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    BODY_TOO_LARGE = "body_too_large"
    INVALID_GZIP = "invalid_gzip"
    INVALID_RESPONSE = "invalid_response"
    INTERNAL = "internal"


class DecodeError(Exception):
    """A body the inspector could not read; `reason` says why."""

    def __init__(self, reason: DecodeReason, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


class Encoding(Enum):
    """The two body encodings of the gateway."""

    JSON = "json"
    PROTOBUF = "protobuf"


def gunzip(body: bytes, max_bytes: int) -> bytes:
    """Decompress a gzip body (by its magic bytes; others are returned as they are).

    Raises:
        DecodeError: ``body_too_large`` past `max_bytes`, ``invalid_gzip`` when corrupt.
    """
    if not body.startswith(GZIP_MAGIC):
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise DecodeError(DecodeReason.INVALID_GZIP, str(exc)) from exc
    if len(plain) > max_bytes:
        raise DecodeError(DecodeReason.BODY_TOO_LARGE, "after decompression")
    if not inflater.eof:
        raise DecodeError(DecodeReason.INVALID_GZIP, "truncated")
    return plain


def encoding_of(content_type: str | None) -> Encoding:
    """Pick the body encoding from a Content-Type header (absent means JSON).

    Raises:
        DecodeError: ``unsupported_content_type`` for anything else.
    """
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type in BINARY_CONTENT_TYPES:
        return Encoding.PROTOBUF
    if not media_type or media_type in JSON_CONTENT_TYPES or media_type.endswith("+json"):
        return Encoding.JSON
    raise DecodeError(DecodeReason.UNSUPPORTED_CONTENT_TYPE, media_type)


# ------------------------------------------------------------------------- requests


def decode_ingest_request(
    body: bytes, content_type: str | None, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[EventKey]:
    """Decode an ``IngestEventRequest`` into its one event's (type, idempotency key)."""
    body = gunzip(body, max_bytes)
    if encoding_of(content_type) is Encoding.PROTOBUF:
        request = _parse_binary(service_pb2.IngestEventRequest, body)
        if not request.HasField("event"):
            raise DecodeError(DecodeReason.SCHEMA, "no event")
        return _binary_keys([request.event])
    event = _parse_json(_INGEST_DECODER, body).event
    if event is None:
        raise DecodeError(DecodeReason.SCHEMA, "no event")
    return [_json_key(event)]


def decode_batch_request(
    body: bytes, content_type: str | None, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[EventKey]:
    """Decode an ``IngestEventBatchRequest`` into (type, idempotency key) per event.

    Raises:
        DecodeError: also for an empty batch or one over `MAX_BATCH_EVENTS`.
    """
    body = gunzip(body, max_bytes)
    if encoding_of(content_type) is Encoding.PROTOBUF:
        envelopes = _parse_binary(_BATCH_VIEW, body).events  # type: ignore[attr-defined]
        _check_batch_size(len(envelopes))
        return _binary_keys(envelopes)
    events = _parse_json(_BATCH_DECODER, body).events or []
    _check_batch_size(len(events))
    return [_json_key(event) for event in events]


def _check_batch_size(count: int) -> None:
    if count == 0:
        raise DecodeError(DecodeReason.EMPTY_BATCH)
    if count > MAX_BATCH_EVENTS:
        raise DecodeError(DecodeReason.TOO_MANY_EVENTS, str(count))


def _view_file(name: str) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto(
        name=f"sidecar/events/{name}.proto", package=f"sidecar.events.{name}", syntax="proto3"
    )


def _view_class(proto: descriptor_pb2.FileDescriptorProto, message: str) -> type[Message]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{proto.package}.{message}"))


def _binary_batch_view() -> type[Message]:
    """A message type reading only what the metrics need from an IngestEventBatchRequest.

    Built from the generated descriptors, so it follows the contract: field
    ``idempotency_key`` and the ``payload`` oneof members keep their names and numbers,
    the members typed ``bytes`` (a length-delimited message is a valid bytes field).
    """
    proto = _view_file("batch_view")
    view = proto.message_type.add(name="EnvelopeView")
    view.oneof_decl.add(name="payload")
    view.field.add(
        name=KEY_FIELD.name, number=KEY_FIELD.number, type=_FDP.TYPE_STRING, label=_OPTIONAL
    )
    for field in PAYLOAD.fields:
        view.field.add(
            name=field.name, number=field.number, type=_FDP.TYPE_BYTES, label=_OPTIONAL,
            oneof_index=0,
        )  # fmt: skip
    events = service_pb2.IngestEventBatchRequest.DESCRIPTOR.fields_by_name["events"]
    proto.message_type.add(name="BatchView").field.add(
        name=events.name, number=events.number, type=_FDP.TYPE_MESSAGE,
        label=_FDP.LABEL_REPEATED, type_name=f".{proto.package}.EnvelopeView",
    )  # fmt: skip
    return _view_class(proto, "BatchView")


_FDP = descriptor_pb2.FieldDescriptorProto
_OPTIONAL = _FDP.LABEL_OPTIONAL
KEY_FIELD = events_pb2.EventEnvelope.DESCRIPTOR.fields_by_name["idempotency_key"]
_BATCH_VIEW = _binary_batch_view()


def _binary_keys(events: Iterable[Any]) -> list[EventKey]:
    return [(event.WhichOneof("payload") or NO_TYPE, event.idempotency_key) for event in events]


def _json_key(event: _JsonEnvelope) -> EventKey:
    """Read one envelope's payload type and idempotency key, checking both."""
    raw_key = event.get("idempotencyKey") or event.get("idempotency_key")
    try:
        key = "" if raw_key is None else _KEY_DECODER.decode(raw_key) or ""
    except msgspec.ValidationError as exc:
        raise DecodeError(DecodeReason.SCHEMA, "idempotency key is not a string") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(DecodeReason.INVALID_JSON, "bad idempotency key") from exc
    kind = NO_TYPE
    for name, value in event.items():
        payload = _JSON_PAYLOAD_KEYS.get(name)
        if payload is None or value == _NULL:
            continue
        if kind != NO_TYPE or memoryview(value)[0] != _OBJECT_START:
            raise DecodeError(DecodeReason.SCHEMA, f"bad payload member {name!r}")
        kind = payload
    return kind, key


def _json_member(obj: dict[str, Any], json_name: str, name: str) -> Any:
    value = obj.get(json_name)
    return obj.get(name) if value is None and json_name != name else value


def _parse_json(decoder: msgspec.json.Decoder[_S], body: bytes) -> _S:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise DecodeError(DecodeReason.SCHEMA, str(exc)) from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(DecodeReason.INVALID_JSON, str(exc)) from exc


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise DecodeError(DecodeReason.INVALID_JSON, type(exc).__name__) from exc
    if not isinstance(value, dict):
        raise DecodeError(DecodeReason.SCHEMA, "body is not a JSON object")
    return value


def _parse_binary(message_type: type[_M], body: bytes) -> _M:
    try:
        return message_type.FromString(body)
    except (ProtobufDecodeError, RecursionError, ValueError) as exc:
        raise DecodeError(DecodeReason.INVALID_PROTOBUF, type(exc).__name__) from exc


# ------------------------------------------------------------------ batch summaries


@dataclass(frozen=True, slots=True)
class EventSummary:
    """What the metrics need from one request body's events.

    Attributes:
        count: envelopes in the body.
        types: envelopes per type label (`NO_TYPE` for those without a payload).
        keys: the non-empty idempotency keys, in event order.
        key_types: the type label of each of `keys`.
    """

    count: int
    types: Mapping[str, int]
    keys: list[str]
    key_types: list[str]

    @classmethod
    def of(cls, events: Sequence[EventKey]) -> EventSummary:
        """The summary of (type, key) pairs (the exact path's answer)."""
        return cls(
            len(events),
            Counter(kind for kind, _ in events),
            [key for _, key in events if key],
            [kind for kind, key in events if key],
        )

    def types_of(self, indices: Sequence[int]) -> list[str]:
        """The type labels of the keys at the given indices of `keys`."""
        return [self.key_types[index] for index in indices]

    @property
    def missing_keys(self) -> int:
        """Envelopes without an idempotency key."""
        return self.count - len(self.keys)


def summarize_ingest_request(
    body: bytes, content_type: str | None, max_bytes: int = DEFAULT_MAX_BYTES
) -> EventSummary:
    """`decode_ingest_request` as an `EventSummary`."""
    return EventSummary.of(decode_ingest_request(body, content_type, max_bytes))


# ------------------------------------------------------------------------ responses


def decode_batch_response(
    body: bytes, content_type: str | None, max_bytes: int = DEFAULT_MAX_BYTES
) -> int:
    """Read ``rejected_count`` from an ``IngestEventBatchResponse`` (either encoding).

    Raises:
        DecodeError: ``invalid_response`` for any body that is not such a response.
    """
    try:
        body = gunzip(body, max_bytes)
        if encoding_of(content_type) is Encoding.PROTOBUF:
            return _parse_binary(_RESPONSE_VIEW, body).rejected_count  # type: ignore[attr-defined, no-any-return]
        count = _json_rejected(body)
    except DecodeError as exc:
        raise DecodeError(DecodeReason.INVALID_RESPONSE, str(exc)) from exc
    return _json_int32(0 if count is None else count)


class _JsonBatchResponse(msgspec.Struct):
    """The one member of a JSON batch response the metrics read, in both spellings."""

    rejectedCount: Any = None
    rejected_count: Any = None


_RESPONSE_DECODER = msgspec.json.Decoder(_JsonBatchResponse)


def _json_rejected(body: bytes) -> object:
    """The rejected count member's value (None when absent): msgspec skips the
    ``results`` in C; a body it refuses is read by ``json.loads``, the reference (which
    also takes what msgspec does not, such as ``NaN`` elsewhere in the body)."""
    try:
        answer = _RESPONSE_DECODER.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError too
        return _json_member(_parse_json_object(body), "rejectedCount", "rejected_count")
    return answer.rejected_count if answer.rejectedCount is None else answer.rejectedCount


def _binary_response_view() -> type[Message]:
    """IngestEventBatchResponse with only ``rejected_count``: the ``results`` stay unparsed
    bytes (unknown fields)."""
    proto = _view_file("response_view")
    field = service_pb2.IngestEventBatchResponse.DESCRIPTOR.fields_by_name["rejected_count"]
    proto.message_type.add(name="ResponseView").field.add(
        name=field.name, number=field.number, type=field.type, label=_OPTIONAL
    )
    return _view_class(proto, "ResponseView")


_RESPONSE_VIEW = _binary_response_view()


def _json_int32(value: object) -> int:
    """An int32 in the JSON mapping: a number or a decimal string, never negative here."""
    if (isinstance(value, str) and value.strip().lstrip("-").isdigit()) or (
        isinstance(value, float) and value.is_integer()
    ):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise DecodeError(DecodeReason.INVALID_RESPONSE, f"bad rejected count {value!r}")
    return value
