"""The reference the golden tests compare the sidecar's own writers with: a collector
rendered by prometheus_client's encoders, names escaped for the scraper, negotiated and
gzipped as `sidecar.unified` does. The sidecar itself never renders this way."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from sidecar.escaping import escaped
from sidecar.exposition import Exposition, encoded
from sidecar.negotiation import Escaping, encoder_for, negotiate


def render(collector: Collector, accept: str, accept_encoding: str) -> Exposition:
    """Render ``collector`` (a registry or anything with ``collect()``) for one scraper."""
    negotiated = negotiate(accept)
    body = encoder_for(negotiated)(_Escaped(collector, negotiated.escaping))
    return encoded(body, negotiated.content_type, accept_encoding)


@dataclass(frozen=True, slots=True)
class _Escaped:
    """``collector``'s families with their names escaped for one scraper."""

    collector: Collector
    scheme: Escaping

    def collect(self) -> Iterable[Metric]:
        return (escaped(metric, self.scheme) for metric in self.collector.collect())
