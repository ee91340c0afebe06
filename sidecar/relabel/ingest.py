"""Relabel before store: the ``relabel:`` rules for the ``ingest`` source, run on each
translated batch before the store applies it (`sidecar.ingest.receiver`).

`IngestRelabel` runs the whole chain, remembering the result per (family, label text), so
the store holds the relabelled series and a steady stream of pushes pays a look-up per
point; a chain that reads ``le`` or ``quantile`` runs at exposition instead, with only its
whole-series drops applied here (`IngestFilter`). Rules and costs: docs/relabel.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from sidecar.exposition import escape_label_value, parse_labels
from sidecar.ingest.model import Batch, Kind, Metric, NumberPoint, Point, Temporality
from sidecar.ingest.store import WORKER_LABEL, MetricStore, with_label
from sidecar.relabel.families import COLLISION, INVALID, SHAPE, sample_names_of
from sidecar.relabel.rules import NAME, Rule, is_label_name, is_metric_name, process

__all__ = ["MAX_REMEMBERED", "IngestFilter", "IngestRelabel", "prestorable", "relabel_series"]

MAX_REMEMBERED = 200_000


class IngestFilter:
    """The ingest source's rules as a pre-store filter; `update` swaps them (reload)."""

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.update(rules)

    def update(self, rules: Sequence[Rule]) -> None:
        """Use these rules (all of them: the ``ingest`` ones are picked here)."""
        self.chain = tuple(r for r in rules if r.source in (None, "ingest"))
        self.by_name_only = all(_name_only(r) for r in self.chain)
        # a rule reads le/quantile: a bucket's (a quantile's) fate waits for its value
        self._undecided = not prestorable(self.chain)
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
            verdict = verdicts[labels] = self._decide(name, kind, parse_labels(labels))
            self._remembered += 1
        return verdict

    def _decide(self, name: str, kind: str, labels: dict[str, str]) -> bool:
        """Kept when the rules keep any of the series' sample names (but ``_created``:
        a series of its ``_created`` sample alone is no series, `sidecar.relabel.families`)."""
        created = name + "_created"
        undecided = (name + _PER_SAMPLE[kind][0]) if self._undecided and kind in _PER_SAMPLE else ""
        return any(
            sample == undecided or process(self.chain, {**labels, NAME: sample}) is not None
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


# ----------------------------------------------------- the whole chain before the store

# the samples the store renders per series (`sidecar.ingest.text`), by family type, and
# the label a family's samples differ by (its value stands in for every bucket)
_RENDERED: dict[str, tuple[str, ...]] = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
}
_PER_SAMPLE = {"histogram": ("_bucket", "le"), "summary": ("", "quantile")}
_PLACEHOLDER = "\x00"  # the value of ``le``/``quantile`` while relabelling a series
_new = tuple.__new__
DROPPED = ""  # the reason of a series the rules drop (nothing counted)

# (family name, label text), or (None, why it went: a reason counted, or DROPPED)
Result = tuple[str | None, str]


class Dropped(Protocol):
    """``sidecar_relabel_dropped_total{reason}`` (an OTel counter)."""

    def add(self, amount: int, attributes: dict[str, str]) -> None: ...


def _ingest_chain(rules: Sequence[Rule]) -> tuple[Rule, ...]:
    return tuple(r for r in rules if r.source in (None, "ingest"))


def prestorable(chain: Sequence[Rule]) -> bool:
    """The chain's result for a series does not depend on a bucket's ``le`` or a
    quantile's ``quantile`` value: no rule reads them, none maps them to another name."""
    for rule in chain:
        if not rule.reads.isdisjoint(("le", "quantile")):
            return False
        if rule.action == "labelmap" and any(
            rule.regex.fullmatch(n) is not None for n in ("le", "quantile")
        ):
            return False
    return True


