"""The relabel chains applied to one source's families, never serving a broken family.

`Relabeller.apply` takes the families of one source of the unified view (the sidecar's
own registry, whose ``http_*`` families are the proxy's; the ingested families; one
merge target) and returns them relabelled. Each sample is relabelled as Prometheus
relabels it (``__name__`` is the sample's name: ``x_total``, ``x_bucket``), then the
samples are put back into families, refusing what would break one (counted in
``sidecar_relabel_dropped_total{reason}``):

- ``shape``: a series loses some of its samples but not all (a counter's ``_created``
  may go alone), its samples end up with different label sets or family names, a
  histogram bucket loses or changes ``le`` (a summary ``quantile``), or a sample's new
  name does not keep its suffix (``x_total`` → ``y`` for a counter);
- ``collision``: two series become one (the first one is kept), or a renamed family
  claims a name another family of the source has with another type;
- ``invalid``: a result without ``__name__``, or with a name that is not a valid
  metric or label name.

Labels starting with ``__`` other than ``__name__`` (temporary labels) are removed at
the end. A family that no rule touches is passed on as it came (a merge target's raw
text, its gzip pass-through included): `probe` decides that for a family at once, from
its sample names and, only when a rule needs them, its label names.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

from opentelemetry.metrics import Counter, Meter
from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from sidecar import extensions
from sidecar.exposition import escape_label_value, parse_labels
from sidecar.known_labels import zeroed
from sidecar.merge.rawtext import RawFamily
from sidecar.protobuf import series_natives, with_natives
from sidecar.relabel.rules import (
    NAME,
    Rule,
    is_label_name,
    is_metric_name,
    process,
    replace_target,
)

__all__ = [
    "COLLISION",
    "INVALID",
    "SHAPE",
    "Family",
    "Relabeller",
    "dropped_counter",
    "probe",
    "sample_names_of",
]

COLLISION = "collision"
SHAPE = "shape"
INVALID = "invalid"
KEEP, DROP, SLOW = "keep", "drop", "slow"
PROXY_PREFIX = "http_"  # the sidecar registry's families of the proxy (RED metrics)
_SERIES_LABEL = {"histogram": "le", "gaugehistogram": "le", "summary": "quantile"}
# sample suffixes by type; "" is the family name itself
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info", ""),  # ingest's target_info is an info family of one sample, target_info
    "stateset": ("",),
    "unknown": ("",),
}
# the merge's C run prover proves label names too, unless the pure-Python paths run
C_RUNS = extensions.enabled("sidecar.merge._runs")
if C_RUNS:
    from sidecar.merge._runs import apply_plan, split_created, take_run
_LABEL_IN_TEXT = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')
# raw families whose relabelling is remembered (each plan holds a family's lines' label
# text and results: about as much memory as the family's text)
MAX_PLANS = 4096


class Family(Protocol):
    """A family of the unified view (`sidecar.unified.RenderedFamily` or a `Metric`)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    def to_metric(self) -> Metric: ...


class Dropped(Protocol):
    """``sidecar_relabel_dropped_total{reason}`` (an OTel counter)."""

    def add(self, amount: int, attributes: dict[str, str]) -> None: ...


def dropped_counter(meter: Meter) -> Counter:
    """``sidecar_relabel_dropped_total{reason}``: series a relabel result would have broken."""
    counter = meter.create_counter(
        "sidecar.relabel.dropped",
        description="Series dropped because relabelling would break their family, by reason",
    )
    return zeroed(counter, "reason", (SHAPE, COLLISION, INVALID))  # at 0 from the start


def sample_names_of(name: str, kind: str) -> tuple[str, ...]:
    """The names a family's samples can have (a counter ``x``: ``x_total``, ``x_created``)."""
    return tuple(name + suffix for suffix in _SUFFIXES.get(kind, ("",)))


def label_names(family: Family | Metric) -> set[str]:
    """Every label name the family's samples carry (a superset for text families: any
    ``name="`` in the text counts)."""
    if isinstance(family, Metric):
        names: set[str] = set()
        for sample in family.samples:
            names.update(sample.labels)
        return names
    known = getattr(family, "label_names", None)  # a merge target's, read as it was cut
    if known is not None:
        return set(known)
    chunks = getattr(family, "chunks", None)  # a merge target's RawFamily: its sample lines
    allowed = sample_names_of(family.name, family.type)
    if chunks is None:
        out: list[str] = []
        family.render(False, out)  # type: ignore[attr-defined]
        chunks, allowed = out, ()
    found: set[str] = set()
    for chunk in chunks:
        if '="' not in chunk:
            continue
        proven = _uniform_names(chunk, allowed) if allowed else None
        found.update(proven if proven is not None else _LABEL_IN_TEXT.findall(chunk))
    return found


