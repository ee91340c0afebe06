"""OTLP/HTTP bodies: size-bounded streaming decompression, decoding, encoding answers.

Errors, the one boundary where protobuf's and zlib's exceptions are translated::

    IngestBodyError          any body the receiver must refuse
    ├── UndecodableBody      400: not a valid ExportMetricsServiceRequest, bad compression
    └── BodyTooLarge         413: over the limit after decompression
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from sidecar.ingest.jsonview import parse_json_request
from sidecar.ingest.shadow import ShadowExportRequest

__all__ = [
    "BodyTooLarge",
    "BoundedDecompressor",
    "Encoding",
    "IngestBodyError",
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


class IngestBodyError(Exception):
    """A request body the receiver refuses."""


class UndecodableBody(IngestBodyError):
    """Not a valid (compressed) OTLP metrics request."""


class BodyTooLarge(IngestBodyError):
    """Larger than ``ingest.max_body_bytes`` once decompressed."""


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


class BoundedDecompressor:
    """Feed compressed chunks, get the body; never holds more than ``limit`` output bytes.

    ``content_encoding`` is ``identity``/empty, ``gzip`` (several members allowed) or
    ``deflate`` (zlib-wrapped as RFC 9110 says, raw deflate accepted too).
    """

    def __init__(self, content_encoding: str, limit: int) -> None:
        encoding = content_encoding.strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise UndecodableBody(f"unsupported Content-Encoding {content_encoding!r}")
        self._encoding = encoding
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._zlib: zlib._Decompress | None = self._new_decompressor()
        self._raw_deflate_tried = False
        self._in_member = False  # compressed bytes fed to a stream that has not ended

    def _new_decompressor(self) -> zlib._Decompress | None:
        if self._encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._encoding == "deflate":
            return zlib.decompressobj(zlib.MAX_WBITS)
        return None

    def feed(self, chunk: bytes) -> None:
        """Add a chunk of the (compressed) body.

        Raises:
            BodyTooLarge: the decompressed body went over the limit.
            UndecodableBody: the compressed stream is corrupt.
        """
        if self._zlib is None:
            self._append(chunk)
            return
        try:
            self._inflate(chunk)
        except zlib.error as exc:
            if self._encoding == "deflate" and not self._raw_deflate_tried and not self._size:
                self._raw_deflate_tried = True
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                self.feed(chunk)
                return
            raise UndecodableBody(f"corrupt {self._encoding} stream: {exc}") from exc

    def _inflate(self, data: bytes) -> None:
        while data and self._zlib is not None:
            self._in_member = True
            # max_length bounds every allocation: a bomb stops one byte past the limit.
            out = self._zlib.decompress(data, self._limit - self._size + 1)
            self._append(out)
            data = self._zlib.unconsumed_tail
            if self._zlib.eof:
                self._in_member = False
                rest = self._zlib.unused_data
                self._zlib = self._new_decompressor()
                data = rest or data

    def _append(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise BodyTooLarge(f"body is over {self._limit} bytes after decompression")
        if data:
            self._parts.append(data)

    def finish(self) -> bytes:
        """The whole decompressed body.

        Raises:
            UndecodableBody: the compressed stream ended early.
        """
        if self._zlib is not None and self._in_member:
            raise UndecodableBody(f"truncated {self._encoding} stream")
        return b"".join(self._parts)


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