def relabel_series(
    chain: Sequence[Rule], name: str, kind: str, labels: dict[str, str], text: str = ""
) -> Result:
    """One stored series relabelled as the exposition relabels its samples
    (`sidecar.relabel.families`): its new family name and label text (``text``, the
    label text of ``labels``, when unchanged), or None and `DROPPED` or the reason it is
    refused (``shape``, ``invalid``). ``chain`` must be `prestorable`."""
    per_sample, skip = _PER_SAMPLE.get(kind, (None, None))
    results: list[tuple[str, dict[str, str]]] = []
    lost = 0
    for suffix in _RENDERED.get(kind, ("",)):
        given = {NAME: name + suffix, **labels}
        if suffix == per_sample and skip is not None:
            given[skip] = _PLACEHOLDER
        out = process(chain, given)
        if out is None:
            lost += 1
        else:
            results.append((suffix, out))
    if not results:
        return None, DROPPED
    if lost:
        return None, SHAPE
    family: str | None = None
    key: frozenset[tuple[str, str]] | None = None
    for suffix, out in results:
        new_name = out.pop(NAME, None)
        for temporary in [n for n in out if n.startswith("__")]:
            del out[temporary]
        if new_name is None or (new_name != name + suffix and not is_metric_name(new_name)):
            return None, INVALID
        if not all(n in labels or is_label_name(n) for n in out):
            return None, INVALID
        if not new_name.endswith(suffix) or len(new_name) == len(suffix):
            return None, SHAPE
        if skip is not None:
            had = _PLACEHOLDER if suffix == per_sample else None
            if out.pop(skip, None) != had:
                return None, SHAPE  # a bucket lost or changed its le, or a _count got one
        this = frozenset(out.items())
        new_family = new_name[: len(new_name) - len(suffix)] if suffix else new_name
        if family is None:
            family, key = new_family, this
        elif new_family != family or this != key:
            return None, SHAPE
    assert family is not None
    assert key is not None
    new_text = _label_text(key)
    return (name if family == name else family), (text if new_text == text else new_text)


def _label_text(labels: Iterable[tuple[str, str]]) -> str:
    """Label text as the translator writes it: sorted, escaped, UTF-8 names quoted."""
    named = sorted((n if is_label_name(n) else f'"{escape_label_value(n)}"', v) for n, v in labels)
    return ",".join(f'{n}="{escape_label_value(v)}"' for n, v in named)


