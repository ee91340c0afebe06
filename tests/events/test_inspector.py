"""EventInspector through a real MeterProvider and the OpenTelemetry Prometheus exporter."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sidecar.config import EventsConfig
from sidecar.demo import samples
from sidecar.events.codec import PAYLOAD_TYPES
from sidecar.gen.causality.v1 import service_pb2
from tests.support.event_metrics import event_family_names, value
from tests.support.event_metrics import samples as samples_of
from tests.support.events import BATCH, JSON, PROTOBUF, Harness, make_harness
from tests.support.prometheus import check_metrics

INGEST = "/v1/events/ingest"


@pytest.fixture
def harness() -> Iterator[Harness]:
    yield from make_harness()


EXPECTED_FAMILIES = {
    "causality_events_total",
    "causality_event_batch_size_bucket",
    "causality_event_batch_size_count",
    "causality_event_batch_size_sum",
    "causality_events_duplicate_total",
    "causality_events_missing_idempotency_key_total",
    "causality_events_rejected_total",
    "causality_event_decode_errors_total",
}


def _exercise_everything(h: Harness) -> None:
    h.batch(
        [
            samples.envelope("screen_view", idempotency_key="dup"),
            samples.envelope(None, idempotency_key=""),
        ]
    )
    h.batch([samples.envelope("screen_view", idempotency_key="dup")])
    h.inspector.inspect_request(BATCH, JSON, b"{")
    response = service_pb2.IngestEventBatchResponse(rejected_count=1).SerializeToString()
    h.inspector.inspect_response(BATCH, 200, PROTOBUF, response)


def test_exposed_names_are_exactly_the_catalogue(harness: Harness) -> None:
    _exercise_everything(harness)
    text = harness.text()
    assert event_family_names(text) == EXPECTED_FAMILIES
    assert "# TYPE causality_events_total counter" in text
    assert "# TYPE causality_event_batch_size histogram" in text
    assert value(text, "causality_events_total", {"type": "screen_view"}) == 2
    assert value(text, "causality_events_total", {"type": "none"}) == 1


def test_exposition_passes_promtool(harness: Harness) -> None:
    _exercise_everything(harness)
    result = check_metrics(harness.text())
    assert result.passes, result


def test_batch_size_buckets(harness: Harness) -> None:
    harness.batch(list(samples.envelopes(100)))
    harness.batch(list(samples.envelopes(3)))
    h = harness
    assert h.value("causality_event_batch_size_count") == 2
    assert h.value("causality_event_batch_size_sum") == 103
    buckets = {
        dict(labels)["le"]: count
        for (name, labels), count in samples_of(h.text()).items()
        if name == "causality_event_batch_size_bucket"
    }
    assert buckets == {
        "1": 0, "2": 0, "5": 1, "10": 1, "25": 1, "50": 1,
        "100": 2, "250": 2, "500": 2, "1000": 2, "+Inf": 2,
    }  # fmt: skip


@pytest.mark.parametrize("encoding", ["json", "json-names", "protobuf"])
def test_every_type_counted(harness: Harness, encoding: str) -> None:
    harness.batch(list(samples.envelopes(2 * len(PAYLOAD_TYPES))), encoding)
    for kind in PAYLOAD_TYPES:
        assert harness.value("causality_events_total", type=kind) == 2, kind
    assert harness.value("causality_events_duplicate_total", type="screen_view") == 0
    assert harness.value("causality_events_missing_idempotency_key_total") == 0


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_single_ingest_counts_one_event_and_no_batch_size(harness: Harness, encoding: str) -> None:
    event = samples.envelope("app_start", idempotency_key="")
    content_type = PROTOBUF if encoding == "protobuf" else None
    harness.inspector.inspect_request(INGEST, content_type, samples.ingest_body(event, encoding))
    assert harness.value("causality_events_total", type="app_start") == 1
    assert harness.value("causality_events_missing_idempotency_key_total") == 1
    assert harness.value("causality_event_batch_size_count") == 0


@pytest.mark.parametrize(
    ("advance", "duplicates"),
    [(0.0, 1), (599.0, 1), (600.0, 0), (3600.0, 0)],
    ids=["same-time", "inside-window", "window-ended", "long-after"],
)
def test_duplicates_within_and_outside_the_window(
    harness: Harness, advance: float, duplicates: int
) -> None:
    harness.batch([samples.envelope("button_tap", idempotency_key="key-1")])
    harness.clock.now += advance
    harness.batch([samples.envelope("button_tap", idempotency_key="key-1")])
    assert harness.value("causality_events_duplicate_total", type="button_tap") == duplicates
    assert harness.value("causality_events_total", type="button_tap") == 2


def test_duplicates_inside_one_batch_and_across_routes(harness: Harness) -> None:
    harness.batch(
        [samples.envelope("long_press", idempotency_key="k") for _ in range(3)], "protobuf"
    )
    event = samples.envelope("long_press", idempotency_key="k")
    harness.inspector.inspect_request(INGEST, None, samples.ingest_body(event))
    assert harness.value("causality_events_duplicate_total", type="long_press") == 3


def test_batched_batch_sizes_equal_direct_recording() -> None:
    """The batch-size histogram fed in bulk at collection shows exactly what recording
    every batch through the SDK shows, across several collections."""
    texts: dict[bool, list[str]] = {}
    for batched in (True, False):
        for h in make_harness(batched=batched):
            assert h.inspector.batch_sizes_batched is batched
            texts[batched] = []
            for size in (1, 3, 100, 7, 1000, 2):
                h.batch([samples.envelope("app_start", idempotency_key="") for _ in range(size)])
                # and a body off the scanner's plain path (a null payload member): the exact
                # decoder reads it and its size is recorded from Python
                h.inspector.inspect_request(BATCH, JSON, b'{"events":[{"appStart":null}]}')
                if size in (100, 2):
                    texts[batched].append(
                        "\n".join(line for line in h.text().splitlines() if "batch_size" in line)
                    )
    assert texts[True] == texts[False]
    assert value(texts[True][-1], "causality_event_batch_size_count", {}) == 12
    assert value(texts[True][-1], "causality_event_batch_size_sum", {}) == 1119
    assert value(texts[True][0], "causality_event_batch_size_count", {}) == 6


def test_key_memory_bound_forgets_oldest_first() -> None:
    for h in make_harness(EventsConfig(enabled=True, dedup_max_keys=3)):
        h.batch(
            [samples.envelope("screen_exit", idempotency_key=k) for k in "abcd"]
        )  # "a" forgotten
        h.batch([samples.envelope("screen_exit", idempotency_key=k) for k in "da"])
        # "d" is a duplicate; "a" was forgotten, so it counts as new (and evicts "b").
        assert h.value("causality_events_duplicate_total", type="screen_exit") == 1
        h.batch([samples.envelope("screen_exit", idempotency_key="b")])
        assert h.value("causality_events_duplicate_total", type="screen_exit") == 1
        h.batch([samples.envelope("screen_exit", idempotency_key="c")])
        assert (
            h.value("causality_events_duplicate_total", type="screen_exit") == 1
        )  # "c" evicted by "b"


def test_missing_keys_are_counted_and_not_deduplicated(harness: Harness) -> None:
    harness.batch([samples.envelope("double_tap", idempotency_key="") for _ in range(4)])
    body = json.dumps({"events": [{"idempotencyKey": None}, {"idempotency_key": ""}]}).encode()
    harness.inspector.inspect_request(BATCH, None, body)
    assert harness.value("causality_events_missing_idempotency_key_total") == 6
    assert harness.value("causality_events_duplicate_total", type="double_tap") == 0
    assert harness.value("causality_events_total", type="none") == 2


DECODE_ERRORS = [
    ("invalid_json", BATCH, JSON, b"not json"),
    ("invalid_protobuf", BATCH, PROTOBUF, b"\xff\xff"),
    ("schema", BATCH, None, b'{"events": "x"}'),
    ("schema", INGEST, None, b"{}"),
    ("too_many_events", BATCH, None, json.dumps({"events": [{}] * 1001}).encode()),
    ("empty_batch", BATCH, None, b'{"events": []}'),
    ("unsupported_content_type", BATCH, "text/plain", b"hello"),
]


@pytest.mark.parametrize(
    ("reason", "path", "content_type", "body"),
    DECODE_ERRORS,
    ids=[f"{c[0]}-{c[1].rsplit('/', 1)[1]}" for c in DECODE_ERRORS],
)
def test_decode_errors_by_reason(
    harness: Harness, reason: str, path: str, content_type: str | None, body: bytes
) -> None:
    harness.inspector.inspect_request(path, content_type, body)
    text = harness.text()
    assert value(text, "causality_event_decode_errors_total", {"reason": reason}) == 1
    assert "causality_events_total" not in event_family_names(text)
    assert value(text, "causality_event_batch_size_count") == 0


def test_skipped_and_oversized_bodies_count_as_body_too_large() -> None:
    for h in make_harness(EventsConfig(enabled=True, max_body_bytes=100)):
        h.inspector.request_skipped(BATCH)
        h.batch(list(samples.envelopes(5)))  # over 100 bytes: not decoded
        assert h.value("causality_event_decode_errors_total", reason="body_too_large") == 2
        assert h.value("causality_events_total", type="user_login") == 0


@pytest.mark.parametrize(
    ("status", "content_type", "body", "rejected", "errors"),
    [
        (200, JSON, b'{"acceptedCount": 8, "rejectedCount": 2}', 2, 0),
        (200, None, b'{"rejected_count": "3"}', 3, 0),
        (
            207,
            PROTOBUF,
            service_pb2.IngestEventBatchResponse(rejected_count=4).SerializeToString(),
            4,
            0,
        ),
        (200, JSON, b'{"acceptedCount": 10}', 0, 0),
        (400, JSON, b'{"error": "bad batch"}', 0, 0),
        (503, "text/html", b"<html>", 0, 0),
        (200, "text/html", b"<html>", 0, 1),
        (200, JSON, b"{", 0, 1),
    ],
    ids=[
        "json",
        "original-string",
        "protobuf-207",
        "none-rejected",
        "4xx-ignored",
        "5xx-ignored",
        "html-200",
        "bad-json-200",
    ],
)
def test_batch_response_counting(
    harness: Harness, status: int, content_type: str | None, body: bytes, rejected: int, errors: int
) -> None:
    assert harness.inspector.wants_response(BATCH)
    harness.inspector.inspect_response(BATCH, status, content_type, body)
    assert harness.value("causality_events_rejected_total") == rejected
    assert harness.value("causality_event_decode_errors_total", reason="invalid_response") == errors


def test_ingest_responses_are_not_inspected(harness: Harness) -> None:
    assert not harness.inspector.wants_response(INGEST)
    harness.inspector.inspect_response(INGEST, 200, JSON, b'{"rejectedCount": 5}')
    assert harness.value("causality_events_rejected_total") == 0


@pytest.mark.parametrize(
    ("method", "path", "wanted"),
    [
        ("POST", BATCH, True),
        ("POST", INGEST, True),
        ("GET", BATCH, False),
        ("PUT", INGEST, False),
        ("POST", "/v1/events/batch/", False),
        ("POST", "/v1/metrics", False),
    ],
    ids=["post-batch", "post-ingest", "get", "put", "trailing-slash", "other-path"],
)
def test_wants_request(harness: Harness, method: str, path: str, wanted: bool) -> None:
    assert harness.inspector.wants_request(method, path) is wanted


def test_configured_paths() -> None:
    config = EventsConfig(enabled=True, ingest_path="/in", batch_path="/many")
    for h in make_harness(config):
        assert h.inspector.wants_request("POST", "/many")
        assert not h.inspector.wants_request("POST", BATCH)
        h.inspector.inspect_request(
            "/many", None, samples.batch_body([samples.envelope("app_crash")])
        )
        assert h.value("causality_event_batch_size_count") == 1


def test_inspection_never_raises_on_internal_errors(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr("sidecar.events.inspector.decode_batch_request", broken)
    monkeypatch.setattr("sidecar.events.inspector.decode_batch_response", broken)
    monkeypatch.setattr("sidecar.events.inspector.rejected_count", broken)
    harness.inspector.inspect_request(BATCH, None, b"{}")
    harness.inspector.inspect_response(BATCH, 200, None, b"{}")
    assert harness.value("causality_event_decode_errors_total", reason="internal") == 2


def test_many_content_type_spellings_are_each_read_right(harness: Harness) -> None:
    """The inspector remembers a few Content-Type values' encodings; past that bound the
    memory starts over, and every spelling is still read by what it says."""
    json_body = samples.batch_body([samples.envelope("app_start", idempotency_key="")], "json")
    binary_body = samples.batch_body(
        [samples.envelope("app_start", idempotency_key="")], "protobuf"
    )
    for index in range(40):
        harness.inspector.inspect_request(
            BATCH, f"application/json; charset=utf-8; v={index}", json_body
        )
        harness.inspector.inspect_request(BATCH, f"application/x-protobuf; v={index}", binary_body)
        harness.inspector.inspect_request(BATCH, f"text/plain; v={index}", json_body)
    assert harness.value("causality_events_total", type="app_start") == 80
    assert (
        harness.value("causality_event_decode_errors_total", reason="unsupported_content_type")
        == 40
    )
    assert harness.inspector.content_types_remembered <= 16
