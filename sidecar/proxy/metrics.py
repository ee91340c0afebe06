"""The proxy's metrics (design §6), recorded through OpenTelemetry instruments.

The seed's three HTTP instruments (`Metrics.http_request_duration`, ``_total``,
``_errors``) keep their names and labels; the others are created here on the same
meter. Attribute dicts are built once per (method, path, status) and reused: the
SDK hashes them on every call, and building a fresh dict per request is measurable.
``http.requests.in_flight`` is an observable up-down counter read from the proxy's own
integer at collection time, so the hot path pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from sidecar.config import ProxyConfig
from sidecar.observability import Metrics

__all__ = [
    "BODY_SIZE_BUCKETS_BYTES",
    "ERROR_REASONS",
    "ProxyMetrics",
    "proxy_views",
]

BODY_SIZE_BUCKETS_BYTES: tuple[float, ...] = tuple(
    float(4**i) for i in range(0, 16)
)  # 1 B, 4 B, ... 1 GiB: a factor of 4 per bucket
ERROR_REASONS = (
    "upstream_connect_error",
    "upstream_timeout",
    "upstream_reset",
    "client_disconnect",
    "request_too_large",
    "overloaded",
    "bad_request",
)
STATUS_CLIENT_CLOSED = 499
STATUS_SWITCHING_PROTOCOLS = 101
CACHE_MAX = 16384  # attribute dicts; keys are already bounded, this is belt and braces

Attrs = dict[str, str | int]


def proxy_views(config: ProxyConfig) -> tuple[View, ...]:
    """Views giving the proxy's histograms their bucket bounds (latency from the config)."""
    latency = ExplicitBucketHistogramAggregation(list(config.latency_buckets_ms))
    sizes = ExplicitBucketHistogramAggregation(list(BODY_SIZE_BUCKETS_BYTES))
    return (
        View(instrument_name="http.request.duration", aggregation=latency),
        View(instrument_name="http.request.time_to_first_byte", aggregation=latency),
        View(instrument_name="http.request.body.size", aggregation=sizes),
        View(instrument_name="http.response.body.size", aggregation=sizes),
    )


class ProxyMetrics:
    """Records one proxied exchange into every design §6 proxy instrument."""

    def __init__(
        self, meter: Meter, metrics: Metrics, in_flight: Callable[[], int], *, enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self._duration = metrics.http_request_duration
        self._total = metrics.http_request_total
        self._errors = metrics.http_request_errors
        self._ttfb = meter.create_histogram(
            "http.request.time_to_first_byte",
            unit="ms",
            description="Time until the response headers were sent to the client",
        )
        self._request_size = meter.create_histogram(
            "http.request.body.size", unit="By", description="Request body size"
        )
        self._response_size = meter.create_histogram(
            "http.response.body.size", unit="By", description="Response body size"
        )
        self._proxy_errors = meter.create_counter(
            "sidecar.proxy.errors", description="Proxy failures by reason"
        )
        self._overflow = meter.create_counter(
            "sidecar.cardinality.overflow",
            description="Label values folded into __other__ by a cardinality limit",
        )
        self._in_flight = in_flight
        meter.create_observable_up_down_counter(
            "http.requests.in_flight",
            callbacks=[self._observe_in_flight],
            description="Requests being proxied",
        )
        self._status_attrs: dict[tuple[str, str, int], Attrs] = {}
        self._route_attrs: dict[tuple[str, str], Attrs] = {}
        self._reason_attrs = {r: {"reason": r} for r in ERROR_REASONS}
        self._overflow_attrs: Attrs = {"metric": "http_request_path"}

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        return (Observation(self._in_flight()),)

    def _status_key(self, method: str, path: str, status: int) -> Attrs:
        key = (method, path, status)
        attrs = self._status_attrs.get(key)
        if attrs is None:
            attrs = {"method": method, "path": path, "status": status}
            if len(self._status_attrs) < CACHE_MAX:
                self._status_attrs[key] = attrs
        return attrs

    def _route_key(self, method: str, path: str) -> Attrs:
        key = (method, path)
        attrs = self._route_attrs.get(key)
        if attrs is None:
            attrs = {"method": method, "path": path}
            if len(self._route_attrs) < CACHE_MAX:
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
        """Record a finished (or failed) HTTP exchange."""
        if not self.enabled:
            return
        attrs = self._status_key(method, path, status)
        self._duration.record(duration_ms, attrs)
        self._total.add(1, attrs)
        if status >= 400:
            self._errors.add(1, attrs)
        route = self._route_key(method, path)
        if ttfb_ms is not None:
            self._ttfb.record(ttfb_ms, route)
        self._request_size.record(request_bytes, route)
        self._response_size.record(response_bytes, route)

    def websocket(self, method: str, path: str) -> None:
        """Count a WebSocket session (status 101); it stays out of the histograms."""
        if self.enabled:
            self._total.add(1, self._status_key(method, path, STATUS_SWITCHING_PROTOCOLS))

    def error(self, reason: str) -> None:
        """Count one proxy failure by reason (always recorded: failures are rare)."""
        self._proxy_errors.add(1, self._reason_attrs[reason])

    def overflow(self) -> None:
        """Count one label value folded into ``__other__``."""
        self._overflow.add(1, self._overflow_attrs)
