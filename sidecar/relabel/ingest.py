"""Drop before store: an ingested series that the ``relabel:`` rules drop is never stored.

`IngestFilter.filter` runs on each translated batch right before the store applies it
(`sidecar.ingest.receiver`) and removes the points of the series that the rules for
the ``ingest`` source drop as a whole (every sample name of the series dropped: a
counter's ``x_total``, a histogram's ``x_bucket``, ``x_count``, ...). Whatever else the
rules do (rename, labels, a partial drop) happens at exposition (`sidecar.relabel.families`).

The verdict is remembered per family when no rule can make it depend on more than the
name (``keep``/``drop`` on the name only, no rule that can write ``__name__``: the
issue's example): then a point costs nothing, a metric one look-up. Otherwise it is
remembered per (family, label text), at most `MAX_REMEMBERED`, then forgotten at once.
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
        self.by_name_only = all(_name_only(r) for r in self.chain)
        self._families: dict[tuple[str, str], bool] = {}
        self._series: dict[tuple[str, str], dict[str, bool]] = {}
        self._remembered = 0

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
            verdicts = self._series.setdefault((name, kind), {})
            kept = [
                p
                for p in metric.points
                if verdicts.get(p.labels) or self._admitted(name, kind, p.labels, verdicts)
            ]
            if len(kept) != len(metric.points):
                removed += len(metric.points) - len(kept)
                metric.points[:] = kept
        if removed:
            batch.metrics[:] = [m for m in batch.metrics if m.points]
        return removed

    def _family_admitted(self, name: str, kind: str) -> bool:
        verdict = self._families.get((name, kind))
        if verdict is None:
            if len(self._families) >= MAX_REMEMBERED:
                self._families.clear()
            verdict = self._families[(name, kind)] = self._decide(name, kind, {})
        return verdict

    def _admitted(self, name: str, kind: str, labels: str, verdicts: dict[str, bool]) -> bool:
        verdict = verdicts.get(labels)
        if verdict is None:
            if self._remembered >= MAX_REMEMBERED:
                self._series.clear()
                self._remembered = 0
                verdicts = self._series.setdefault((name, kind), {})
            parsed = {n: unescape_label_value(v) for n, v in _LABEL_RE.findall(labels)}
            verdict = verdicts[labels] = self._decide(name, kind, parsed)
            self._remembered += 1
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


def _name_only(rule: Rule) -> bool:
    """The rule cannot make a series' drop depend on more than its name: a ``keep`` or
    ``drop`` that reads the name only, or a rule that cannot write ``__name__``."""
    if rule.action in ("keep", "drop"):
        return rule.reads <= {NAME}
    if rule.action == "replace":
        return "$" not in rule.target_label and rule.target_label != NAME
    if rule.action == "labelmap":
        return "$" not in rule.replacement and rule.replacement != NAME
    return True  # labeldrop, labelkeep: a series without a name is refused at exposition
