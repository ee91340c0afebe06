"""The unified /metrics: several sources merged into one valid exposition (design §9).

Sources in priority order — the sidecar's own registry, the ingested families, then
merge targets (fetched per scrape and added with `UnifiedCollector.with_sources`):

- families with the same name and type merge their series;
- a series whose labels a higher source already has is dropped and counted
  (``sidecar_merge_conflicts_total{kind="series"}``);
- a family whose type conflicts with a higher source's (or whose sample names collide
  with one, e.g. a gauge ``x_total`` beside a counter ``x``) is dropped and counted
  (``kind="type"``); the names a family claims are `claimed_names`: a counter claims
  ``x_total`` and ``x_created`` but not its bare name, so a gauge ``x`` beside a counter
  ``x_total`` (client_golang's ``go_memstats_alloc_bytes`` and
  ``go_memstats_alloc_bytes_total``) is no conflict. Families of one source never
  conflict with each other: a target's exposition is passed on as it wrote it;
- HELP (and unit) come from the highest source.

OpenMetrics names a counter family by its bare name, so there a counter ``x`` whose bare
name another family claims (the gauge ``x`` above) is written as it is in text, as an
``unknown`` family ``x_total`` (and a gauge ``x_created``): every sample keeps its name.

A source is anything with ``collect()`` (prometheus_client's collector protocol). A
source that also has ``families()`` (`FamilySource`, e.g. the ingest collector) hands
over families that write their own text; `UnifiedCollector.render` uses that fast
path, and only a family that has to be merged with another is turned into
prometheus_client objects.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

from aiohttp import hdrs, web
from opentelemetry.metrics import Counter
from prometheus_client.core import Metric
from prometheus_client.exposition import gzip_accepted
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from sidecar import protobuf
from sidecar.escaping import escaped, is_legacy_metric_name
from sidecar.exposition import GZIP_LEVEL, Exposition, encoded, send
from sidecar.gzipjoin import GzipMember, Part, gzip_parts, gzip_with_tail, inflated
from sidecar.negotiation import Escaping, Format, encoder_for, negotiate
from sidecar.offloop import RenderClock, off_loop, snapshot_sources, writers_first
from sidecar.sampletext import cached_lines, sample_lines

if TYPE_CHECKING:  # (sidecar.relabel reads sidecar.merge, which reads this module)
    from sidecar.relabel.families import Relabeller

__all__ = [
    "FamilySource",
    "Handler",
    "PassThroughSource",
    "RenderedFamily",
    "ScrapeSources",
    "UnifiedCollector",
    "claimed_names",
    "metrics_handler",
    "sample_names",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ScrapeSources = Callable[[web.Request], Awaitable[Sequence[Collector]]]

OPENMETRICS_TYPE = "application/openmetrics-text"
OPENMETRICS_EOF = b"# EOF\n"
CONFLICT_SERIES = "series"
CONFLICT_TYPE = "type"
COUNTER = "counter"
CLAIMS_CACHED = 1 << 16  # family names whose claimed names are kept from scrape to scrape
# lines joined and encoded at once: one join of 100,000 series' 63 MB held the GIL ~80 ms
# (rendered off the loop, the loop waits for the GIL); 4,096 lines (~1 MB) hold it ~1 ms
FLUSH_LINES = 4096

SeriesKey = frozenset[tuple[str, str]]
# family names the OpenMetrics encoder writes as they are (sample names: `sidecar.sampletext`)
_LEGACY_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").fullmatch

_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("", "_total", "_created"),
    "gauge": ("",),
    "histogram": ("", "_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("", "_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("", "_info"),
    "stateset": ("",),
    "unknown": ("",),
}
_SERIES_LABEL = {"histogram": "le", "gaugehistogram": "le", "summary": "quantile"}


class RenderedFamily(Protocol):
    """A family that writes its own exposition lines."""

    @property
    def name(self) -> str:
        """Family name as prometheus_client names it (no ``_total``)."""

    @property
    def type(self) -> str:
        """Prometheus type (``counter``, ``gauge``, ``histogram``, ``summary``, ``info``)."""

    def render(self, openmetrics: bool, out: list[str]) -> None:
        """Append HELP/TYPE and sample lines, exactly as prometheus_client would write them."""

    def to_metric(self) -> Metric:
        """The same family as a prometheus_client `Metric`."""


@runtime_checkable
class FamilySource(Protocol):
    """A source with a fast path: families that render themselves."""

    def families(self) -> Sequence[RenderedFamily]:
        """The current families, read synchronously (one consistent state)."""


@runtime_checkable
class PassThroughSource(Protocol):
    """A source that has its whole exposition as it arrived, gzipped (a merge target)."""

    def passthrough(self, openmetrics: bool) -> GzipMember | None:
        """The body and its gzip member, when the body is in that format; else None."""

    def rewritten(self) -> None:
        """Told when the answer could not end with that member as it came."""


def sample_names(name: str, kind: str) -> tuple[str, ...]:
    """Every name a family of this type claims in OpenMetrics (its family name and the
    names of its samples; what prometheus_client's OpenMetrics parser refuses twice)."""
    return tuple(name + suffix for suffix in _SUFFIXES.get(kind, ("",)))


@functools.lru_cache(maxsize=CLAIMS_CACHED)
def claimed_names(name: str, kind: str) -> tuple[str, ...]:
    """The names a family claims in the merge: `sample_names`, but a counter's bare name
    is not one (its samples and its text TYPE line are ``<name>_total``)."""
    names = sample_names(name, kind)
    return names[1:] if kind == COUNTER else names


def _series_key(labels: dict[str, str], kind: str) -> SeriesKey:
    """A series' identity: its labels without ``le``/``quantile`` and without empty values
    (Prometheus treats ``x=""`` as no label; the OTel exporter pads label sets with them)."""
    skip = _SERIES_LABEL.get(kind)
    return frozenset(item for item in labels.items() if item[0] != skip and item[1])


@dataclass(slots=True)
class _Slot:
    """One output family: the first one seen, or a merge of several."""

    first: Metric | RenderedFamily
    merged: Metric | None = None
    keys: set[SeriesKey] = field(default_factory=set)
    # the merged families with native parts, each with the series it brought (None: all)
    natives: list[tuple[Metric, set[SeriesKey] | None]] = field(default_factory=list)

    def absorb(self, family: Metric | RenderedFamily) -> int:
        """Merge a lower family's series in; returns how many series were dropped."""
        if self.merged is None:
            first = _as_metric(self.first)
            self.merged = _copy(first)
            self.keys = {key for key, _ in _by_series(self.merged)}
            self._carry(first, None)
        dropped = 0
        metric = _as_metric(family)
        added: set[SeriesKey] = set()
        for key, samples in _by_series(metric):
            if key in self.keys:
                dropped += 1
                continue
            self.keys.add(key)
            added.add(key)
            self.merged.samples.extend(samples)
        self._carry(metric, added)
        return dropped

    def _carry(self, metric: Metric, added: set[SeriesKey] | None) -> None:
        """The native parts of ``metric``'s series that the merge kept go with it."""
        if getattr(metric, "native_parts", None) is None or self.merged is None:
            return
        self.natives.append((metric, added))
        if len(self.natives) == 1:
            parts = functools.partial(_merged_natives, self.natives)
            self.merged.native_parts = protobuf.DerivedNatives(self.merged.name, parts)  # type: ignore[attr-defined]

    @property
    def output(self) -> Metric | RenderedFamily:
        """What to expose."""
        return self.merged if self.merged is not None else self.first


def _merged_natives(sources: list[tuple[Metric, set[SeriesKey] | None]]) -> protobuf.SeriesParts:
    """The native parts of a merged family: each source's, for the series it brought."""
    out: protobuf.SeriesParts = {}
    for metric, added in sources:
        for labels, part in protobuf.series_natives(metric).items():  # (empty values too)
            if added is None or frozenset(item for item in labels if item[1]) in added:
                out[labels] = part
    return out


def _as_metric(family: Metric | RenderedFamily) -> Metric:
    return family if isinstance(family, Metric) else family.to_metric()


def _text_named(counter: Metric | RenderedFamily) -> list[Metric]:
    """A counter as text names it, for OpenMetrics: an ``unknown`` family ``<name>_total``
    and, when it has them, a gauge family ``<name>_created`` (as the text format writes it)."""
    metric = _as_metric(counter)
    total = Metric(metric.name + "_total", metric.documentation, "unknown")
    created = Metric(metric.name + "_created", metric.documentation, "gauge")
    for sample in metric.samples:
        into = created if sample.name == created.name else total
        into.samples.append(sample._replace(exemplar=None))  # OpenMetrics: counters' only
    return [total, created] if created.samples else [total]


def _copy(metric: Metric) -> Metric:
    out = Metric(metric.name, metric.documentation, metric.type, metric.unit)
    out.samples = list(metric.samples)
    return out


def _by_series(metric: Metric) -> Iterator[tuple[SeriesKey, list[Sample]]]:
    groups: dict[SeriesKey, list[Sample]] = {}
    for sample in metric.samples:
        groups.setdefault(_series_key(sample.labels, metric.type), []).append(sample)
    yield from groups.items()


class _Fixed:
    """A collector over a fixed list of families (for prometheus_client's encoders)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


class UnifiedCollector:
    """Merges ``sources`` (highest priority first) into one exposition."""

    def __init__(
        self,
        sources: Sequence[Collector],
        conflicts: Counter | None = None,
        *,
        relabel: Relabeller | None = None,
        kinds: Sequence[str] | None = None,
        clock: RenderClock | None = None,
    ) -> None:
        self.sources = tuple(sources)
        self.clock = RenderClock() if clock is None else clock  # shared by its per-scrape views
        self._conflicts = conflicts
        self.relabel = relabel  # ``relabel:`` rules (swapped on reload)
        # each source's name for relabel rules' ``source`` (a snapshot keeps the originals')
        self.kinds = tuple(kinds) if kinds is not None else _kinds(self.sources)

    def with_sources(self, extra: Sequence[Collector]) -> UnifiedCollector:
        """A collector for one scrape with ``extra`` sources below these (merge targets)."""
        return UnifiedCollector(
            (*self.sources, *extra),
            self._conflicts,
            relabel=self.relabel,
            kinds=(*self.kinds, *_kinds(extra)),
            clock=self.clock,
        )

    async def render_off_loop(self, accept: str, accept_encoding: str) -> Exposition:
        """`render` in a worker thread, from a snapshot taken now on the loop
        (`sidecar.offloop`): a scrape never stalls the loop, and sees one state. A render
        that was cheap last time runs on the loop instead (`RenderClock`)."""
        render = functools.partial(self.render, accept, accept_encoding)
        if self.clock.inline(self.sources):
            return self.clock.timed(render)()
        await writers_first(self.sources)  # then no await until the snapshot is taken
        sources, gates = snapshot_sources(self.sources)
        frozen = UnifiedCollector(sources, self._conflicts, relabel=self.relabel, kinds=self.kinds)
        work = functools.partial(frozen.render, accept, accept_encoding)
        return await off_loop(gates, self.clock.timed(work))

    def _relabelled(self, source: Collector, kind: str) -> Iterable[Metric | RenderedFamily]:
        """The source's families after the ``relabel:`` rules for it (`sidecar.relabel`)."""
        families = _families_of(source)
        relabel = self.relabel
        if relabel is None or not relabel.touches(kind):
            return families
        return cast(list[Metric | RenderedFamily], relabel.apply(families, kind))

    def merged(self) -> list[Metric | RenderedFamily]:
        """The families to expose, after the merge rules; conflicts are counted."""
        return self._merge()[0]

    def _merge(self) -> tuple[list[Metric | RenderedFamily], int, set[str]]:
        """`merged`, where the families that the last source brought in begin, and every
        name claimed (`claimed_names`)."""
        claimed: set[str] = set()  # by the sources before this one
        slots: dict[tuple[str, str], _Slot] = {}
        dropped = {CONFLICT_SERIES: 0, CONFLICT_TYPE: 0}
        last_start = 0
        for source, kind in zip(self.sources, self.kinds, strict=True):
            last_start = len(slots)
            mine: set[str] = set()
            for family in self._relabelled(source, kind):
                key = (family.name, family.type)
                slot = slots.get(key)
                if slot is not None:
                    dropped[CONFLICT_SERIES] += slot.absorb(family)
                    continue
                names = claimed_names(*key)
                if not claimed.isdisjoint(names):  # a higher source has one of them
                    dropped[CONFLICT_TYPE] += 1
                    continue
                mine.update(names)
                slots[key] = _Slot(family)
            claimed |= mine
        self._count(dropped)
        return [slot.output for slot in slots.values()], last_start, claimed

    def _count(self, dropped: dict[str, int]) -> None:
        if self._conflicts is None:
            return
        for kind, count in dropped.items():
            if count:
                self._conflicts.add(count, {"kind": kind})

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's collector protocol (every family as a `Metric`)."""
        for family in self.merged():
            yield _as_metric(family)

    def render(self, accept: str, accept_encoding: str) -> Exposition:
        """Render for one scraper (format by ``Accept``, gzip by ``Accept-Encoding``).

        Same content as prometheus_client's encoders give (the golden tests' reference,
        tests/support/reference_render.py); self-rendering families are written directly
        instead of through prometheus_client's per-sample objects. When the answer ends
        with exactly the body that the last source (a merge target) sent
        gzipped, that part is sent in the target's own compression (`sidecar.gzipjoin`).
        """
        negotiated = negotiate(accept)
        encoder, content_type = encoder_for(negotiated), negotiated.content_type
        openmetrics, scheme = negotiated.openmetrics, negotiated.escaping
        utf8_labels_escaped = scheme is not Escaping.ALLOW_UTF8  # else they are sent quoted
        families, last_start, claimed = self._merge()
        if negotiated.format is Format.PROTOBUF:
            messages: list[Part] = []
            for family in families:
                messages.extend(_protobuf(family, scheme, utf8_labels_escaped))
            return _packed(messages, content_type, accept_encoding)
        chunks: list[Part] = []
        # consecutive families of one kind are written together: prometheus_client's
        # Metric objects by its encoder, self-rendering ones as one string
        pending: list[Metric] = []
        lines: list[str] = []
        tail: int | None = None  # where the last source's part of the answer begins

        def flush() -> None:
            if pending:
                chunks.append(_encode(encoder, pending, openmetrics))
                pending.clear()
            if lines:
                chunks.append("".join(lines).encode())
                lines.clear()

        for index, family in enumerate(families):
            if index == last_start:  # its part in chunks of its own, to compare
                flush()
                tail = len(chunks)
            if openmetrics and family.type == COUNTER and family.name in claimed:
                # its bare name is another family's: named as in text
                as_text: Callable[[list[str]], None] | None = getattr(
                    family, "render_text_named", None
                )
                flush()
                if as_text is not None and is_legacy_metric_name(family.name):
                    as_text(lines)  # a raw family writes itself so
                else:
                    pending.extend(escaped(m, scheme) for m in _text_named(family))
            elif (
                isinstance(family, Metric)
                or not is_legacy_metric_name(family.name)
                or (utf8_labels_escaped and getattr(family, "utf8_labels", False))
            ):
                if lines:  # (a name outside the legacy set is escaped or quoted)
                    flush()
                pending.append(escaped(_as_metric(family), scheme))
            else:
                if pending:
                    flush()
                cached = getattr(family, "parts", None)  # `sidecar.rendercache`
                pieces: list[Part] | None = cached(openmetrics) if cached is not None else None
                if pieces is not None:
                    flush()
                    chunks.extend(pieces)
                    continue
                family.render(openmetrics, lines)
                if len(lines) >= FLUSH_LINES:
                    flush()
        flush()
        if openmetrics:
            chunks.append(OPENMETRICS_EOF)
        if gzip_accepted(accept_encoding) and tail is not None:
            joined = self._passed_through(chunks, tail, openmetrics)
            if joined is not None:
                return Exposition(joined, content_type, "gzip")
        return _packed(chunks, content_type, accept_encoding)

    def _passed_through(self, chunks: list[Part], tail: int, openmetrics: bool) -> bytes | None:
        """The gzipped answer with the last source's own member as its end, when
        ``chunks[tail:]`` are byte for byte the body that member holds; else None."""
        # (an isinstance() check of a runtime_checkable Protocol costs ~50 µs in 3.11)
        passthrough = getattr(self.sources[-1], "passthrough", None) if self.sources else None
        if passthrough is None:
            return None
        member: GzipMember | None = passthrough(openmetrics)
        if member is None:
            return None
        body, at = member.body, 0
        for chunk in chunks[tail:]:
            if not isinstance(chunk, bytes) or not body.startswith(chunk, at):
                break
            at += len(chunk)
        else:
            if at == len(body):
                return gzip_with_tail(chunks[:tail], member, GZIP_LEVEL)
        rewritten = getattr(self.sources[-1], "rewritten", None)
        if rewritten is not None:  # (the scraper may stop asking it for gzip)
            rewritten()
        return None


def _packed(chunks: list[Part], content_type: str, accept_encoding: str) -> Exposition:
    """`encoded`, for chunks of which some may be compressed already (`Deflated`)."""
    if all(type(chunk) is bytes for chunk in chunks):
        return encoded(cast(list[bytes], chunks), content_type, accept_encoding)
    if gzip_accepted(accept_encoding):
        return Exposition(gzip_parts(chunks, GZIP_LEVEL), content_type, "gzip")
    return Exposition(b"".join(inflated(chunks)), content_type, None)


def _protobuf(family: Metric | RenderedFamily, scheme: Escaping, utf8_escaped: bool) -> list[Part]:
    """One family as a delimited MetricFamily (nothing for a family without series): its
    own encoder when it has one and its names need no escaping (unchanged chunks from
    the render cache, `sidecar.rendercache`), else from its `Metric`."""
    encode = getattr(family, "protobuf", None)
    if (
        encode is not None
        and is_legacy_metric_name(family.name)
        and not (utf8_escaped and getattr(family, "utf8_labels", False))
    ):
        cached = getattr(family, "protobuf_parts", None)
        pieces: list[Part] | None = cached() if cached is not None else None
        return pieces if pieces is not None else [protobuf.delimited_bytes(encode())]
    metric = escaped(_as_metric(family), scheme)
    return [protobuf.delimited_bytes(protobuf.encode_family(metric))] if metric.samples else []


def _encode(encoder: object, metrics: list[Metric], openmetrics: bool) -> bytes:
    if not metrics:
        return b""
    if openmetrics:  # each family written directly when it can be (`_openmetrics_text`)
        texts = [_openmetrics_text(metric) for metric in metrics]
        if None not in texts:
            return "".join(cast(list[str], texts)).encode()
    body: bytes = encoder(_Fixed(metrics))  # type: ignore[operator]
    return body.removesuffix(OPENMETRICS_EOF) if openmetrics else body


def _openmetrics_text(metric: Metric) -> str | None:
    """The lines prometheus_client's OpenMetrics encoder writes for ``metric`` (either
    escaping: for names in the legacy set both write them as they are), written directly:
    it escapes every sample name a character at a time, ~60 % of a cached scrape's CPU
    with 100 proxied routes. None when a name is outside the legacy set or a sample has
    an exemplar or a native histogram: the encoder writes those. The own registry's
    unchanged histogram series bring their lines from the last scrape
    (`sidecar.sampletext`)."""
    name = metric.name
    if not _LEGACY_METRIC_NAME(name):
        return None
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    head = f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n"
    if metric.unit:
        head += f"# UNIT {name} {metric.unit}\n"
    body = cached_lines(metric)
    if body is None:
        body = sample_lines(metric.samples)
    return None if body is None else head + body


def _kinds(sources: Sequence[Collector]) -> tuple[str, ...]:
    """Each source's relabel name: ``ingest``, ``merge`` (their ``relabel_source``), else
    ``sidecar`` (the own registry; its ``http_*`` families count as ``proxy``)."""
    return tuple(getattr(source, "relabel_source", "sidecar") for source in sources)


def _families_of(source: Collector) -> Iterable[Metric | RenderedFamily]:
    families = getattr(source, "families", None)  # a FamilySource (see _passed_through)
    if families is not None:
        return cast(Sequence[Metric | RenderedFamily], families())
    return source.collect()


def metrics_handler(unified: UnifiedCollector, extra: ScrapeSources | None = None) -> Handler:
    """The aiohttp ``/metrics`` handler: ``unified`` rendered for each scraper (format by
    ``Accept``, gzip by ``Accept-Encoding``), off the loop (`render_off_loop`).

    The one handler of every ``/metrics``: the sidecar's admin listener, the injection
    webhook's (a registry alone: ``UnifiedCollector([registry])``), the tests' apps.

    Args:
        unified: the sources known at start.
        extra: awaited with the request before each scrape, for lower-priority sources of
            that scrape only (the merge targets: `sidecar.merge.merge_sources`); never
            fails the scrape by itself. With none, ``unified`` is rendered as it is.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        sources = () if extra is None else await extra(request)
        collector = unified.with_sources(sources) if sources else unified
        headers = request.headers
        accept, encoding = headers.get(hdrs.ACCEPT, ""), headers.get(hdrs.ACCEPT_ENCODING, "")
        return await send(request, await collector.render_off_loop(accept, encoding))

    return handle
