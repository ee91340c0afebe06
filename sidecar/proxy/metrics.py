"""The proxy's metrics (design §6), recorded through OpenTelemetry instruments.

The seed's three HTTP instruments (`Metrics.http_request_duration`, ``_total``,
``_errors``) keep their names and labels; the others are created here on the same
meter. Attribute dicts are built once per (method, path, status) and reused. Every
series of these HTTP instruments carries ``reporter="sidecar"`` (`REPORTER`, Istio's
precedent): an app's own ``http.request.*``, pushed over OTLP or merged from its
/metrics, lands in the same families, and ``{reporter="sidecar"}`` keeps the proxy's
count apart from it in every query. The label is part of the cached attribute dicts,
so it costs nothing per request.
``http.requests.in_flight`` is an observable up-down counter read from the proxy's own
integer at collection time. Its callback, which the SDK runs at the start of every
collection, first flushes the batched counters and histograms (see `batching`), and
every collection sees exact values. The hot path only appends the exchange to a log,
folded into the batched instruments every `FOLD_EVERY` exchanges (or at collection) in
one tight loop: measured in the proxy, recording each exchange as it ends cost ~5 µs
(scattered dict and list updates missing the CPU caches between requests), the fold
a fraction of that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics.view import View

from sidecar.batching import (
    NO_CONTEXT,
    Batcher,
    MergeableHistogramAggregation,
    mergeable_aggregations,
)
from sidecar.config import ProxyConfig
from sidecar.instruments import cardinality_overflow
from sidecar.known_labels import zeroed
from sidecar.observability import Metrics
from sidecar.protobuf import NativeParts
from sidecar.proxy.native import NativeHistogram

__all__ = [
    "BODY_SIZE_BUCKETS_BYTES",
    "ERROR_REASONS",
    "REPORTER",
    "ProxyMetrics",
    "mergeable_aggregations",
    "proxy_views",
]

BODY_SIZE_BUCKETS_BYTES: tuple[float, ...] = tuple(
    float(4**i) for i in range(0, 16)
)  # 1 B, 4 B, ... 1 GiB: a factor of 4 per bucket
ERROR_REASONS = (
    "upstream_connect_error",
    "upstream_tls_error",
    "upstream_timeout",
    "upstream_reset",
    "client_disconnect",
    "request_too_large",
    "overloaded",
    "bad_request",
)
# The label and value on every proxy HTTP series (requests, errors, durations, sizes,
# in-flight): the proxy's measurement, told apart from the app's own http_request_*.
REPORTER: Mapping[str, str] = MappingProxyType({"reporter": "sidecar"})
STATUS_CLIENT_CLOSED = 499
STATUS_SWITCHING_PROTOCOLS = 101

Attrs = dict[str, str | int]
# (method, path, status, duration ms, time to first byte ms, request bytes, response bytes)
Exchange = tuple[str, str, int, float, float | None, int, int]
# Exchanges logged before the loop's thread folds them into the instruments itself (a
# collection folds first anyway). Small, for the tail: a fold holds the loop ~3 µs an
# exchange, and with 4,096 (~12 ms at once) wrk's p99 at one connection was 1.0-1.9 ms
# against 0.4-0.6 ms with 64 (0.4 ms with metrics off), and 7.5-8.7 ms against 3.6-4.4 ms
# at 32 connections, for the same throughput (bench/proxy_only.py, 3 runs each).
FOLD_EVERY = 64
# the latency families' names in the exposition, and their label names
DURATION_FAMILY = "http_request_duration_milliseconds"
TTFB_FAMILY = "http_request_time_to_first_byte_milliseconds"
STATUS_LABELS = ("method", "path", "status", *REPORTER)
ROUTE_LABELS = ("method", "path", *REPORTER)
HISTOGRAMS = (
    "http.request.duration",
    "http.request.time_to_first_byte",
    "http.request.body.size",
    "http.response.body.size",
)


def proxy_views(config: ProxyConfig) -> tuple[View, ...]:
    """Views giving the proxy's histograms their bucket bounds (latency from the config).

    Pass them to ``Module.new(..., views=...)``: they also let the proxy batch its
    histogram recording (without them it records every value directly, more slowly).
    """
    latency = tuple(config.latency_buckets_ms)
    bounds = (latency, latency, BODY_SIZE_BUCKETS_BYTES, BODY_SIZE_BUCKETS_BYTES)
    return tuple(
        View(instrument_name=name, aggregation=MergeableHistogramAggregation(b))
        for name, b in zip(HISTOGRAMS, bounds, strict=True)
    )


class ProxyMetrics:
    """Records one proxied exchange into every design §6 proxy instrument."""

    def __init__(
        self,
        meter: Meter,
        metrics: Metrics,
        in_flight: Callable[[], int],
        *,
        aggregations: Mapping[str, MergeableHistogramAggregation] | None = None,
        enabled: bool = True,
        fold_every: int = FOLD_EVERY,
        natives: NativeParts | None = None,
    ) -> None:
        self.enabled = enabled
        self._log: deque[Exchange] = deque()
        self._fold_every = fold_every
        merge = aggregations or {}
        self._batcher = batcher = Batcher()
        self._duration = batcher.histogram(
            metrics.http_request_duration, merge.get("http.request.duration")
        )
        self._total = batcher.counter(metrics.http_request_total)
        self._errors = batcher.counter(metrics.http_request_errors)
        ttfb = meter.create_histogram(
            "http.request.time_to_first_byte",
            unit="ms",
            description="Time until the response headers were sent to the client",
        )
        self._ttfb = batcher.histogram(ttfb, merge.get("http.request.time_to_first_byte"))
        request_size = meter.create_histogram(
            "http.request.body.size", unit="By", description="Request body size"
        )
        self._request_size = batcher.histogram(request_size, merge.get("http.request.body.size"))
        response_size = meter.create_histogram(
            "http.response.body.size", unit="By", description="Response body size"
        )
        self._response_size = batcher.histogram(response_size, merge.get("http.response.body.size"))
        self._proxy_errors = zeroed(
            meter.create_counter("sidecar.proxy.errors", description="Proxy failures by reason"),
            "reason",
            ERROR_REASONS,
        )
        self._overflow = batcher.counter(cardinality_overflow(meter))
        # proxy.native_histograms: the latencies as native histograms too (`native`)
        self._native_duration = self._native_ttfb = None
        if natives is not None and self.batched_histograms:
            self._native_duration = NativeHistogram(DURATION_FAMILY, STATUS_LABELS, natives)
            self._native_ttfb = NativeHistogram(TTFB_FAMILY, ROUTE_LABELS, natives)
            batcher.add(self._native_duration)
            batcher.add(self._native_ttfb)
        self._in_flight = in_flight
        meter.create_observable_up_down_counter(
            "http.requests.in_flight",
            callbacks=[self._observe_in_flight],
            description="Requests being proxied",
        )
        # (method, path, status) -> (its attrs, the (method, path) attrs): one lookup a request
        self._status_attrs: dict[tuple[str, str, int], tuple[Attrs, Attrs]] = {}
        self._route_attrs: dict[tuple[str, str], Attrs] = {}
        self._reason_attrs = {r: {"reason": r} for r in ERROR_REASONS}
        self._overflow_attrs: Attrs = {"metric": "http_request_path"}

    @property
    def batched_histograms(self) -> bool:
        """True when every histogram is batched (the proxy's views are installed)."""
        return all(
            h.batched for h in (self._duration, self._ttfb, self._request_size, self._response_size)
        )

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        """Runs first in every collection: flush the batched counters, report in-flight."""
        self.flush()
        return (Observation(self._in_flight(), REPORTER),)

    def flush(self) -> None:
        """Hand everything recorded since the last flush to the OpenTelemetry instruments."""
        self._fold()
        self._batcher.flush()

    # The attribute caches need no size limit: their keys are already bounded (10 method
    # labels x at most max_route_labels + 1 paths x 3-digit statuses), and the batched
    # counters key on the identity of these cached dicts.
    def _status_key(self, method: str, path: str, status: int) -> tuple[Attrs, Attrs]:
        key = (method, path, status)
        pair = self._status_attrs.get(key)
        if pair is None:
            attrs: Attrs = {"method": method, "path": path, "status": status, **REPORTER}
            pair = (attrs, self._route_key(method, path))
            self._status_attrs[key] = pair
        return pair

    def _route_key(self, method: str, path: str) -> Attrs:
        key = (method, path)
        attrs = self._route_attrs.get(key)
        if attrs is None:
            attrs = {"method": method, "path": path, **REPORTER}
            self._route_attrs[key] = attrs
        return attrs

    def exchange(
        self,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        ttfb_ms: float | None,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """Record a finished (or failed) HTTP exchange: one append; `_fold` does the rest."""
        if self.enabled:
            log = self._log
            log.append((method, path, status, duration_ms, ttfb_ms, request_bytes, response_bytes))
            if len(log) >= self._fold_every:
                self._fold()

    def _fold(self) -> None:
        """Move the logged exchanges into the batched instruments (the loop's thread, every
        `FOLD_EVERY` exchanges, or a collection's thread at its start).

        The log is a deque: ``append`` and ``popleft`` are each atomic, so an exchange logged
        while another thread folds is either taken now or left for the next fold, never lost
        or counted twice. Only what was there when the fold began is taken.
        """
        log = self._log
        status_key = self._status_key
        duration, total, errors = self._duration, self._total, self._errors
        ttfb, request_size, response_size = self._ttfb, self._request_size, self._response_size
        native_duration, native_ttfb = self._native_duration, self._native_ttfb
        with self._batcher.lock:
            for _ in range(len(log)):
                method, path, status, duration_ms, ttfb_ms, request_bytes, response_bytes = (
                    log.popleft()
                )
                attrs, route = status_key(method, path, status)
                duration.record(duration_ms, attrs)
                total.add(attrs)
                if status >= 400:
                    errors.add(attrs)
                if ttfb_ms is not None:
                    ttfb.record(ttfb_ms, route)
                if native_duration is not None:
                    native_duration.record(duration_ms, attrs)
                    if ttfb_ms is not None:
                        native_ttfb.record(ttfb_ms, route)  # type: ignore[union-attr]
                request_size.record(request_bytes, route)
                response_size.record(response_bytes, route)

    def websocket(self, method: str, path: str) -> None:
        """Count a WebSocket session (status 101); it stays out of the histograms."""
        if self.enabled:
            attrs, _ = self._status_key(method, path, STATUS_SWITCHING_PROTOCOLS)
            with self._batcher.lock:
                self._total.add(attrs)

    def error(self, reason: str) -> None:
        """Count one proxy failure by reason (always recorded: failures are rare)."""
        self._proxy_errors.add(1, self._reason_attrs[reason], NO_CONTEXT)

    def overflow(self) -> None:
        """Count one label value folded into ``__other__``."""
        with self._batcher.lock:
            self._overflow.add(self._overflow_attrs)