class IngestRelabel:
    """The ingest source's rules before the store (see the module doc); `update` swaps
    them (reload). ``applies``: the whole chain runs here and the stored families are
    relabelled already (else only its drops, `IngestFilter`)."""

    def __init__(self, rules: Sequence[Rule] = (), dropped: Dropped | None = None) -> None:
        self.dropped = dropped
        self.chain: tuple[Rule, ...] = ()
        self.applies = False
        self._filter = IngestFilter()
        self.update(rules)

    def update(self, rules: Sequence[Rule]) -> None:
        """Use these rules (the ``ingest`` ones are picked here); what was remembered goes."""
        self.chain = _ingest_chain(rules)
        self.applies = bool(self.chain) and prestorable(self.chain)
        self._filter.update(() if self.applies else self.chain)
        self._results: dict[tuple[str, str], dict[str, Result]] = {}
        # label text -> relabelled text of the label sets kept in their family
        self._plain: dict[tuple[str, str], dict[str, str]] = {}
        self._owners: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._remembered = 0
        self._forgotten = 0  # stored series forgotten (a collision) in this batch
        # keep/drop by the name alone: nothing else can change, a verdict per family
        self._by_name = all(r.action in ("keep", "drop") and r.reads <= {NAME} for r in self.chain)
        self._families: dict[tuple[str, str], Result] = {}

    def stale(self, rules: Sequence[Rule]) -> bool:
        """The series stored under the running rules are not what ``rules`` would store
        (relabelled by the running ones, or to be relabelled by the new ones)."""
        chain = _ingest_chain(rules)
        return chain != self.chain and (self.applies or (bool(chain) and prestorable(chain)))

    def apply(self, batch: Batch, store: MetricStore) -> int:
        """Relabel ``batch`` for ``store`` (dropped points removed; refusals counted);
        how many points went."""
        if not self.applies:
            return self._filter.filter(batch) if self.chain else 0
        counts: dict[str, int] = {}
        removed = 0
        collided: list[tuple[str, str, str]] = []
        each = store.limits.worker_gauges == "each"
        out: list[Metric] = []
        for metric in batch.metrics:
            d = metric.descriptor
            name, kind = d.name, d.kind.value
            labelled = (
                each
                and bool(metric.worker)
                and metric.temporality is Temporality.GAUGE
                and d.kind is Kind.GAUGE
            )
            if self._by_name:  # keep/drop by name only: one verdict for the family
                verdict, reason = self._family(name, kind)
                if verdict is None:
                    removed += len(metric.points)
                    if reason:
                        counts[reason] = counts.get(reason, 0) + len(metric.points)
                else:
                    out.append(metric)
                continue
            plain = self._plain.get((name, kind))
            if plain is not None and not labelled:  # the common case: all seen, all kept
                lookup = plain.get
                found = [lookup(p[0]) for p in metric.points]
                if None not in found:
                    rebuilt: list[Point]
                    cls = metric.points[0].__class__ if metric.points else NumberPoint
                    if cls is NumberPoint:  # a metric's points are of one type (translator)
                        rebuilt = [
                            _new(cls, (text, p[1], p[2], p[3]))
                            for p, text in zip(metric.points, found, strict=True)
                        ]
                    else:
                        rebuilt = [
                            _new(cls, (text, *p[1:]))
                            for p, text in zip(metric.points, found, strict=True)
                        ]
                    out.append(replace(metric, points=rebuilt))
                    continue
            results = self._results.get((name, kind))
            if results is None:
                results = self._results[(name, kind)] = {}
            same: list[Point] = []
            others: dict[str, list[Point]] = {}
            get, keep = results.get, same.append
            for point in metric.points:
                labels = point[0]
                if labelled:  # the store's worker label, seen by the rules as at exposition
                    labels = with_label(labels, WORKER_LABEL, metric.worker)
                result = get(labels)
                if result is None:
                    result = self._relabel(name, kind, labels, collided, store)
                    get = self._results.setdefault((name, kind), {}).get
                new_name, new_labels = result
                if new_name is None:
                    removed += 1
                    if new_labels:
                        counts[new_labels] = counts.get(new_labels, 0) + 1
                    continue
                if labelled or new_labels != labels:  # built as _replace builds it
                    point = _new(point.__class__, (new_labels, *point[1:]))
                if new_name == name:
                    keep(point)
                else:
                    others.setdefault(new_name, []).append(point)
            if same:
                out.append(replace(metric, points=same, worker_labelled=labelled))
            for new_name, points in others.items():
                held = store.families.get(new_name)
                if held is not None and held.descriptor.kind is not d.kind:
                    counts[COLLISION] = counts.get(COLLISION, 0) + len(points)
                    removed += len(points)  # a renamed family on another type's name
                    continue
                renamed = replace(d, name=new_name)
                out.append(
                    replace(metric, descriptor=renamed, points=points, worker_labelled=labelled)
                )
        if collided:  # points relabelled earlier in this batch into a collided series
            removed += _without(out, set(collided), counts)
        if self._forgotten:
            counts[COLLISION] = counts.get(COLLISION, 0) + self._forgotten
            self._forgotten = 0
        batch.metrics[:] = [m for m in out if m.points]
        if counts and self.dropped is not None:
            for reason, count in counts.items():
                self.dropped.add(count, {"reason": reason})
        return removed

    def _family(self, name: str, kind: str) -> Result:
        verdict = self._families.get((name, kind))
        if verdict is None:
            if len(self._families) >= MAX_REMEMBERED:
                self._families.clear()
            verdict = self._families[(name, kind)] = relabel_series(self.chain, name, kind, {})
        return verdict

    def _relabel(
        self,
        name: str,
        kind: str,
        labels: str,
        collided: list[tuple[str, str, str]],
        store: MetricStore,
    ) -> Result:
        """A new label set's result, remembered; a second label set that becomes the
        same series makes both `COLLISION` (the stored one is forgotten)."""
        if self._remembered >= MAX_REMEMBERED:
            self._results.clear()
            self._plain.clear()
            self._owners.clear()
            self._remembered = 0
        result = relabel_series(self.chain, name, kind, parse_labels(labels), labels)
        new_name, new_labels = result
        if new_name is not None:
            key = (new_name, kind, new_labels)
            owner = self._owners.setdefault(key, (name, labels))
            if owner != (name, labels):
                self._results.setdefault((owner[0], kind), {})[owner[1]] = (None, COLLISION)
                self._plain.get((owner[0], kind), {}).pop(owner[1], None)
                if store.forget(new_name, new_labels):  # stored by an earlier push
                    self._forgotten += 1
                collided.append(key)
                result = (None, COLLISION)
        self._results.setdefault((name, kind), {})[labels] = result
        if result[0] == name:  # kept in its family: the fast path's too
            self._plain.setdefault((name, kind), {})[labels] = new_labels
        self._remembered += 1
        return result


def _without(
    metrics: list[Metric], collided: set[tuple[str, str, str]], counts: dict[str, int]
) -> int:
    """Remove the points of collided series; how many went (counted as collisions)."""
    removed = 0
    for metric in metrics:
        d = metric.descriptor
        kind = d.kind.value
        kept = [p for p in metric.points if (d.name, kind, p.labels) not in collided]
        gone = len(metric.points) - len(kept)
        if gone:
            metric.points[:] = kept
            removed += gone
            counts[COLLISION] = counts.get(COLLISION, 0) + gone
    return removed