def _uniform_names(chunk: str, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    """The label names of a chunk of checked sample lines when every line has the first
    line's, in its order, proven as the merge proves a run: by `sidecar.merge._runs`
    (~0.02 µs a line, ASCII) or else one `re` match of the same grammar; None when not."""
    first = chunk[: chunk.find("\n")]
    brace = first.find("{")
    names = tuple(_LABEL_IN_TEXT.findall(first, brace)) if brace >= 0 else ()
    if C_RUNS and chunk.isascii():
        taken = take_run(chunk, 0, len(chunk), names, allowed, False, "")
        return names if taken is not None and taken[0] == len(chunk) else None
    return names if _uniform_re(names).fullmatch(chunk) is not None else None


@functools.lru_cache(maxsize=256)
def _uniform_re(names: tuple[str, ...]) -> re.Pattern[str]:
    """Checked sample lines whose labels are exactly ``names``, in that order."""
    value = r'"(?:[^"\\\n]|\\.)*"'
    labels = ",".join(f"{re.escape(n)}={value}" for n in names)
    braces = rf"\{{{labels}\}}" if names else ""
    return re.compile(rf"(?:[a-zA-Z_:][a-zA-Z0-9_:]*{braces} [^\n]*\n)*")


def probe(chain: Sequence[Rule], family: Family | Metric) -> str:
    """`KEEP` when no rule changes any series of the family, `DROP` when the rules drop
    every series, else `SLOW` (each sample must be relabelled).

    Each sample name is run through the chain as a series with that name and no other
    label; that is exact as long as no rule reads, writes or (by name) matches a label
    the family has: when one would, the answer is `SLOW`.
    """
    names: set[str] | None = None

    def present() -> set[str]:
        nonlocal names
        if names is None:
            names = label_names(family)
        return names

    verdicts: set[str] = set()
    for sample_name in sample_names_of(family.name, family.type):
        verdict = _probe_one(chain, sample_name, present)
        if verdict == SLOW:
            return SLOW
        verdicts.add(verdict)
    return verdicts.pop() if len(verdicts) == 1 else SLOW


def _probe_one(chain: Sequence[Rule], sample_name: str, present: _Present) -> str:
    labels = {NAME: sample_name}
    for rule in chain:
        others = rule.reads - {NAME}
        if others and not others.isdisjoint(present()):
            return SLOW
        action = rule.action
        if action == "keep":
            if not rule.matches(labels) or rule.regex.fullmatch(rule.value(labels)) is None:
                return DROP
            continue
        if not rule.matches(labels):
            continue
        if action == "drop":
            if rule.regex.fullmatch(rule.value(labels)) is not None:
                return DROP
        elif action == "replace":
            written = replace_target(rule, labels)
            if written is None:
                continue
            target, value = written
            if target == NAME or target in present():
                if labels.get(target, "") != value or target != NAME:
                    return SLOW
            elif value:
                return SLOW  # a new label on every series
        else:
            every = present() | {NAME}
            hit = [n for n in every if rule.regex.fullmatch(n) is not None]
            if (action == "labelkeep" and len(hit) != len(every)) or (
                action != "labelkeep" and hit
            ):
                return SLOW
    return KEEP


class _Present(Protocol):
    def __call__(self) -> set[str]: ...


@dataclass(slots=True)
class _Out:
    """One output family being built from relabelled series; a key two series end up
    with is a collision, and every series with it is dropped (none is the right one).
    A raw one (from a merge target's `RawFamily`) holds each series as its lines' text."""

    metric: Metric
    raw: bool = False  # each series is its output lines' text (a merge target's RawFamily)
    series: dict[SeriesKey, Any] = field(default_factory=dict)  # list[Sample] | str (raw)
    collided: dict[SeriesKey, int] = field(default_factory=dict)  # key -> its series
    # a remembered plan's output (`_Fast`): every kept series' lines as text (a text
    # counter's: its _total lines, then its _created ones), cut into ``series`` only
    # when a renamed family joins it (`cut`)
    text: tuple[str, str] | None = None
    fast: _Fast | None = None
    split: bool = False  # a counter read from text: its _created lines go after the others
    # the native parts of histogram series, by key (`sidecar.protobuf.series_natives`)
    natives: dict[SeriesKey, tuple[int | float, bytes]] = field(default_factory=dict)

    def cut(self) -> None:
        """``text`` as ``series`` (a renamed family's series are to join them)."""
        if self.text is None or self.fast is None:
            return
        lines = [line + "\n" for line in "".join(self.text).split("\n")[:-1]]
        if self.fast.perm is not None:  # back in the plan's order
            lines = [lines[at] for at in sorted(range(len(lines)), key=self.fast.perm.__getitem__)]
        bounds = itertools.accumulate(self.fast.widths, initial=0)
        texts = ["".join(lines[a:b]) for a, b in itertools.pairwise(bounds)]
        self.series = dict(zip(self.fast.keys, texts, strict=True))
        self.text = None

    def add(self, key: SeriesKey, samples: list[Sample] | str) -> None:
        """One series in, unless another has its key."""
        if key in self.series:
            self.collided[key] = self.collided.get(key, 1) + 1
        else:
            self.series[key] = samples

    def numeric(self) -> None:
        """Samples with numbers (before joining a family of prometheus_client samples)."""
        if self.raw:
            self.raw = False
            for key, text in self.series.items():
                self.series[key] = _samples_of(text)

    def finish(self, counts: dict[str, int]) -> Metric | RawFamily | None:
        """The family with its series' samples (None: none left); collisions counted.
        From a raw family, a raw family again: its lines written as text, not re-encoded."""
        if self.collided:
            counts[COLLISION] = counts.get(COLLISION, 0) + sum(self.collided.values())
        kept: list[Any]
        if self.text is not None:  # (collided series already left out)
            kept = [self.text] if any(self.text) else []
        elif self.collided:
            kept = [v for key, v in self.series.items() if key not in self.collided]
        else:
            kept = list(self.series.values())
        if not kept:
            return None
        metric = self.metric
        if not self.raw:
            metric.samples = [sample for series in kept for sample in series]
            if self.natives:  # (a collided series' part goes with it)
                parts = {k: v for k, v in self.natives.items() if k not in self.collided}
                with_natives(metric, parts)
            return metric
        family = RawFamily(metric.name, metric.type, metric.documentation, metric.unit)
        if self.text is not None:
            texts = self.text
        elif self.split:  # as the family came: _total lines, then _created ones
            texts = _split_counter("".join(kept), metric.name + "_created")
        else:
            texts = ("".join(kept), "")
        family.chunks = [text for text in texts if text]
        if self.split:
            family.split = 1 if texts[0] else 0
        return family


def _split_counter(text: str, created: str) -> tuple[str, str]:
    """A counter's lines without and with the sample name ``created``, each in order."""
    if C_RUNS and text.isascii():
        return split_created(text, created)
    starts = (created + "{", created + " ")
    lines = [line + "\n" for line in text.split("\n")[:-1]]  # (not splitlines: \x1c ...)
    return (
        "".join(line for line in lines if not line.startswith(starts)),
        "".join(line for line in lines if line.startswith(starts)),
    )


SeriesKey = frozenset[tuple[str, str]]
_Memo = tuple[str, str, str, str, bool]  # source, family name and type, first line, format


def _prefix(name: str, labels: dict[str, str]) -> str:
    """A sample line up to the space before its value: ``name{labels}``."""
    if not labels:
        return name
    text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return f"{name}{{{text}}}"


def _samples_of(text: str) -> list[Sample]:
    """A raw series' lines as samples with numbers."""
    out = []
    for line in text.split("\n")[:-1]:
        prefix, _, value = line.rpartition(" ")
        name, labels = _cut(prefix)
        out.append(Sample(name, parse_labels(labels), float(value)))
    return out


def _cut(prefix: str) -> tuple[str, str]:
    """``name{labels}`` as its name and label text."""
    brace = prefix.find("{")
    return (prefix, "") if brace < 0 else (prefix[:brace], prefix[brace + 1 : -1])


def _series_key(labels: dict[str, str], skip: str | None) -> SeriesKey:
    return frozenset(item for item in labels.items() if item[0] != skip)


@dataclass(slots=True)
class Relabeller:
    """The compiled ``relabel:`` rules, by source; counts what it refuses."""

    rules: tuple[Rule, ...]
    dropped: Dropped | Counter | None = None
    _chains: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    # merge targets' raw families relabelled, by source, family, first line (two
    # targets' families of one name apart) and format (a text counter's lines come in
    # another order); a new rule set is a new Relabeller
    _plans: dict[_Memo, _RawPlan] = field(default_factory=dict)
    _generation: int = 0
    # the other families' (the sidecar's own, a target's delegated ones) last shape and
    # what the rules made of it, by source, name and type (`_by_shape`)
    _shapes: dict[tuple[str, str, str], _Shaped] = field(default_factory=dict)
    remember: bool = True  # False: every raw family relabelled anew (the tests' reference)

    def uncounted(self) -> Relabeller:
        """The same rules, counting nothing (a second reading of what a scrape counts)."""
        return Relabeller(self.rules, remember=self.remember)

    def chain(self, source: str) -> tuple[Rule, ...]:
        """The rules that apply to ``source`` (``proxy``, ``ingest``, ``merge``, ``sidecar``)."""
        chain = self._chains.get(source)
        if chain is None:
            chain = self._chains[source] = tuple(
                r for r in self.rules if r.source is None or r.source == source
            )
        return chain

    def touches(self, source: str) -> bool:
        """Some rule applies to ``source`` (for the sidecar registry: or to the proxy's)."""
        return bool(self.chain(source)) or (source == "sidecar" and bool(self.chain("proxy")))

    def apply(self, families: Iterable[Family | Metric], source: str) -> list[Family | Metric]:
        """The source's families relabelled (see the module doc); refusals are counted."""
        counts: dict[str, int] = {}
        kept: list[Family | Metric | _Out] = []
        renamed: list[_Out] = []
        for family in families:
            kind = source
            if source == "sidecar" and family.name.startswith(PROXY_PREFIX):
                kind = "proxy"
            chain = self.chain(kind)
            # an ingested family relabelled before the store (`sidecar.relabel.ingest`)
            relabelled = getattr(family, "relabelled", False)
            if chain and not relabelled and isinstance(family, RawFamily):
                remembered = self._remembered(kind, family, counts)
                if remembered is not None:  # (its plan holds: no probe needed either)
                    kept.extend(remembered)
                    continue
            if chain and not relabelled and _shapely(family):
                shaped = self._by_shape(chain, kind, family, counts)
                if isinstance(shaped, str):
                    if shaped == KEEP:
                        kept.append(family)
                    continue
                for out, is_renamed in shaped:
                    (renamed if is_renamed else kept).append(out)
                continue
            verdict = probe(chain, family) if chain and not relabelled else KEEP
            if verdict == KEEP:
                kept.append(family)
            elif verdict == SLOW:
                if isinstance(family, RawFamily):
                    outs = self._relabel_raw(chain, kind, family, counts)
                else:
                    outs = _relabel_family(chain, family, counts)
                for out, is_renamed in outs:
                    if is_renamed:
                        renamed.append(out)
                    else:
                        kept.append(out)
        result = _assemble(kept, renamed, counts)
        if self.dropped is not None:
            for reason, count in counts.items():
                self.dropped.add(count, {"reason": reason})
        return result

    def _by_shape(
        self, chain: Sequence[Rule], kind: str, metric: Metric, counts: dict[str, int]
    ) -> str | list[tuple[_Out, bool]]:
        """`KEEP`, `DROP` or the families a `Metric` makes, by what the rules made of its
        last shape (its samples' names and label sets, in order: the sidecar's own
        families keep theirs from scrape to scrape) when it still has it; else the
        family is probed and relabelled, and that remembered."""
        shape = tuple([(s.name, tuple(s.labels.items())) for s in metric.samples])
        memo = (kind, metric.name, metric.type)
        known = self._shapes.get(memo) if self.remember else None
        if known is None or known.shape != shape:
            known = _shaped(chain, metric, shape)
            if self.remember:
                if len(self._shapes) >= MAX_PLANS:  # (families come and go: start over)
                    self._shapes.clear()
                self._shapes[memo] = known
        for reason, count in known.refused.items():
            counts[reason] = counts.get(reason, 0) + count
        if known.outs is None:
            return known.verdict
        samples = metric.samples
        built = []
        for name, series, collided in known.outs:
            out = _Out(Metric(name, metric.documentation, metric.type, metric.unit))
            out.series = {
                key: [Sample(new, dict(labels), *samples[at][2:]) for new, labels, at in lines]
                for key, lines in series.items()
            }
            out.collided = dict(collided)
            built.append((out, name != metric.name))
        return built

    def _remembered(
        self, kind: str, family: RawFamily, counts: dict[str, int]
    ) -> list[_Out] | None:
        """The family by its remembered plan, in one pass (`_apply`), when there is one
        and its lines still have the plan's label sets; else None. A plan is made only
        for a family `probe` found `SLOW`, and the probe reads only label sets: when
        they are the plan's, so is its answer."""
        if not self.remember or not family.chunks:
            return None
        first = family.chunks[0]
        line = first[: first.find("\n")].rpartition(" ")[0]
        plan = self._plans.get((kind, family.name, family.type, line, family.split is None))
        fast = plan.fast if plan is not None else None
        if plan is None or fast is None:
            return None
        text = _apply(family.chunks, fast)
        if text is None:
            return None
        plan.used = self._generation = self._generation + 1
        for reason, count in plan.refused.items():
            counts[reason] = counts.get(reason, 0) + count
        if fast.spec is None:  # no series left
            return []
        metric = Metric(family.name, family.documentation, family.type, family.unit)
        split = family.split is not None
        return [_Out(metric, True, {}, dict(fast.spec.collided), text, fast, split=split)]

    def _relabel_raw(
        self, chain: Sequence[Rule], kind: str, family: RawFamily, counts: dict[str, int]
    ) -> list[tuple[_Out, bool]]:
        """A raw family relabelled by its plan: made again only when its lines' label
        sets changed, and then only their new series relabelled."""
        values: list[str] = []
        for chunk in family.chunks:
            values += _VALUE_TEXT.findall(chunk)  # C speed: no Python call a line
        if not values:
            return []
        first = family.chunks[0]
        line = first[: first.find("\n")].rpartition(" ")[0]
        memo = (kind, family.name, family.type, line, family.split is None)
        plan = self._plans.get(memo) if self.remember else None
        # the plan holds when its lines' label text with these values is the family's text
        if (
            plan is None
            or len(plan.prefixes) != len(values)
            or "".join(map(operator.add, plan.prefixes, values)) != "".join(family.chunks)
        ):
            prefixes: list[str] = []
            for chunk in family.chunks:
                prefixes += _RAW_VALUE.split(chunk)[0:-1:2]
            plan = _raw_plan(chain, family, prefixes, plan)
            plan.used = self._generation + 1  # not the least recently used
            if self.remember:
                self._remember(memo, plan)
        plan.used = self._generation = self._generation + 1
        for reason, count in plan.refused.items():
            counts[reason] = counts.get(reason, 0) + count
        return _raw_outs(family, plan, values)

    def _remember(self, memo: _Memo, plan: _RawPlan) -> None:
        """Keep ``plan``; past `MAX_PLANS` families, the half least recently used go."""
        self._plans[memo] = plan
        if len(self._plans) > MAX_PLANS:
            by_use = sorted(self._plans.items(), key=lambda item: item[1].used)
            for old, _ in by_use[: len(by_use) // 2]:
                del self._plans[old]


_Shape = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
# a relabelled series as `_Shaped` keeps it: each sample's new name, labels and input sample
_ShapedSeries = list[tuple[str, dict[str, str], int]]


@dataclass(slots=True)
class _Shaped:
    """What the rules make of a `Metric` of this shape: `KEEP` or `DROP` (``outs``
    None), or each output family's name, series (by key) and collisions; ``refused``:
    the series refused, by reason (counted at every scrape, as `_relabel_family` does)."""

    shape: _Shape
    verdict: str
    outs: list[tuple[str, dict[SeriesKey, _ShapedSeries], dict[SeriesKey, int]]] | None
    refused: dict[str, int]


def _shapely(family: Family | Metric) -> TypeGuard[Metric]:
    """A `Metric` whose relabelling `Relabeller._by_shape` may remember (not one with
    native histogram parts, which follow the series by their values)."""
    return isinstance(family, Metric) and getattr(family, "native_parts", None) is None


def _shaped(chain: Sequence[Rule], metric: Metric, shape: _Shape) -> _Shaped:
    """`_relabel_family` of ``metric`` (probed first), kept as `_Shaped`."""
    verdict = probe(chain, metric)
    if verdict != SLOW:
        return _Shaped(shape, verdict, None, {})
    skip = _SERIES_LABEL.get(metric.type)
    groups: dict[SeriesKey, list[int]] = {}
    for index, sample in enumerate(metric.samples):
        groups.setdefault(_series_key(sample.labels, skip), []).append(index)
    refused: dict[str, int] = {}
    outs: dict[str, tuple[dict[SeriesKey, _ShapedSeries], dict[SeriesKey, int]]] = {}
    for indexes in groups.values():
        samples = [metric.samples[i] for i in indexes]
        result = _series_result(chain, metric.name, samples, skip)
        if isinstance(result, str):
            refused[result] = refused.get(result, 0) + 1
        elif result is not None:
            name, key, new_samples, positions = result
            series, collided = outs.setdefault(name, ({}, {}))
            if key in series:  # as `_Out.add`
                collided[key] = collided.get(key, 1) + 1
            else:
                series[key] = [
                    (new.name, new.labels, indexes[at])
                    for new, at in zip(new_samples, positions, strict=True)
                ]
    listed = [(name, series, collided) for name, (series, collided) in outs.items()]
    return _Shaped(shape, SLOW, listed, refused)


def _relabel_family(
    chain: Sequence[Rule], family: Family | Metric, counts: dict[str, int]
) -> list[tuple[_Out, bool]]:
    """Every sample relabelled; the families they form (True: under another name)."""
    metric = _as_metric(family)
    skip = _SERIES_LABEL.get(metric.type)
    groups: dict[frozenset[tuple[str, str]], list[Sample]] = {}
    for sample in metric.samples:
        groups.setdefault(_series_key(sample.labels, skip), []).append(sample)
    outs: dict[str, _Out] = {}
    natives = series_natives(metric)  # a histogram's native parts follow its series
    for group, samples in groups.items():
        result = _series_result(chain, metric.name, samples, skip)
        if isinstance(result, str):
            counts[result] = counts.get(result, 0) + 1
        elif result is not None:
            name, key, new_samples, _ = result
            out = outs.get(name)
            if out is None:
                out = outs[name] = _Out(
                    Metric(name, metric.documentation, metric.type, metric.unit)
                )
            out.add(key, new_samples)
            if group in natives:
                out.natives[key] = natives[group]
    return [(out, name != metric.name) for name, out in outs.items()]


# a series relabelled: its family, key, samples and which input samples they are
_Result = str | tuple[str, SeriesKey, list[Sample], tuple[int, ...]] | None


def _series_result(
    chain: Sequence[Rule], family: str, samples: list[Sample], skip: str | None
) -> _Result:
    """One series relabelled: its family name, key and samples; the reason it was
    refused; or None (dropped by a rule, wholly)."""
    created = family + "_created"
    results: list[tuple[Sample, dict[str, str]]] = []
    kept: list[int] = []
    lost = 0
    for index, sample in enumerate(samples):
        labels = process(chain, {NAME: sample.name, **sample.labels})
        if labels is None:
            if sample.name != created:
                lost += 1
            continue
        results.append((sample, labels))
        kept.append(index)
    if not results:
        return None  # dropped by a rule, wholly
    if lost:
        return SHAPE
    family_name: str | None = None
    key: frozenset[tuple[str, str]] | None = None
    new_samples: list[Sample] = []
    for sample, labels in results:
        new_name = labels.pop(NAME, None)
        for temporary in [n for n in labels if n.startswith("__")]:
            del labels[temporary]
        if new_name is None or (new_name != sample.name and not is_metric_name(new_name)):
            return INVALID
        if not all(n in sample.labels or is_label_name(n) for n in labels):
            return INVALID
        suffix = sample.name[len(family) :]
        if not new_name.endswith(suffix) or len(new_name) == len(suffix):
            return SHAPE
        name = new_name[: len(new_name) - len(suffix)] if suffix else new_name
        if skip is not None and labels.get(skip) != sample.labels.get(skip):
            return SHAPE
        this_key = _series_key(labels, skip)
        if family_name is None:
            family_name, key = name, this_key
        elif name != family_name or this_key != key:
            return SHAPE
        new_samples.append(Sample(new_name, labels, *sample[2:]))
    assert family_name is not None
    assert key is not None
    return family_name, key, new_samples, tuple(kept)


# a raw family's sample lines split at their values: ``name{labels}``, `` value\n``, ...
_RAW_VALUE = re.compile(r"( [^ \n]*\n)")
_VALUE_TEXT = re.compile(r" [^ \n]*\n")  # each line's `` value\n`` (its last space on)


@dataclass(slots=True)
class _RawOut:
    """How one output family is made from a raw family's lines (see `_RawPlan`)."""

    name: str
    keys: list[SeriesKey] = field(default_factory=list)  # its series, in order
    collided: dict[SeriesKey, int] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # the input lines it takes, in order
    prefixes: list[str] = field(default_factory=list)  # each one's new ``name{labels}``
    widths: list[int] = field(default_factory=list)  # lines per series
    taken: set[SeriesKey] = field(default_factory=set)
    width: int = 0  # lines of every series (0: not all alike)
    whole: bool = False  # it takes every input line, in order


@dataclass(slots=True)
class _RawPlan:
    """A raw family relabelled, its values left out: valid for any scrape whose lines
    have these ``name{labels}`` in this order (merged series repeat from scrape to
    scrape). ``keys`` and ``results`` remember each line's series key and each series'
    result for the next plan; ``used``: the generation that last used it."""

    prefixes: list[str]
    outs: list[_RawOut]
    refused: dict[str, int]
    keys: dict[str, SeriesKey]
    results: dict[tuple[str, ...], _RawResult]
    used: int = 0
    fast: _Fast | None = None  # when the family keeps its name (or loses every series)


@dataclass(slots=True)
class _Fast:
    """A plan whose output is one family of the input's name (or none). ``olds`` holds
    each input line's ``name{labels}`` and ``news`` each output line's, one after the
    other (one text each, read in order: no object a line), ending at ``old_ends[i]``
    (``new_ends[k]``); output line k is the k-th of ``news`` with the value of input
    line ``order[k]`` (None: line k), collided series left out, and a counter read
    from text has its ``_created`` lines from ``split`` on (``perm``: each line's place
    in the plan's order). ``keys`` and ``widths`` (lines per series) cut them into
    series (`_Out.cut`)."""

    olds: str
    old_ends: array[int]
    order: array[int] | None
    news: str
    new_ends: array[int]
    split: int
    perm: list[int] | None
    spec: _RawOut | None  # the output family (None: no series left)
    keys: list[SeriesKey]
    widths: list[int]
    ascii: bool  # olds and news: then `sidecar.merge._runs.apply_plan` applies it


def _joined(texts: list[str]) -> tuple[str, array[int]]:
    """``texts`` as one text and where each ends in it."""
    return "".join(texts), array("q", itertools.accumulate(map(len, texts)))


def _fast(prefixes: list[str], outs: list[_RawOut], family: RawFamily) -> _Fast | None:
    """The plan's `_Fast`, when its outputs are none or one family of its name."""
    olds, old_ends = _joined(prefixes)
    if not outs:
        none = array("q")
        return _Fast(olds, old_ends, none, "", none, 0, None, None, [], [], olds.isascii())
    if len(outs) > 1 or outs[0].name != family.name:
        return None
    spec = outs[0]
    order, news, keys, widths = spec.order, spec.prefixes, spec.keys, spec.widths
    if spec.collided:  # the series another one collided with are left out
        order, news, keys, widths = [], [], [], []
        at = 0
        for key, width in zip(spec.keys, spec.widths, strict=True):
            if key not in spec.collided:
                order += spec.order[at : at + width]
                news += spec.prefixes[at : at + width]
                keys.append(key)
                widths.append(width)
            at += width
    split, perm = len(news), None
    if family.split is not None:  # _created lines last, as `_Out.finish` puts them
        created = family.name + "_created"
        later = [p == created or p.startswith(created + "{") for p in news]
        if any(later):
            perm = sorted(range(len(news)), key=later.__getitem__)  # (stable)
            split = len(news) - sum(later)
            order, news = [order[k] for k in perm], [news[k] for k in perm]
    new_text, new_ends = _joined(news)
    whole = order == list(range(len(prefixes)))
    return _Fast(
        olds,
        old_ends,
        None if whole else array("q", order),
        new_text,
        new_ends,
        split,
        perm,
        spec,
        keys,
        widths,
        olds.isascii() and new_text.isascii(),
    )


def _apply(chunks: list[str], fast: _Fast) -> tuple[str, str] | None:
    """`apply_plan` (C) when it can read them, else `_apply_plan`."""
    run = apply_plan if C_RUNS and fast.ascii and all(map(str.isascii, chunks)) else _apply_plan
    return run(chunks, fast.olds, fast.old_ends, fast.order, fast.news, fast.new_ends, fast.split)


def _apply_plan(
    chunks: list[str],
    olds: str,
    old_ends: array[int],
    order: array[int] | None,
    news: str,
    new_ends: array[int],
    split: int,
) -> tuple[str, str] | None:
    """Output line k is the k-th ``name{labels}`` of ``news`` (cut at ``new_ends``)
    with the value of line ``order[k]`` (None: line k) of ``chunks``; the output lines
    before ``split`` joined and those from it, when every line ``i`` of the chunks is
    the i-th ``name{labels}`` of ``olds`` (cut at ``old_ends``) with a value (its last
    space on); else None. `sidecar.merge._runs.apply_plan` in Python."""
    values: list[str] = []
    for chunk in chunks:
        values += _VALUE_TEXT.findall(chunk)  # C speed: no Python call a line
    if len(values) != len(old_ends):
        return None
    old_lines = map(olds.__getitem__, map(slice, [0, *old_ends], old_ends))
    if "".join(map(operator.add, old_lines, values)) != "".join(chunks):
        return None
    taken = values if order is None else map(values.__getitem__, order)
    new_lines = map(news.__getitem__, map(slice, [0, *new_ends], new_ends))
    lines = list(map(operator.add, new_lines, taken))
    return "".join(lines[:split]), "".join(lines[split:])


# a raw series relabelled, as a plan remembers it: its samples as their new
# ``name{labels}`` texts (not `Sample` objects with a dict each: ~3 times less memory)
_RawResult = str | tuple[str, SeriesKey, tuple[str, ...], tuple[int, ...]] | None


def _raw_result(result: _Result) -> _RawResult:
    if not isinstance(result, tuple):
        return result
    name, key, samples, positions = result
    return name, key, tuple(_prefix(s.name, s.labels) for s in samples), positions


def _raw_plan(
    chain: Sequence[Rule], family: RawFamily, prefixes: list[str], old: _RawPlan | None
) -> _RawPlan:
    """The plan of a raw family's lines (series and results taken from ``old`` when it
    has them: only new label sets are relabelled)."""
    skip = _SERIES_LABEL.get(family.type)
    old_keys = old.keys if old is not None else {}
    old_results = old.results if old is not None else {}
    keys: dict[str, SeriesKey] = {}
    samples: dict[str, Sample] = {}
    groups: dict[SeriesKey, list[int]] = {}
    groups_keys: dict[SeriesKey, SeriesKey] = {}
    for index, prefix in enumerate(prefixes):
        key = keys.get(prefix)
        if key is None:
            key = old_keys.get(prefix)
            if key is None:
                name, text = _cut(prefix)
                labels = parse_labels(text)
                samples[prefix] = Sample(name, labels, None)  # type: ignore[arg-type]
                key = _series_key(labels, skip)
                key = groups_keys.setdefault(key, key)  # one object for a series' lines
            keys[prefix] = key
        groups.setdefault(key, []).append(index)
    results: dict[tuple[str, ...], _RawResult] = {}
    refused: dict[str, int] = {}
    outs: dict[str, _RawOut] = {}
    for lines in groups.values():
        signature = tuple(prefixes[i] for i in lines)
        if signature in results:
            result = results[signature]
        elif signature in old_results:
            result = results[signature] = old_results[signature]
        else:
            series = []
            for prefix in signature:
                sample = samples.get(prefix)
                if sample is None:
                    name, text = _cut(prefix)
                    sample = samples[prefix] = Sample(name, parse_labels(text), None)  # type: ignore[arg-type]
                series.append(sample)
            result = results[signature] = _raw_result(
                _series_result(chain, family.name, series, skip)
            )
        if isinstance(result, str):
            refused[result] = refused.get(result, 0) + 1
            continue
        if result is None:
            continue
        name, new_key, new_prefixes, positions = result
        out = outs.get(name)
        if out is None:
            out = outs[name] = _RawOut(name)
        if new_key in out.taken:
            out.collided[new_key] = out.collided.get(new_key, 1) + 1
            continue
        out.taken.add(new_key)
        out.keys.append(new_key)
        out.order.extend(lines[i] for i in positions)
        out.prefixes.extend(new_prefixes)
        out.widths.append(len(positions))
    for out in outs.values():
        out.taken = set()  # not needed any more
        first = out.widths[0] if out.widths else 0
        out.width = first if all(w == first for w in out.widths) else 0
        out.whole = out.order == list(range(len(prefixes)))
    specs = list(outs.values())
    fast = _fast(prefixes, specs, family)
    return _RawPlan(prefixes, specs, refused, keys, results, fast=fast)


def _raw_outs(family: RawFamily, plan: _RawPlan, values: list[str]) -> list[tuple[_Out, bool]]:
    """The output families of a plan, with this scrape's values (C-speed joins)."""
    built = []
    for spec in plan.outs:
        taken = values if spec.whole else map(values.__getitem__, spec.order)
        lines = list(map(operator.add, spec.prefixes, taken))
        width = spec.width
        texts: Iterable[str]
        if width == 1:
            texts = lines
        elif width:
            texts = map("".join, zip(*[iter(lines)] * width, strict=True))
        else:
            bounds = list(itertools.accumulate(spec.widths, initial=0))
            texts = ["".join(lines[a:b]) for a, b in itertools.pairwise(bounds)]
        metric = Metric(spec.name, family.documentation, family.type, family.unit)
        out = _Out(metric, True, dict(zip(spec.keys, texts, strict=True)), dict(spec.collided))
        out.split = family.split is not None
        built.append((out, spec.name != family.name))
    return built


def _claims(name: str, kind: str) -> tuple[str, ...]:
    return (
        (name, *sample_names_of(name, kind)) if kind != "counter" else sample_names_of(name, kind)
    )


def _assemble(
    kept: list[Family | Metric | _Out], renamed: list[_Out], counts: dict[str, int]
) -> list[Family | Metric]:
    """Families under their own names first; a renamed one joins a family of the same
    name and type (series by series) or, when another type has its name, is dropped."""
    if not renamed:
        return _finished(kept, counts)
    outs: list[_Out | Family | Metric] = list(kept)
    by_key = {(_name(f), _type(f)): i for i, f in enumerate(outs)}
    claimed = {n for f in outs for n in _claims(_name(f), _type(f))}
    for new in renamed:
        metric = new.metric
        at = by_key.get((metric.name, metric.type))
        if at is None:
            names = _claims(metric.name, metric.type)
            if not claimed.isdisjoint(names):
                counts[COLLISION] = counts.get(COLLISION, 0) + len(new.series)
                continue
            claimed.update(names)
            by_key[(metric.name, metric.type)] = len(outs)
            outs.append(new)
            continue
        base = outs[at]
        into = base if isinstance(base, _Out) else _as_out(base)
        into.cut()
        outs[at] = into
        if into.raw != new.raw:  # text values beside numbers: numbers both
            into.numeric()
            new.numeric()
        for key, samples in new.series.items():
            into.add(key, samples)
        for key, count in new.collided.items():  # its own collisions go with it: ``count``
            into.collided[key] = into.collided.get(key, 1) + count - 1  # (add() saw one)
        into.natives.update(new.natives)
    return _finished(outs, counts)


def _finished(
    families: list[Family | Metric | _Out], counts: dict[str, int]
) -> list[Family | Metric]:
    """The output, the built families finished (those left without a series omitted)."""
    out: list[Family | Metric] = []
    for family in families:
        if isinstance(family, _Out):
            finished = family.finish(counts)
            if finished is not None:
                out.append(finished)
        else:
            out.append(family)
    return out


def _name(family: Family | Metric | _Out) -> str:
    return family.metric.name if isinstance(family, _Out) else family.name


def _type(family: Family | Metric | _Out) -> str:
    return family.metric.type if isinstance(family, _Out) else family.type


def _as_metric(family: Family | Metric) -> Metric:
    return family if isinstance(family, Metric) else family.to_metric()


def _as_out(family: Family | Metric) -> _Out:
    metric = _as_metric(family)
    out = _Out(Metric(metric.name, metric.documentation, metric.type, metric.unit))
    skip = _SERIES_LABEL.get(metric.type)
    for sample in metric.samples:
        out.series.setdefault(_series_key(sample.labels, skip), []).append(sample)
    out.natives = series_natives(metric)
    return out
