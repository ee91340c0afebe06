"""The event contract: proto field numbers, generated code in sync, round trips."""

from __future__ import annotations

import filecmp
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import EnumDescriptor, FileDescriptor

from sidecar.demo import samples
from sidecar.events.codec import PAYLOAD_TYPES
from sidecar.gen.causality.v1 import events_pb2, service_pb2

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "sidecar" / "gen"

# issue 5: the payload oneof, field name -> number.
PAYLOAD_NUMBERS = {
    "user_login": 10, "user_logout": 11, "user_signup": 12, "user_profile_update": 13,
    "screen_view": 100, "screen_exit": 101,
    "button_tap": 200, "swipe_gesture": 201, "scroll_event": 202, "text_input": 203,
    "long_press": 204, "double_tap": 205,
    "product_view": 300, "add_to_cart": 301, "remove_from_cart": 302, "checkout_start": 303,
    "checkout_step": 304, "purchase_complete": 305, "purchase_failed": 306,
    "app_start": 400, "app_background": 401, "app_foreground": 402, "app_crash": 403,
    "network_change": 404, "permission_request": 405, "permission_result": 406,
    "memory_warning": 407, "battery_change": 408,
    "custom_event": 900,
}  # fmt: skip

ENVELOPE_HEADER = {
    "id": 1, "app_id": 2, "device_id": 3, "timestamp_ms": 4, "correlation_id": 5,
    "device_context": 6, "idempotency_key": 7,
}  # fmt: skip


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def test_generated_code_is_current(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        [str(ROOT / "scripts" / "gen-proto"), str(tmp_path)], check=True, env=env, timeout=60
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(GENERATED)
        for p in GENERATED.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == committed
    for relative in fresh:
        same = filecmp.cmp(tmp_path / relative, GENERATED / relative, shallow=False)
        assert same, f"{relative} differs: run scripts/gen-proto and commit the result"


def test_idempotency_key_is_field_7_with_its_comment() -> None:
    field = events_pb2.EventEnvelope.DESCRIPTOR.fields_by_name["idempotency_key"]
    assert (field.number, field.type) == (7, field.TYPE_STRING)
    source = (ROOT / "proto" / "causality" / "v1" / "events.proto").read_text()
    assert re.search(
        r"// SDK-generated idempotency key \(UUID\)\. Used for server-side deduplication\.\n"
        r"\s*string idempotency_key = 7;",
        source,
    )


def test_envelope_header_fields() -> None:
    fields = events_pb2.EventEnvelope.DESCRIPTOR.fields_by_name
    assert {name: fields[name].number for name in ENVELOPE_HEADER} == ENVELOPE_HEADER
    assert fields["timestamp_ms"].type == fields["timestamp_ms"].TYPE_INT64
    assert fields["device_context"].message_type.name == "DeviceContext"


def test_payload_oneof_has_the_29_event_types() -> None:
    oneof = events_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["payload"]
    assert {f.name: f.number for f in oneof.fields} == PAYLOAD_NUMBERS
    assert {f.name: f.message_type.name for f in oneof.fields} == {
        name: _pascal(name) for name in PAYLOAD_NUMBERS
    }
    assert len(PAYLOAD_TYPES) == 29


def _enums(file: FileDescriptor) -> list[EnumDescriptor]:
    found = list(file.enum_types_by_name.values())
    for message in file.message_types_by_name.values():
        found.extend(message.enum_types)
    return found


@pytest.mark.parametrize(
    "file", [events_pb2.DESCRIPTOR, service_pb2.DESCRIPTOR], ids=["events", "service"]
)
def test_every_enum_starts_with_unspecified_zero(file: FileDescriptor) -> None:
    enums = _enums(file)
    assert enums
    for enum in enums:
        assert enum.values[0].number == 0
        assert enum.values[0].name.endswith("_UNSPECIFIED"), enum.full_name


def test_service_methods_and_messages() -> None:
    service = service_pb2.DESCRIPTOR.services_by_name["EventService"]
    methods = {m.name: (m.input_type.name, m.output_type.name) for m in service.methods}
    assert methods == {
        "IngestEvent": ("IngestEventRequest", "IngestEventResponse"),
        "IngestEventBatch": ("IngestEventBatchRequest", "IngestEventBatchResponse"),
    }
    fields = {
        m: [f.name for f in getattr(service_pb2, m).DESCRIPTOR.fields]
        for m in ("IngestEventResponse", "IngestEventBatchResponse", "EventResult")
    }
    assert fields == {
        "IngestEventResponse": ["event_id", "status"],
        "IngestEventBatchResponse": ["accepted_count", "rejected_count", "results"],
        "EventResult": ["index", "event_id", "status", "error"],
    }
    source = (ROOT / "proto" / "causality" / "v1" / "service.proto").read_text()
    assert 'post: "/v1/events/ingest"' in source
    assert 'post: "/v1/events/batch"' in source


def _every_payload_batch() -> service_pb2.IngestEventBatchRequest:
    events = [samples.envelope(kind, seed=i + 1) for i, kind in enumerate(PAYLOAD_TYPES)]
    events.append(samples.envelope(None, seed=99))
    for event in events:
        event.id = "0190f3a0-0000-7000-8000-000000000001"
    return service_pb2.IngestEventBatchRequest(events=events)


def test_every_payload_round_trips_through_binary() -> None:
    batch = _every_payload_batch()
    decoded = service_pb2.IngestEventBatchRequest.FromString(batch.SerializeToString())
    assert decoded == batch
    assert [e.WhichOneof("payload") for e in decoded.events] == [*PAYLOAD_TYPES, None]
    assert decoded.events[PAYLOAD_TYPES.index("purchase_complete")].purchase_complete.items


@pytest.mark.parametrize("original_names", [False, True], ids=["camelCase", "original"])
def test_every_payload_round_trips_through_json(original_names: bool) -> None:
    batch = _every_payload_batch()
    text = json_format.MessageToJson(batch, preserving_proto_field_name=original_names)
    assert ('"idempotency_key"' in text) is original_names
    assert ('"idempotencyKey"' in text) is not original_names
    decoded = json_format.Parse(text, service_pb2.IngestEventBatchRequest())
    assert decoded == batch


def test_sample_fill_sets_every_payload_field() -> None:
    for kind in PAYLOAD_TYPES:
        payload = getattr(samples.envelope(kind), kind)
        unset = [f.name for f in payload.DESCRIPTOR.fields if not _is_set(payload, f.name)]
        assert not unset, f"{kind}: {unset}"


def _is_set(message: object, name: str) -> bool:
    value = getattr(message, name)
    return (
        bool(len(value))
        if hasattr(value, "__len__") and not isinstance(value, str)
        else bool(value)
    )
