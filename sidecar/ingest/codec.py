"""OTLP/HTTP bodies: decoding, encoding answers (decompression is `sidecar.inflate`).

Errors, the one boundary where protobuf's exceptions are translated::

    sidecar.inflate.BodyError   any body the receiver must refuse
    ├── CorruptBody          400: bad compression (sidecar.inflate)
    │   └── UndecodableBody  400: not a valid ExportMetricsServiceRequest
    └── BodyTooLarge         413: over the limit after decompression (sidecar.inflate)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from sidecar.inflate import BodyTooLarge, BoundedDecompressor, CorruptBody
from sidecar.ingest.jsonview import parse_json_request
from sidecar.ingest.shadow import ShadowExportRequest

__all__ = [
    "BodyTooLarge",
    "BoundedDecompressor",
    "CorruptBody",
    "Encoding",
    "UndecodableBody",
    "decode_request",
    "encode_message",
    "encode_response",
    "encode_status",
    "encoding_of",
]

CONTENT_TYPES: Mapping[str, Encoding]  # filled below, after the enum
GRPC_INVALID_ARGUMENT = 3
GRPC_RESOURCE_EXHAUSTED = 8
ERROR_MESSAGE_MAX = 200


class UndecodableBody(CorruptBody):
    """Not a valid (compressed) OTLP metrics request."""


class Encoding(enum.Enum):
    """The two OTLP/HTTP encodings, by their Content-Type."""

    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"

    @property
    def label(self) -> str:
        """The ``encoding`` label value of ``sidecar_otlp_requests_total``."""
        return "protobuf" if self is Encoding.PROTOBUF else "json"


CONTENT_TYPES = {e.value: e for e in Encoding}


def encoding_of(content_type: str) -> Encoding | None:
    """The encoding a Content-Type names (parameters such as charset ignored), else None."""
    return CONTENT_TYPES.get(content_type.partition(";")[0].strip().lower())


def decode_request(body: bytes, encoding: Encoding) -> ExportMetricsServiceRequest | Any:
    """Parse a request body; unknown JSON fields are ignored, as OTLP requires.

    Protobuf bodies are parsed with `ShadowExportRequest` (point attributes left as raw
    bytes for the translator's cache), JSON bodies into a lazy `JsonMessage` view (whose
    field types are checked as the translator reads them: see `JsonShapeError`).

    Raises:
        UndecodableBody: with a short reason.
    """
    try:
        if encoding is Encoding.JSON:
            return parse_json_request(body)
        request = ShadowExportRequest()
        request.ParseFromString(body)
    except (DecodeError, ValueError, RecursionError) as exc:
        reason = str(exc)[:ERROR_MESSAGE_MAX] or type(exc).__name__
        raise UndecodableBody(f"cannot decode {encoding.label} body: {reason}") from exc
    return request


def encode_message(message: Message, encoding: Encoding) -> bytes:
    """Serialize ``message`` in the request's encoding (JSON with lowerCamelCase keys)."""
    if encoding is Encoding.PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


def encode_response(rejected: int, error_message: str, encoding: Encoding) -> bytes:
    """An ``ExportMetricsServiceResponse``; ``partial_success`` only when points were rejected."""
    response = ExportMetricsServiceResponse()
    if rejected or error_message:
        response.partial_success.rejected_data_points = rejected
        response.partial_success.error_message = error_message
    return encode_message(response, encoding)


def encode_status(code: int, message: str, encoding: Encoding) -> bytes:
    """A ``google.rpc.Status`` error body, as OTLP/HTTP answers failures."""
    return encode_message(status_pb2.Status(code=code, message=message), encoding)
