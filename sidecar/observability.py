"""The observability module: a Python port of the Causality services' instrument set.

`Module` owns an OpenTelemetry `MeterProvider` read by the OpenTelemetry Prometheus
exporter into a `CollectorRegistry` of its own (never prometheus_client's global one), so
two modules in one process never see each other's series. `Metrics` is the catalogue of
design §6, created once per meter; services (and the demo pipeline) record into it, and
the sidecar's proxy records its HTTP metrics through the same three HTTP instruments.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from aiohttp import web
from opentelemetry.exporter.prometheus import (
    PrometheusMetricReader,
    _convert_buckets,
    _CustomCollector,
    _get_or_create_family,
)
from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_attribute
from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricReader
from opentelemetry.sdk.metrics.export import Metric as OtelMetric
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar import __version__
from sidecar.escaping import is_legacy_label_name, is_legacy_metric_name
from sidecar.instance import stable_instance_id
from sidecar.offloop import FrozenSource
from sidecar.protobuf import NativeParts
from sidecar.sampletext import TextPoint, attach_points

__all__ = [
    "Metrics",
    "Module",
    "PrometheusReader",
    "SnapshotRegistry",
    "http_metrics",
    "own_resource",
]

METER_NAME = "causality-sidecar"
ATTRIBUTE_CACHE_MAX = 4096  # raw paths can be unbounded; the cache must not be
# a histogram series' identity (family, its label names, label values) and its values
# (bucket counts, sum, bounds): unchanged values reuse the last collection's samples
PointKey = tuple[str, tuple[str, ...], tuple[str, ...]]
PointValues = tuple[tuple[int, ...], float, tuple[float, ...]]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _NoEmptyLabels(_CustomCollector):
    """The OpenTelemetry Prometheus exporter's collector, without empty label values.

    The exporter writes ``otel_scope_schema_url=""`` on every series (and pads a family's
    points with ``""`` for the attributes other points have). Prometheus treats an empty
    value as no label, so leaving them out loses nothing. Fixed where they are made: the
    scope and ``target_info`` labels never get an empty value, and a family is filtered
    only once a collection saw a padded point (a flag that then stays set: the proxy's
    and the other own instruments keep one attribute set per instrument, so the common
    scrape pays nothing).
    """

    def __init__(self, natives: NativeParts) -> None:
        super().__init__()
        self._padded = False
        self._natives = natives
        # one collection at a time (the render's, the status page's, the sampler's and the
        # export's threads may ask at once): each takes what the SDK gave the reader
        self._collecting = threading.Lock()
        self._points: dict[PointKey, tuple[PointValues, TextPoint]] = {}  # last collection's
        self._kept: dict[PointKey, tuple[PointValues, TextPoint]] = {}  # this collection's
        self._family_points: dict[str, list[TextPoint]] = {}  # this collection's families'
        self._label_names: dict[str, str] = {}  # attribute name -> label name
        self._label_texts: dict[tuple[type, Any], str] = {}  # non-text value -> label text
        self._odd_labels = False  # a label name outside the legacy set was ever made

    def _translate_metric(self, *args: Any, **kwargs: Any) -> None:
        """The exporter's translation, except that a histogram series whose values did
        not change since the last collection reuses that collection's samples (and the
        lines written for them, `sidecar.sampletext`): ~90 % of the proxy's series with
        100 routes under load, and the bulk of a collection's CPU."""
        metric: OtelMetric | None = kwargs.get("metric")  # (the exporter passes keywords)
        if args or metric is None or not isinstance(metric.data, HistogramData):
            super()._translate_metric(*args, **kwargs)
            return
        # (scope attrs[, resource attrs]): the arguments vary by exporter version
        attrs = [kwargs[k] for k in ("scope_attrs", "resource_attrs") if k in kwargs]
        families: dict[str, Metric] = kwargs["metric_family_id_metric_family"]
        name = self._resolve_metric_name(metric.name)
        description = metric.description or ""
        unit = map_unit(metric.unit or "")
        keys, rows, values = self._collect_data_points(metric.data, *attrs)
        family_id = "|".join(("|".join((name, description, unit)), HistogramMetricFamily.__name__))
        family: HistogramMetricFamily = _get_or_create_family(
            families,
            family_id,
            HistogramMetricFamily,
            name=name,
            documentation=description,
            labels=keys,
            unit=unit,
        )
        # what `add_metric` makes of a row depends on the family's label names only (those
        # of the first instrument that made the family, as in the exporter)
        label_names: tuple[str, ...] = tuple(getattr(family, "_labelnames", keys))
        last, kept = self._points, self._kept
        # (two instruments of one name, e.g. of two scopes, fill one family)
        points = self._family_points.setdefault(family_id, [])
        for row, value in zip(rows, values, strict=True):
            key = (family_id, label_names, tuple(row))
            now = (tuple(value["bucket_counts"]), value["sum"], tuple(value["explicit_bounds"]))
            hit = last.get(key)
            if hit is None or hit[0] != now:
                start = len(family.samples)
                family.add_metric(
                    labels=row,
                    buckets=_convert_buckets(now[0], now[2]),
                    sum_value=now[1],
                )
                hit = (now, TextPoint(family.samples[start:]))
            else:
                family.samples.extend(hit[1].samples)
            kept[key] = hit
            points.append(hit[1])
        attach_points(family, points)

    def _build_scope_attrs(self, scope: InstrumentationScope) -> dict[str, Any]:
        attrs: dict[str, Any] = super()._build_scope_attrs(scope)
        return {key: value for key, value in attrs.items() if value != ""}

    def _collect_data_points(
        self,
        metric_data: Any,
        scope_attrs: Mapping[str, Any],
        resource_attrs: Mapping[str, Any] | None = None,
    ) -> tuple[list[str], list[list[str]], list[Any]]:
        """The exporter's own (label names, each point's label values, each point's
        value), with each attribute name's label name and each non-text value's label
        text looked up rather than made again for every point and collection."""
        names, texts = self._label_names, self._label_texts
        if len(names) > ATTRIBUTE_CACHE_MAX or len(texts) > ATTRIBUTE_CACHE_MAX:
            names.clear()
            texts.clear()
        fixed = [*(resource_attrs or {}).items(), *scope_attrs.items()]
        keys: set[str] = set()
        rows: list[dict[str, str]] = []
        values: list[Any] = []
        for point in metric_data.data_points:
            labels: dict[str, str] = {}
            for key, value in chain(fixed, point.attributes.items()):
                label = names.get(key)
                if label is None:
                    label = names[key] = sanitize_attribute(key)
                    if not is_legacy_label_name(label):  # (an empty key stays empty)
                        self._odd_labels = True
                keys.add(label)
                if type(value) is str:
                    labels[label] = value
                    continue
                try:
                    text = texts.get((type(value), value))
                except TypeError:  # (a list: not hashable)
                    text = None
                if text is None:
                    text = self._check_value(value)
                    with contextlib.suppress(TypeError):
                        texts[(type(value), value)] = text
                labels[label] = text
            rows.append(labels)
            if isinstance(point, HistogramDataPoint):
                values.append(
                    {
                        "bucket_counts": point.bucket_counts,
                        "explicit_bounds": point.explicit_bounds,
                        "sum": point.sum,
                    }
                )
            else:
                values.append(point.value)
        label_keys = sorted(keys)
        label_rows = [[labels.get(k, "") for k in label_keys] for labels in rows]
        if not self._padded and any("" in row for row in label_rows):
            self._padded = True
        return label_keys, label_rows, values

    def _create_info_metric(
        self, name: str, description: str, attributes: Mapping[str, Any]
    ) -> InfoMetricFamily:
        present = {key: value for key, value in attributes.items() if value != ""}
        info: InfoMetricFamily = super()._create_info_metric(name, description, present)
        return info

    def collect(self) -> Iterable[Metric]:
        with self._collecting:
            self._kept, self._family_points = {}, {}
            families: list[Metric] = list(super().collect())
            self._points = self._kept  # series gone since are forgotten
        natives = self._natives
        odd = self._odd_labels
        for family in families:  # (`proxy.native_histograms`: their native parts)
            if natives.of(family.name) is not None:
                family.native_parts = natives  # type: ignore[attr-defined]
            if family.type != "info":  # (target_info's labels are the exporter's own)
                # every label name went through `_collect_data_points`: `metric_is_legacy`
                # need not read the ~8,000 samples of 100 routes' histograms to know
                family.legacy_names = not odd and is_legacy_metric_name(family.name)  # type: ignore[attr-defined]
        if self._padded:
            for family in families:
                family.samples = [
                    s._replace(labels={k: v for k, v in s.labels.items() if v != ""})
                    if "" in s.labels.values()
                    else s
                    for s in family.samples
                ]
        return families


