"""The observability module: a Python port of the Causality services' instrument set.

`Module` owns an OpenTelemetry `MeterProvider` read by the OpenTelemetry Prometheus
exporter into a `CollectorRegistry` of its own (never prometheus_client's global one), so
two modules in one process never see each other's series. `Metrics` is the catalogue of
design §6, created once per meter; services (and the demo pipeline) record into it, and
the sidecar's proxy records its HTTP metrics through the same three HTTP instruments.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader, _CustomCollector
from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar import __version__
from sidecar.instance import stable_instance_id
from sidecar.protobuf import NativeParts

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

    def _build_scope_attrs(self, scope: InstrumentationScope) -> dict[str, Any]:
        attrs: dict[str, Any] = super()._build_scope_attrs(scope)
        return {key: value for key, value in attrs.items() if value != ""}

    def _collect_data_points(self, *args: Any) -> tuple[list[str], list[list[str]], list[Any]]:
        # (metric data, scope attrs[, resource attrs]): the arguments vary by exporter version
        keys, rows, values = super()._collect_data_points(*args)
        if not self._padded and any("" in row for row in rows):
            self._padded = True
        return keys, rows, values

    def _create_info_metric(
        self, name: str, description: str, attributes: Mapping[str, Any]
    ) -> InfoMetricFamily:
        present = {key: value for key, value in attributes.items() if value != ""}
        info: InfoMetricFamily = super()._create_info_metric(name, description, present)
        return info

    def collect(self) -> Iterable[Metric]:
        families: list[Metric] = list(super().collect())
        natives = self._natives
        for family in families:  # (`proxy.native_histograms`: their native parts)
            if natives.of(family.name) is not None:
                family.native_parts = natives  # type: ignore[attr-defined]
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
    (`sidecar.offloop`): with 100 proxied routes a collection takes ~100 ms (the
    OpenTelemetry SDK's collection, then ~90 % translating to prometheus_client families).

    Reading it in another thread is safe: the OpenTelemetry SDK's collection is, and the
    callbacks of the sidecar's own observable instruments were written for a collection
    on an exporter's thread (the proxy's fold of its exchange log takes the batcher's
    lock and pops the log's deque, whose operations are atomic; the others read sizes).
    """

    def snapshot(self) -> Collector:
        """Nothing is read on the loop: the registry is collected when the result is."""
        return _Deferred(self)


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
