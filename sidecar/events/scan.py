"""The inspector's hot path in C (`_scan.c`), bound to the event contract.

`new_batch_scanner` builds a `BatchScanner` from the generated descriptors (field
numbers and JSON names come from ``proto/``, nothing is restated in C); `KeyMemory` is
the idempotency-key memory (window from first sighting, oldest forgotten first, bound
applied after each batch). `KINDS` maps the scanner's type indices to ``type`` labels.
`rejected_count` reads a batch response's count in C, or declines (None) for the exact
`codec.decode_batch_response`.
"""

from __future__ import annotations

from sidecar.events._scan import BatchScanner, KeyMemory, response_count
from sidecar.events.codec import KEY_FIELD, MAX_BATCH_EVENTS, NO_TYPE, PAYLOAD, PAYLOAD_TYPES
from sidecar.gen.causality.v1 import service_pb2

__all__ = ["KINDS", "BatchScanner", "KeyMemory", "new_batch_scanner", "rejected_count"]

# Type index -> ``type`` label: the payload members in field-number order, then no payload.
KINDS: tuple[str, ...] = (*PAYLOAD_TYPES, NO_TYPE)


def new_batch_scanner(size_bounds: tuple[float, ...] | None = None) -> BatchScanner:
    """A scanner for ``IngestEventBatchRequest`` bodies, with its counters at zero; with
    `size_bounds`, it also buckets the batch sizes it reads (`BatchScanner.take_sizes`)."""
    events = service_pb2.IngestEventBatchRequest.DESCRIPTOR.fields_by_name["events"]
    return BatchScanner(
        (events.number, events.json_name),
        KEY_FIELD.number,
        (KEY_FIELD.json_name, KEY_FIELD.name),
        tuple((field.number, field.json_name, field.name) for field in PAYLOAD.fields),
        MAX_BATCH_EVENTS,
        size_bounds=size_bounds,
    )


_REJECTED = service_pb2.IngestEventBatchResponse.DESCRIPTOR.fields_by_name["rejected_count"]
_REJECTED_NAMES = (_REJECTED.json_name.encode(), _REJECTED.name.encode())


def rejected_count(body: bytes, binary: bool) -> int | None:
    """``rejected_count`` of a plain (not gzip) batch response: a non-negative int32 (0
    when absent), or None for anything the exact reader must judge (a string or negative
    count, both spellings, a duplicate, a malformed body)."""
    return response_count(body, binary, _REJECTED.number, *_REJECTED_NAMES)