class SnapshotRegistry(CollectorRegistry):
    """The sidecar's own registry, read by a ``/metrics`` render in a worker thread
    (`sidecar.offloop`): with 100 proxied routes a collection takes ~5 ms when few
    series changed (`_NoEmptyLabels` keeps unchanged histogram series), ~30 ms when all did.

    Reading it in another thread is safe: the OpenTelemetry SDK's collection is, and the
    callbacks of the sidecar's own observable instruments were written for a collection
    on an exporter's thread (the proxy's fold of its exchange log takes the batcher's
    lock and pops the log's deque, whose operations are atomic; the others read sizes).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last: tuple[float, list[Metric]] | None = None  # the last collection, when

    def collect(self) -> Iterator[Metric]:
        """Every family, read now; kept for `recent` (families are made anew by each
        collection and not changed once returned, so a kept list stays valid)."""
        families = list(super().collect())
        self._last = (time.monotonic(), families)
        return iter(families)

    def snapshot(self) -> Collector:
        """Nothing is read on the loop: the registry is collected when the result is."""
        return _Deferred(self)

    def last(self) -> tuple[float, Sequence[Metric]] | None:
        """The last collection and when it was made (`time.monotonic`), if any."""
        return self._last

    def recent(self, max_age: float) -> Collector | None:
        """The last collection if it is at most ``max_age`` seconds old: the status page
        reads it rather than collect again right after a scrape (a collection is ~5 ms
        with 100 proxied routes)."""
        last = self._last
        if last is None or time.monotonic() - last[0] > max_age:
            return None
        return FrozenSource(last[1])


class _Deferred:
    """A `SnapshotRegistry`, collected when read (in the render's thread)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        """The registry's families, read now."""
        return self._registry.collect()


class PrometheusReader(PrometheusMetricReader):
    """The exporter's reader with `_NoEmptyLabels` as its collector in ``registry``."""

    def __init__(self, registry: CollectorRegistry, natives: NativeParts | None = None) -> None:
        super().__init__(registry=registry)
        registry.unregister(self._collector)
        self._collector = _NoEmptyLabels(NativeParts() if natives is None else natives)
        registry.register(self._collector)  # before the callback: registering collects once
        self._collector._callback = self.collect  # type: ignore[assignment]


def own_resource(service_name: str, instance_key: str = "") -> Resource:
    """The sidecar's resource: ``service.name``, the ``OTEL_RESOURCE_ATTRIBUTES``, and a
    ``service.instance.id`` stable across restarts (`sidecar.instance`) unless set there."""
    resource = Resource.create({SERVICE_NAME: service_name})
    if SERVICE_INSTANCE_ID in OTELResourceDetector().detect().attributes:
        return resource
    instance = stable_instance_id(resource.attributes, discriminator=instance_key)
    return resource.merge(Resource({SERVICE_INSTANCE_ID: instance}))


@dataclass(frozen=True, slots=True)
class Module:
    """An OpenTelemetry MeterProvider exposed through its own Prometheus registry."""

    service_name: str
    provider: MeterProvider
    registry: CollectorRegistry
    resource: Resource
    natives: NativeParts = field(default_factory=NativeParts)  # the native histograms' parts

    @classmethod
    def new(
        cls,
        service_name: str,
        *,
        registry: CollectorRegistry | None = None,
        extra_readers: tuple[MetricReader, ...] = (),
        views: tuple[View, ...] = (),
        instance_key: str = "",
    ) -> Module:
        """Build the provider (resource: `own_resource`) and its Prometheus reader.

        Args:
            service_name: the resource's ``service.name``.
            registry: the Prometheus registry to serve; a fresh private one when None.
            extra_readers: more readers on the same provider (e.g. a periodic OTLP export).
            views: OpenTelemetry views, e.g. explicit histogram buckets for an instrument.
            instance_key: tells two instances on one host apart when there is no pod
                (`sidecar.instance`); the sidecar passes its admin listen address.
        """
        registry = SnapshotRegistry(auto_describe=True) if registry is None else registry
        natives = NativeParts()
        reader = PrometheusReader(registry, natives)
        resource = own_resource(service_name, instance_key)
        provider = MeterProvider(
            resource=resource, metric_readers=[reader, *extra_readers], views=list(views)
        )
        return cls(
            service_name=service_name,
            provider=provider,
            registry=registry,
            resource=resource,
            natives=natives,
        )

    @property
    def meter(self) -> Meter:
        """The module's meter (instrumentation scope ``causality-sidecar``)."""
        return self.provider.get_meter(METER_NAME, __version__)

    async def shutdown(self) -> None:
        """Flush and shut the provider down (unregisters the exporter's collector)."""
        self.provider.shutdown()


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every instrument of the design §6 catalogue."""

    http_request_duration: Histogram
    http_request_total: Counter
    http_request_errors: Counter
    nats_messages_processed: Counter
    nats_batch_size: Histogram
    nats_flush_latency: Histogram
    nats_ack_latency: Histogram
    s3_files_written: Counter
    s3_file_size: Histogram
    dedup_dropped: Counter
    dlq_depth: UpDownCounter
    rules_evaluated: Counter
    alerts_fired: Counter
    webhook_success: Counter
    webhook_failure: Counter

    @classmethod
    def create(cls, meter: Meter) -> Metrics:
        """Create the catalogue's instruments on ``meter`` (names, units and HELP of §6)."""
        m = meter
        return cls(
            http_request_duration=m.create_histogram(
                "http.request.duration", unit="ms", description="HTTP request duration"
            ),
            http_request_total=m.create_counter(
                "http.request.total", description="Total HTTP requests"
            ),
            http_request_errors=m.create_counter(
                "http.request.errors", description="HTTP request errors (4xx, 5xx)"
            ),
            nats_messages_processed=m.create_counter(
                "nats.messages.processed", description="NATS messages processed"
            ),
            nats_batch_size=m.create_histogram(
                "nats.batch.size", description="NATS messages per fetched batch"
            ),
            nats_flush_latency=m.create_histogram(
                "nats.flush.latency", unit="ms", description="NATS batch flush latency"
            ),
            nats_ack_latency=m.create_histogram(
                "nats.ack.latency", unit="ms", description="NATS message acknowledgement latency"
            ),
            s3_files_written=m.create_counter(
                "s3.files.written", description="Parquet files written to S3"
            ),
            s3_file_size=m.create_histogram(
                "s3.file.size", unit="By", description="Size of Parquet files written to S3"
            ),
            dedup_dropped=m.create_counter(
                "dedup.dropped", description="Events dropped as duplicates"
            ),
            dlq_depth=m.create_up_down_counter(
                "dlq.depth", description="Messages waiting in the dead-letter queue"
            ),
            rules_evaluated=m.create_counter(
                "rules.evaluated", description="Reaction-engine rules evaluated"
            ),
            alerts_fired=m.create_counter("alerts.fired", description="Alerts fired"),
            webhook_success=m.create_counter(
                "webhook.success", description="Webhook deliveries that succeeded"
            ),
            webhook_failure=m.create_counter(
                "webhook.failure", description="Webhook deliveries that failed"
            ),
        )


def route_label(request: web.Request) -> str:
    """The matched route's canonical path (``/users/{id}``), else the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def http_metrics(
    metrics: Metrics,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """aiohttp middleware recording duration (ms), total and errors (status >= 400).

    Attributes are ``method``, ``path`` (see `route_label`) and ``status``.
    """
    attribute_cache: dict[tuple[str, str, int], dict[str, str | int]] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            key = (request.method, route_label(request), status)
            attrs = attribute_cache.get(key)
            if attrs is None:
                attrs = {"method": key[0], "path": key[1], "status": status}
                if len(attribute_cache) < ATTRIBUTE_CACHE_MAX:
                    attribute_cache[key] = attrs
            metrics.http_request_duration.record((time.perf_counter() - start) * 1000.0, attrs)
            metrics.http_request_total.add(1, attrs)
            if status >= 400:
                metrics.http_request_errors.add(1, attrs)

    return middleware
