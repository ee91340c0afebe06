"""The ingested families as a Prometheus collector (the scrape side of the store).

Two ways out, the same content: `OtlpCollector.collect` yields prometheus_client
`Metric` families (any registry or encoder takes them), and `OtlpCollector.families`
hands `sidecar.unified` families that write their own exposition text fast.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import Metric as PromMetric

from sidecar.gzipjoin import Part
from sidecar.ingest import text
from sidecar.ingest.model import Kind
from sidecar.ingest.pbencode import LabelBytes, encode_stored, series_natives
from sidecar.ingest.store import Family, MetricStore
from sidecar.offloop import WriteGate
from sidecar.protobuf import DerivedNatives
from sidecar.rendercache import RenderCache, family_parts, family_protobuf_parts

__all__ = ["IngestedFamily", "OtlpCollector", "PreRelabel", "TargetInfoFamily"]


class PreRelabel(Protocol):
    """The relabel rules run before the store (`sidecar.relabel.ingest.IngestRelabel`)."""

    @property
    def applies(self) -> bool:
        """The stored families are relabelled already (the exposition skips them)."""
        ...


class IngestedFamily:
    """One stored family, renderable directly or as a prometheus_client `Metric`."""

    __slots__ = ("_cache", "_family", "_label_bytes", "relabelled", "utf8_labels")

    def __init__(
        self,
        family: Family,
        utf8_labels: bool = False,
        label_bytes: LabelBytes | None = None,
        relabelled: bool = False,
        cache: RenderCache | None = None,
    ) -> None:
        self._family = family
        self._label_bytes = label_bytes
        self._cache = cache
        # the ``relabel:`` rules ran before the store: `sidecar.relabel` passes it as it is
        self.relabelled = relabelled
        # label names may be outside the legacy set (quoted; ingest.translation_strategy):
        # `sidecar.unified` renders the family through `to_metric` unless they may be sent
        self.utf8_labels = utf8_labels

    @property
    def name(self) -> str:
        """Family name as prometheus_client names it (no ``_total``)."""
        return self._family.descriptor.name

    @property
    def type(self) -> str:
        """Prometheus type."""
        return self._family.descriptor.kind.value

    def render(self, openmetrics: bool, out: list[str]) -> None:
        """Append this family's exposition lines to ``out``."""
        text.render_family(self._family, openmetrics, out)

    def parts(self, openmetrics: bool) -> list[Part] | None:
        """The same lines as `render`, unchanged chunks compressed from the render cache
        (`sidecar.rendercache`); None without a cache."""
        if self._cache is None:
            return None
        return family_parts(self._family, openmetrics, self._cache)

    def to_metric(self) -> PromMetric:
        """The same family as a prometheus_client `Metric`; a histogram's carries its
        native parts (worked out only when a protobuf answer asks: `DerivedNatives`)."""
        family = self._family
        metric = text.to_metric(family)
        if family.descriptor.kind is Kind.HISTOGRAM:
            parts = functools.partial(series_natives, family)
            metric.native_parts = DerivedNatives(metric.name, parts)  # type: ignore[attr-defined]
        return metric

    def protobuf(self) -> bytes:
        """The family as protobuf MetricFamily bytes (`sidecar.ingest.pbencode`)."""
        return encode_stored(self._family, self._label_bytes or LabelBytes())

    def protobuf_parts(self) -> list[Part] | None:
        """The same message delimited, unchanged chunks' entries compressed from the
        render cache (`sidecar.rendercache`); None without a cache."""
        if self._cache is None:
            return None
        labels = self._label_bytes or LabelBytes()
        return family_protobuf_parts(self._family, labels, self._cache)


class TargetInfoFamily:
    """The ``target_info`` family: one series per resource seen."""

    __slots__ = ("_targets", "utf8_labels")

    def __init__(self, targets: list[str], utf8_labels: bool = False) -> None:
        self._targets = targets
        self.utf8_labels = utf8_labels  # as `IngestedFamily.utf8_labels`

    name = text.TARGET_NAME
    type = Kind.INFO.value

    def render(self, openmetrics: bool, out: list[str]) -> None:
        """Append the family's exposition lines to ``out``."""
        text.render_targets(self._targets, openmetrics, out)

    def to_metric(self) -> PromMetric:
        """The same family as a prometheus_client `Metric`."""
        return text.targets_metric(self._targets)


class OtlpCollector:
    """Exposes a `MetricStore`; reads it synchronously, so each call sees one state."""

    relabel_source = "ingest"  # what ``relabel:`` rules name it (``source: ingest``)

    def __init__(
        self,
        store: MetricStore,
        *,
        utf8_labels: bool = False,
        relabel: PreRelabel | None = None,
        cache: bool = True,
    ) -> None:
        self.store = store
        self.relabel = relabel  # the relabel rules run before the store, if any
        self.utf8_labels = utf8_labels  # the translation strategy keeps UTF-8 names
        # protobuf scrapes: each series' encoded labels, kept (at most twice max_series)
        self._label_bytes = LabelBytes(2 * store.limits.max_series)
        # unchanged chunks of series rendered (text) and encoded (protobuf), compressed once
        self.render_cache = RenderCache() if cache else None

    @property
    def write_gate(self) -> WriteGate:
        """Held while a scrape renders the store in a worker thread (`sidecar.offloop`)."""
        return self.store.gate

    def families(self) -> list[IngestedFamily | TargetInfoFamily]:
        """Every non-empty family, ``target_info`` first."""
        out: list[IngestedFamily | TargetInfoFamily] = []
        if self.store.targets:
            out.append(TargetInfoFamily(list(self.store.targets), self.utf8_labels))
        utf8 = self.utf8_labels
        relabelled = self.relabel is not None and self.relabel.applies
        if self.render_cache is not None:
            self.render_cache.prune(self.store.families.values())
        out.extend(
            IngestedFamily(f, utf8, self._label_bytes, relabelled, self.render_cache)
            for f in self.store.families.values()
            if f.series or f.overflow
        )
        return out

    def collect(self) -> Iterator[PromMetric]:
        """prometheus_client's collector protocol."""
        for family in self.families():
            yield family.to_metric()
