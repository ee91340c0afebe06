"""Properties of the OTLP decoder and translator over random valid requests.

Requests are drawn from the opentelemetry-proto classes (`tests.support.strategies`):
every metric kind, every AnyValue kind, odd Unicode in names, keys and values.

- Decoding is exact: a protobuf body decodes to the message that was encoded.
- Every point is accounted for: translated, or counted in the batch's rejections.
- Both encodings give the same exposition, byte for byte.
- The exposition of whatever was stored parses with prometheus_client's text parser and
  keeps every stored string label value intact.
"""

from __future__ import annotations

from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from prometheus_client.parser import text_string_to_metric_families

from sidecar.ingest.codec import Encoding, decode_request
from sidecar.ingest.naming import sanitize_label
from sidecar.ingest.store import StoreLimits
from sidecar.ingest.translate import TranslationRules, Translator
from tests.support.otlp import Harness
from tests.support.strategies import point_count, requests

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROMOTE = ("service.name", "service.namespace", "service.instance.id")


def _decoded(request, encoding: Encoding):
    body = (
        request.SerializeToString()
        if encoding is Encoding.PROTOBUF
        else json_format.MessageToJson(request).encode()
    )
    return decode_request(body, encoding)


def _exposition(request, encoding: Encoding) -> str:
    harness = Harness(StoreLimits(max_series=10_000, max_series_per_metric=1000))
    harness.push(_decoded(request, encoding))
    return harness.text()


@SETTINGS
@given(requests())
def test_protobuf_decoding_is_exact(request) -> None:
    """The decoder may return its own (lazy) message class: compare through the real one."""
    decoded = _decoded(request, Encoding.PROTOBUF)
    assert ExportMetricsServiceRequest.FromString(decoded.SerializeToString()) == request


@SETTINGS
@given(requests())
def test_every_point_is_translated_or_counted_as_rejected(request) -> None:
    translator = Translator(TranslationRules(PROMOTE, target_info=False))
    for encoding in Encoding:
        batch = translator.translate(_decoded(request, encoding))
        translated = sum(len(m.points) for m in batch.metrics)
        rejected = sum(batch.rejected.values())
        assert translated + rejected == point_count(request), (encoding, batch.rejected)
        assert batch.points == point_count(request)


@SETTINGS
@given(requests())
def test_protobuf_and_json_give_the_same_exposition(request) -> None:
    assert _exposition(request, Encoding.PROTOBUF) == _exposition(request, Encoding.JSON)


RESERVED = {
    "service_name",
    "service_namespace",
    "service_instance_id",
    "otel_scope_name",
    "otel_scope_version",
    "le",
    "quantile",
    "exported_le",
    "exported_quantile",
    "otel_metric_overflow",
    "",
}  # fmt: skip  ("": a key that sanitizes to nothing)


def _plain_string_values(request) -> set[str]:
    """String attribute values whose sanitized key nothing else in the point can replace."""
    out: set[str] = set()
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                for point in getattr(m, kind).data_points:
                    names = [sanitize_label(kv.key) for kv in point.attributes]
                    for kv, name in zip(point.attributes, names, strict=True):
                        unique = names.count(name) == 1 and name not in RESERVED
                        if unique and kv.value.WhichOneof("value") == "string_value":
                            out.add(kv.value.string_value)
    return {v for v in out if v}


@SETTINGS
@given(requests())
def test_the_exposition_parses_and_keeps_label_values(request) -> None:
    harness = Harness(StoreLimits(max_series=10_000, max_series_per_metric=1000))
    _, outcome = harness.push(_decoded(request, Encoding.PROTOBUF))
    parsed = list(text_string_to_metric_families(harness.text()))
    seen = {v for f in parsed for s in f.samples for v in s.labels.values()}
    if outcome.accepted == point_count(request):
        assert _plain_string_values(request) <= seen
