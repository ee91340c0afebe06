"""Drop before store: an ingested series that the ``relabel:`` rules drop is never stored.

`IngestFilter.filter` runs on each translated batch right before the store applies it
(`sidecar.ingest.receiver`) and removes the points of the series that the rules for
the ``ingest`` source drop as a whole (every sample name of the series dropped: a
counter's ``x_total``, a histogram's ``x_bucket``, ``x_count``, ...). Whatever else the
rules do (rename, labels, a partial drop) happens at exposition (`sidecar.relabel.families`).

The verdict is remembered per (family, label text) (at most `MAX_REMEMBERED`, then
forgotten at once), and per family when every rule is a ``keep``/``drop`` on the name
only: then a point costs one dictionary look-up of its family.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sidecar.exposition import unescape_label_value
from sidecar.ingest.model import Batch
from sidecar.relabel.families import sample_names_of
from sidecar.relabel.rules import NAME, Rule, process

__all__ = ["MAX_REMEMBERED", "IngestFilter"]

MAX_REMEMBERED = 200_000
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class IngestFilter:
    """The ingest source's rules as a pre-store filter; `update` swaps them (reload)."""

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.update(rules)

    def update(self, rules: Sequence[Rule]) -> None:
        """Use these rules (all of them: the ``ingest`` ones are picked here)."""
        self.chain = tuple(r for r in rules if r.source in (None, "ingest"))
        self.by_name_only = all(
            r.action in ("keep", "drop") and r.reads <= {NAME} for r in self.chain
        )
        self._families: dict[tuple[str, str], bool] = {}
        self._series: dict[tuple[str, str, str], bool] = {}

    def filter(self, batch: Batch) -> int:
        """Remove the dropped series' points from ``batch``; how many points went."""
        if not self.chain:
            return 0
        removed = 0
        for metric in batch.metrics:
            name, kind = metric.descriptor.name, metric.descriptor.kind.value
            if self.by_name_only:
                if not self._family_admitted(name, kind):
                    removed += len(metric.points)
                    metric.points.clear()
                continue
            kept = [p for p in metric.points if self._admitted(name, kind, p.labels)]
            if len(kept) != len(metric.points):
                removed += len(metric.points) - len(kept)
                metric.points[:] = kept
        if removed:
            batch.metrics[:] = [m for m in batch.metrics if m.points]
        return removed

    def _family_admitted(self, name: str, kind: str) -> bool:
        verdict = self._families.get((name, kind))
        if verdict is None:
            verdict = self._families[(name, kind)] = self._decide(name, kind, {})
        return verdict

    def _admitted(self, name: str, kind: str, labels: str) -> bool:
        key = (name, kind, labels)
        verdict = self._series.get(key)
        if verdict is None:
            if len(self._series) >= MAX_REMEMBERED:
                self._series.clear()
            parsed = {n: unescape_label_value(v) for n, v in _LABEL_RE.findall(labels)}
            verdict = self._series[key] = self._decide(name, kind, parsed)
        return verdict

    def _decide(self, name: str, kind: str, labels: dict[str, str]) -> bool:
        """Kept when the rules keep any of the series' sample names (but ``_created``:
        a series of its ``_created`` sample alone is no series, `sidecar.relabel.families`)."""
        created = name + "_created"
        return any(
            process(self.chain, {**labels, NAME: sample}) is not None
            for sample in sample_names_of(name, kind)
            if sample != created
        )
