"""The inspector's hot path in C (`_scan.c`), bound to the event contract.

The C extension runs when `sidecar.extensions` says so; otherwise its pure-Python
stand-ins (`pyscan`) do: a key memory with the same contract, and a scanner and response
reader that decline every body, so that the exact decoder reads them all.

`new_batch_scanner` builds a `BatchScanner` from the generated descriptors (field
numbers and JSON names come from ``proto/``, nothing is restated in C); `KeyMemory` is
the idempotency-key memory (window from first sighting, oldest forgotten first, bound
applied after each batch). `KINDS` maps the scanner's type indices to ``type`` labels.
`rejected_count` reads a batch response's count in C, or declines (None) for the exact
`codec.decode_batch_response`.
"""

from __future__ import annotations

from collections.abc import Callable

from sidecar import extensions
from sidecar.events.codec import KEY_FIELD, MAX_BATCH_EVENTS, NO_TYPE, PAYLOAD, PAYLOAD_TYPES
from sidecar.gen.causality.v1 import service_pb2

if extensions.enabled("sidecar.events._scan"):
    from sidecar.events._scan import BatchScanner, KeyMemory, response_count
else:  # the same interface (tests/events run in both modes)
    from sidecar.events.pyscan import (  # type: ignore[assignment]
        BatchScanner,
        KeyMemory,
        response_count,
    )

__all__ = ["KINDS", "BatchScanner", "KeyMemory", "new_batch_scanner", "rejected_count"]

ResponseCount = Callable[[bytes, bool, int, bytes, bytes], "int | None"]

# Type index -> ``type`` label: the payload members in field-number order, then no payload.
KINDS: tuple[str, ...] = (*PAYLOAD_TYPES, NO_TYPE)


def new_batch_scanner(
    size_bounds: tuple[float, ...] | None = None, scanner: type[BatchScanner] = BatchScanner
) -> BatchScanner:
    """A scanner for ``IngestEventBatchRequest`` bodies, with its counters at zero; with
    `size_bounds`, it also buckets the batch sizes it reads (`BatchScanner.take_sizes`).
    `scanner`: the class (the tests of the C scanner pass ``_scan.BatchScanner``)."""
    events = service_pb2.IngestEventBatchRequest.DESCRIPTOR.fields_by_name["events"]
    return scanner(
        (events.number, events.json_name),
        KEY_FIELD.number,
        (KEY_FIELD.json_name, KEY_FIELD.name),
        tuple((field.number, field.json_name, field.name) for field in PAYLOAD.fields),
        MAX_BATCH_EVENTS,
        size_bounds=size_bounds,
    )


_REJECTED = service_pb2.IngestEventBatchResponse.DESCRIPTOR.fields_by_name["rejected_count"]
_REJECTED_NAMES = (_REJECTED.json_name.encode(), _REJECTED.name.encode())


def rejected_count(body: bytes, binary: bool, reader: ResponseCount = response_count) -> int | None:
    """``rejected_count`` of a plain (not gzip) batch response: a non-negative int32 (0
    when absent), or None for anything the exact reader must judge (a string or negative
    count, both spellings, a duplicate, a malformed body). `reader`: as for
    `new_batch_scanner` (``_scan.response_count``)."""
    return reader(body, binary, _REJECTED.number, *_REJECTED_NAMES)
