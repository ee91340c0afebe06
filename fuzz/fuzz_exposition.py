"""atheris target: fuzzed names, label keys/values, units, help and values → exposition.

The request is built from the fuzzer's bytes with the opentelemetry-proto classes, so
every input is a valid OTLP message and the fuzzer spends its time on what the
exposition must survive: quotes, backslashes, newlines, odd Unicode, NaN and infinities,
colliding sanitized names. Checked: both formats parse back with prometheus_client's
parsers, and every label value the fuzzer chose comes back exactly (escaping is right).
"""

from __future__ import annotations

import sys
from typing import Any

import atheris

with atheris.instrument_imports(include=["sidecar", "pipeline"]):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
    from pipeline import Pipeline, known_finding
    from prometheus_client.parser import text_string_to_metric_families as parse_text

    from sidecar.ingest.naming import sanitize_label

KINDS = ("sum", "gauge", "histogram", "summary")
# labels the sidecar writes itself; an attribute sanitized to one of them may be replaced
RESERVED = {"service_name", "service_namespace", "service_instance_id", "otel_scope_name",
            "otel_scope_version", "le", "quantile", "exported_le", "exported_quantile",
            "otel_metric_overflow"}  # fmt: skip


def _text(fdp: atheris.FuzzedDataProvider, limit: int = 24) -> str:
    return str(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, limit)))


def _attributes(fdp: atheris.FuzzedDataProvider) -> list[KeyValue]:
    out = []
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        out.append(KeyValue(key=_text(fdp, 12), value=AnyValue(string_value=_text(fdp))))
    return out


def _metric(fdp: atheris.FuzzedDataProvider) -> pb.Metric:
    metric = pb.Metric(name=_text(fdp, 16), unit=_text(fdp, 6), description=_text(fdp))
    kind = KINDS[fdp.ConsumeIntInRange(0, len(KINDS) - 1)]
    attributes = _attributes(fdp)
    value = fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind in ("sum", "gauge"):
        point = pb.NumberDataPoint(attributes=attributes, start_time_unix_nano=1, time_unix_nano=2)
        point.as_double = value
        if kind == "sum":
            metric.sum.data_points.append(point)
            metric.sum.is_monotonic = fdp.ConsumeBool()
            metric.sum.aggregation_temporality = fdp.ConsumeIntInRange(0, 2)  # type: ignore[assignment]
        else:
            metric.gauge.data_points.append(point)
    elif kind == "histogram":
        bounds = sorted({fdp.ConsumeRegularFloat() for _ in range(fdp.ConsumeIntInRange(0, 3))})
        counts = [fdp.ConsumeIntInRange(0, 2**40) for _ in range(len(bounds) + 1)]
        metric.histogram.aggregation_temporality = fdp.ConsumeIntInRange(0, 2)  # type: ignore[assignment]
        metric.histogram.data_points.append(
            pb.HistogramDataPoint(
                attributes=attributes, start_time_unix_nano=1, time_unix_nano=2,
                explicit_bounds=bounds, bucket_counts=counts, count=sum(counts), sum=value,
            )
        )  # fmt: skip
    else:
        q = pb.SummaryDataPoint.ValueAtQuantile(quantile=fdp.ConsumeProbability(), value=value)
        metric.summary.data_points.append(
            pb.SummaryDataPoint(
                attributes=attributes, start_time_unix_nano=1, time_unix_nano=2,
                count=fdp.ConsumeIntInRange(0, 2**40), sum=value, quantile_values=[q],
            )
        )  # fmt: skip
    return metric


def build_request(data: bytes) -> tuple[ExportMetricsServiceRequest, set[str]]:
    """The request the bytes describe and the label values it carries."""
    fdp = atheris.FuzzedDataProvider(data)
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(_attributes(fdp))
    rm.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value=_text(fdp)))
    )
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = _text(fdp, 8), _text(fdp, 8)
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        sm.metrics.append(_metric(fdp))
    values = {kv.value.string_value for m in sm.metrics for p in _points(m) for kv in p.attributes}
    return request, values


def test_one_input(data: bytes) -> None:
    """Render, parse back, and find every (non-empty) label value intact."""
    request, values = build_request(data)
    pipeline = Pipeline()
    outcome = pipeline.push(request)
    text, _ = pipeline.render_and_parse()
    try:
        seen = {v for f in parse_text(text) for s in f.samples for v in s.labels.values()}
    except ValueError as exc:  # already reported by render_and_parse
        if known_finding(exc) is None:
            raise
        return
    points = sum(len(_points(m)) for m in _metrics(request))
    if outcome.accepted == points and not _shadowed(request):
        lost = {v for v in values if v} - seen
        assert not lost, (lost, text)


def _metrics(request: ExportMetricsServiceRequest) -> list[pb.Metric]:
    return list(request.resource_metrics[0].scope_metrics[0].metrics)


def _points(m: pb.Metric) -> list[Any]:
    return [*m.sum.data_points, *m.gauge.data_points, *m.histogram.data_points,
            *m.summary.data_points]  # fmt: skip


def _shadowed(request: ExportMetricsServiceRequest) -> bool:
    """True when a label could legitimately lose to another of the same sanitized name."""
    for m in _metrics(request):
        for p in _points(m):
            names = [sanitize_label(kv.key) for kv in p.attributes]
            dropped = "" in names  # a key that sanitizes to nothing is left out
            if len(names) != len(set(names)) or RESERVED & set(names) or dropped:
                return True
    return False


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
