"""A fast path for the common families of a target's exposition, checked against prometheus_client.

Plain counter, gauge and untyped families are kept as text (`RawFamily` renders itself for
`sidecar.unified`, in either format), their runs of sample lines proven whole by the C
extension `sidecar.merge._runs` (ASCII bodies) or one `re` match of a pattern built from
the run's first line; a run that is not proven so is checked line by line with
`_SAMPLE_RE`, and everything else goes to prometheus_client's parsers. The costs behind
this design and the differential tests that hold it to prometheus_client:
docs/merge-export.md ("How merging stays cheap").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ClassVar, cast

from prometheus_client.core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar import extensions
from sidecar.exposition import LABEL_PAIR_RE, escape_help, escape_label_value, parse_labels
from sidecar.unified import sample_names

# the C prover and whole-body scan, unless `sidecar.extensions` says the pure paths run:
# then runs are proven by `re` and bodies cut block by block (the same results)
C_RUNS = extensions.enabled("sidecar.merge._runs")
if C_RUNS:
    from sidecar.merge._runs import scan_text, split_created, take_run

__all__ = [
    "RawFamily",
    "Unsupported",
    "fold_created",
    "parse_fast",
    "parse_small",
    "with_labels",
]

parse_openmetrics = cast(
    Callable[[str], Iterable[Metric]], openmetrics_parser.text_string_to_metric_families
)

_LABEL_VALUE = r'(?:[^"\\\n]|\\[\\n"])*'
_ONE_LABEL = rf'[a-zA-Z_][a-zA-Z0-9_]*="{_LABEL_VALUE}"'
_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_VALUE = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]Inf|NaN"
# One sample line, checked whole: name, exactly a label list (or nothing), one plain value
# (no timestamp, no exemplar). Anything else is left to prometheus_client.
_SAMPLE_RE = re.compile(
    rf"({_METRIC_NAME})(?:\{{((?:{_ONE_LABEL}(?:,{_ONE_LABEL})*)?)\}})? ({_VALUE})"
)
_LABEL_NAME_RE = re.compile(rf'([a-zA-Z_][a-zA-Z0-9_]*)="{_LABEL_VALUE}"')
_NAME_RE = re.compile(_METRIC_NAME)
SIMPLE_TEXT_TYPES = frozenset({"counter", "gauge", "untyped"})
SIMPLE_OPENMETRICS_TYPES = frozenset({"counter", "gauge", "unknown"})
CREATED_OWNERS = frozenset({"counter", "histogram", "summary"})
EOF_LINE = "# EOF"
TEXT_KEYWORDS = ("HELP", "TYPE")
OPENMETRICS_KEYWORDS = ("HELP", "TYPE", "UNIT")
EXPORTED_PREFIX = "exported_"
NAME_LABEL = "__name__"
RUN_PATTERNS = 1024  # distinct label-name lists whose compiled run pattern is kept
SHORT_RUN = 256  # bytes: a shorter run of sample lines is checked line by line (cheaper)
# `parse_small`: a body read on the event loop is at most this big (~0.6 ms of C scan and
# Python families), and its families for prometheus_client's parser at most this much
SMALL_BODY = 128 * 1024
SMALL_DELEGATED = 8 * 1024

Family = Metric  # what prometheus_client hands back for delegated blocks


class Unsupported(Exception):
    """The fast path does not handle this body; prometheus_client's parser must."""


class RawFamily:
    """A counter, gauge or untyped family whose samples stay exposition text.

    ``chunks`` holds checked sample lines (``name{labels} value\\n``, configured labels
    already added), several lines to a chunk; both formats write these lines alike.
    """

    __slots__ = (
        "chunks",
        "documentation",
        "label_names",
        "name",
        "split",
        "text_header",
        "type",
        "unit",
    )

    def __init__(self, name: str, kind: str, documentation: str, unit: str) -> None:
        self.name = name
        self.type = kind
        self.documentation = documentation
        self.unit = unit
        self.chunks: list[str] = []
        # a counter read from text: chunks[:split] hold its _total lines, the rest the
        # _created ones folded in (None: from OpenMetrics, where the two alternate)
        self.split: int | None = None
        # its HELP and TYPE lines in text as the target wrote them, when `_header` would
        # write exactly these (set by the whole-body scan, which proves that)
        self.text_header: str | None = None
        # every label name its sample lines carry, read as the body was cut (the C scan
        # or `_Splitter`): `sidecar.relabel.families.probe` need not read the lines for
        # them (None: not known; set it again, or to None, when ``chunks`` change)
        self.label_names: frozenset[str] | None = None

    @property
    def lines(self) -> list[tuple[str, str, str]]:
        """Every sample as ``(sample name, label text, value text)``, read from the text."""
        out = []
        for chunk in self.chunks:
            for line in chunk.split("\n")[:-1]:
                match = _SAMPLE_RE.fullmatch(line)
                assert match is not None, line  # chunks hold checked lines only
                name, labels, value = match.groups()
                out.append((name, labels or "", value))
        return out

    def _header(self, shown: str, kind: str, openmetrics: bool) -> str:
        doc = escape_help(self.documentation, openmetrics)
        if openmetrics:
            unit = f"# UNIT {shown} {self.unit}\n" if self.unit else ""
            return f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n{unit}"
        return f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n"

    def render(self, openmetrics: bool, out: list[str]) -> None:
        """Append the family in either format, as prometheus_client lays it out."""
        if openmetrics:
            out.append(self._header(self.name, self.type, True))
            out.extend(self.chunks)
            return
        if self.type != "counter":
            kind = "untyped" if self.type == "unknown" else self.type
            out.append(self.text_header or self._header(self.name, kind, False))
            out.extend(self.chunks)
            return
        created = self.name + "_created"
        if self.split is not None:
            totals, later = self.chunks[: self.split], self.chunks[self.split :]
        else:
            totals, later = _split_created(self.chunks, created)
        out.append(self.text_header or self._header(self.name + "_total", "counter", False))
        out.extend(totals)
        if later:
            out.append(self._header(created, "gauge", False))
            out.extend(later)

    def series(self) -> int:
        """How many series (sample lines, without a counter's ``_created`` ones)."""
        if self.type != "counter":
            return sum(chunk.count("\n") for chunk in self.chunks)
        if self.split is not None:
            return sum(chunk.count("\n") for chunk in self.chunks[: self.split])
        total = self.name + "_total"
        return sum(
            ("\n" + chunk).count(f"\n{total}{{") + ("\n" + chunk).count(f"\n{total} ")
            for chunk in self.chunks
        )

    def render_text_named(self, out: list[str]) -> None:
        """A counter in OpenMetrics named as text names it (`sidecar.unified`: when another
        family has its bare name): an ``unknown`` family ``<name>_total`` and, when it has
        them, a gauge ``<name>_created``."""
        if self.split is not None:
            totals, later = self.chunks[: self.split], self.chunks[self.split :]
        else:
            totals, later = _split_created(self.chunks, self.name + "_created")
        doc = escape_help(self.documentation, openmetrics=True)
        for suffix, kind, chunks in (("_total", "unknown", totals), ("_created", "gauge", later)):
            if chunks or suffix == "_total":
                shown = self.name + suffix
                out.append(f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n")
                out.extend(chunks)

    def to_metric(self) -> Metric:
        """The same family as a prometheus_client `Metric` (for merging and conversion)."""
        metric = Metric(self.name, self.documentation, self.type, self.unit)
        for name, labels, value in self.lines:
            metric.add_sample(name, parse_labels(labels), float(value))
        return metric


def _split_created(chunks: list[str], created: str) -> tuple[list[str], list[str]]:
    """A counter's sample lines without and with the ``<created>`` name (text has two families)."""
    totals: list[str] = []
    later: list[str] = []
    for chunk in chunks:
        kept, moved = (
            split_created(chunk, created)
            if _Splitter.use_c and chunk.isascii()
            else _split_lines(chunk, created)
        )
        if kept:
            totals.append(kept)
        if moved:
            later.append(moved)
    return totals, later


def _split_lines(chunk: str, created: str) -> tuple[str, str]:
    """`split_created` (C, for ASCII chunks) for any chunk."""
    starts = (created + "{", created + " ")
    lines = chunk.split("\n")
    lines.pop()  # the chunk ends with "\n"
    kept = "".join(line + "\n" for line in lines if not line.startswith(starts))
    moved = "".join(line + "\n" for line in lines if line.startswith(starts))
    return kept, moved


def _line(name: str, labels: str, value: str) -> str:
    return f"{name}{{{labels}}} {value}\n" if labels else f"{name} {value}\n"


class _Labeller:
    """Adds the configured labels to a label text (a clashing scraped one → ``exported_``)."""

    def __init__(self, extra: Mapping[str, str]) -> None:
        self.extra = dict(extra)
        self.suffix = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in self.extra.items())

    def __call__(self, labels: str, names: list[str]) -> str:
        if not self.extra:
            return labels
        if not any(n in self.extra for n in names):
            return f"{labels},{self.suffix}" if labels else self.suffix
        pairs = []
        for match in LABEL_PAIR_RE.finditer(labels):  # (checked: legacy names only)
            name = match.group(1)
            prefix = EXPORTED_PREFIX if name in self.extra else ""
            pairs.append(f'{prefix}{name}="{match.group(3)}"')
        renamed = [EXPORTED_PREFIX + n if n in self.extra else n for n in names]
        if len({*renamed, *self.extra}) != len(renamed) + len(self.extra):
            raise Unsupported("exported_ label clash")  # e.g. x and exported_x both scraped
        return ",".join([*pairs, self.suffix])

    def names(self, names: Sequence[str]) -> tuple[str, ...]:
        """The label names of a line that had ``names``, once the configured ones are added."""
        if not self.extra:
            return tuple(names)
        return (*(EXPORTED_PREFIX + n if n in self.extra else n for n in names), *self.extra)

    def run(self, text: str, names: Sequence[str]) -> str | None:
        """Configured labels added to a proven run whose lines all carry label ``names``
        (none of them a configured one); None when that needs the line-by-line way
        (escapes, a label value holding the end of a label list)."""
        if not self.extra:
            return text
        if "\\" in text:
            return None
        lines = text.count("\n") + (not text.endswith("\n"))
        if names:  # '"} ' ends each label list, and a value such as "} " holds it too
            if text.count('"} ') != lines:
                return None
            return text.replace('"} ', f'",{self.suffix}}} ')
        return text.replace(" ", f"{{{self.suffix}}} ")  # "name value": one space a line


def _label_names(labels: str) -> list[str]:
    """The label names of a (checked) label text; `Unsupported` when one repeats."""
    if not labels:
        return []
    names: list[str] = _LABEL_NAME_RE.findall(labels)
    if len(set(names)) != len(names) or NAME_LABEL in names:
        raise Unsupported("label repeated")
    return names


# The same grammar as _SAMPLE_RE for a run of whole lines, written for speed in `re`: the
# label value loop unrolled and every repetition possessive (each one is followed by a
# character it cannot match, so giving anything back could never lead to a match).
# `sidecar/merge/_runs.c` proves the same grammar for ASCII bodies; this spelling is for
# the others (and is the reference the tests hold the C scanner to).
_RUN_LABEL_VALUE = r'[^"\\\n]*+(?:\\[\\n"][^"\\\n]*+)*+'
_RUN_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*+"
_RUN_VALUE = r"[-+]?+(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][-+]?+[0-9]++)?+|[-+]Inf|NaN"
# OpenMetrics counters: a _total value that is neither negative nor NaN (prometheus_client
# refuses those); "-0" is not proven so and goes line by line, where float() decides.
_RUN_NONNEGATIVE = r"\+?+(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][-+]?+[0-9]++)?+|\+Inf"


def _run_pattern(names: tuple[str, ...], counter: bool) -> str:
    """Any number of whole sample lines whose labels are exactly ``names`` in that order;
    ``counter``: a ``*_total`` line's value is not negative or NaN."""
    labels = ",".join(f'{re.escape(n)}="{_RUN_LABEL_VALUE}"' for n in names)
    braces = rf"\{{{labels}\}}" if names else ""
    if not counter:
        line = rf"{_RUN_NAME}{braces} (?:{_RUN_VALUE})"
    else:  # the counts in _Splitter._run already tie every name to _total or _created
        line = (
            rf"(?:{_METRIC_NAME}_total{braces} (?:{_RUN_NONNEGATIVE})"
            rf"|{_METRIC_NAME}_created{braces} (?:{_RUN_VALUE}))"
        )
    return rf"(?:{line}\n)*+"


@functools.lru_cache(maxsize=RUN_PATTERNS)
def _run_re(names: tuple[str, ...], counter: bool) -> re.Pattern[str]:
    return re.compile(_run_pattern(names, counter))


class _Block:
    """The lines of one family: header facts, then either raw samples or delegated text."""

    def __init__(self, name: str, kind: str | None = None) -> None:
        self.name = name
        self.kind = kind
        self.help: str | None = None
        self.unit = ""
        self.text: list[str] = []  # every line of a delegated block
        self.chunks: list[str] = []  # checked sample lines of a raw block, labels added
        self.label_names: set[str] = set()  # every label name of those lines
        self.sampled = False
        self.allowed: tuple[str, ...] | None = None  # sample names, known at the first sample
        self.delegated = False

    def is_simple(self, openmetrics: bool) -> bool:
        """Whether the fast path keeps this family as text."""
        if openmetrics:
            return (self.kind or "unknown") in SIMPLE_OPENMETRICS_TYPES
        return (self.kind or "untyped") in SIMPLE_TEXT_TYPES


def _sample_names(block: _Block, openmetrics: bool) -> tuple[str, ...]:
    if not block.is_simple(openmetrics):
        return sample_names(block.name, block.kind or "unknown")
    if block.kind == "counter" and openmetrics:
        return (block.name + "_total", block.name + "_created")
    return (block.name,)  # text counters: the TYPE line names the _total sample itself


class _Splitter:
    """Cuts a body into family blocks, in order; `Unsupported` for anything unusual."""

    use_c: ClassVar[bool] = C_RUNS  # runs of an ASCII body are proven in C (tests: both ways)
    # a text body without configured labels is first cut whole in C (`_scan_text`);
    # the tests of this block-by-block way switch that off
    whole_body: ClassVar[bool] = C_RUNS

    def __init__(self, body: str, openmetrics: bool, labeller: _Labeller) -> None:
        self.body = body
        self.ascii = self.use_c and body.isascii()  # str.isascii() is O(1) in CPython
        self.openmetrics = openmetrics
        self.labeller = labeller
        self.blocks: list[_Block] = []
        self.seen: set[str] = set()
        self.current: _Block | None = None

    def split(self) -> list[_Block]:
        body = self.body
        end = len(body)
        if self.openmetrics:  # the last line must be "# EOF" (prometheus_client: no blank after)
            if end and body[end - 1] == "\n":
                end -= 1
            end -= len(EOF_LINE)
            if not body.startswith(EOF_LINE, end) or (end and body[end - 1] != "\n"):
                raise Unsupported("no # EOF")
        pos = 0
        while pos < end:
            if body[pos] == "#":
                stop = body.find("\n", pos, end)
                stop = end if stop < 0 else stop
                self.current = _comment(
                    body[pos:stop], self.current, self.blocks, self.seen, self.openmetrics
                )
                pos = stop + 1
                continue
            near = body.find("\n#", pos, min(end, pos + SHORT_RUN)) + 1
            if not near and pos + SHORT_RUN >= end:
                near = end
            stop = -1 if near else self._run(pos, end)
            if stop < 0:  # line by line: a short run, or one that _run did not prove
                stop = near or body.find("\n#", pos, end) + 1 or end
                self._lines(body[pos:stop])
            pos = stop
        if self.openmetrics:
            _check_clashes(self.blocks)
        return self.blocks

    def _run(self, start: int, limit: int) -> int:
        """Take the sample lines from ``start`` up to the next comment line (or ``limit``)
        whole if they are proven: every line names the current family, has the first
        line's label names and is well-formed. Returns where they end; -1: line by line."""
        block, body = self.current, self.body
        if block is None or block.delegated or start == 0:
            return -1
        first = body.find("\n", start, limit)
        match = _SAMPLE_RE.fullmatch(body, start, first) if first > 0 else None
        if match is None or not _belongs(block, match.group(1), self.openmetrics):
            return -1
        if block.delegated or match.group(2) == "":  # "{}" is left to the line-by-line way
            return -1
        names = tuple(_label_names(match.group(2) or ""))
        if any(n in self.labeller.extra for n in names):
            return -1  # the line-by-line way renames it to exported_<name>
        assert block.allowed is not None  # set by _belongs
        counter = self._counter(block)
        if self.ascii:  # proven in C: sidecar/merge/_runs.c
            taken = take_run(
                body, start, limit, names, block.allowed, counter, self.labeller.suffix
            )
        else:
            taken = self._take_by_re(start, limit, names, block.allowed, counter)
        if taken is None:
            return -1
        end, text = taken
        block.chunks.append(text)
        block.label_names.update(self.labeller.names(names))
        block.sampled = True
        return end

    def _take_by_re(
        self,
        start: int,
        limit: int,
        names: tuple[str, ...],
        allowed: tuple[str, ...],
        counter: bool,
    ) -> tuple[int, str] | None:
        """`take_run` for any body: where the run ends and its lines with the configured
        labels added (None: line by line), by one `re` match of `_run_pattern`, name
        counts and `_Labeller.run`."""
        body = self.body
        match = _run_re(names, counter).match(body, start, limit)
        end = match.end() if match is not None else start  # it takes "" at least
        if end < limit and body[end] != "#":
            return None  # a line the pattern does not take: the line-by-line way says why
        after = "{" if names else " "
        owned = sum(body.count(f"\n{n}{after}", start - 1, end) for n in allowed)
        if owned != body.count("\n", start, end):
            return None
        text = self.labeller.run(body[start:end], names)
        return None if text is None else (end, text)

    def _counter(self, block: _Block) -> bool:
        """OpenMetrics counters: their ``_total`` samples must not be negative or NaN."""
        return self.openmetrics and block.kind == "counter"

    def _lines(self, text: str) -> None:
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        openmetrics, labeller, current = self.openmetrics, self.labeller, self.current
        for line in lines:
            if not line:
                if openmetrics:
                    raise Unsupported("blank line")
                continue
            if not openmetrics and line != line.strip():
                raise Unsupported("whitespace")  # the text parser strips every line
            match = _SAMPLE_RE.fullmatch(line)
            if match is None:
                raise Unsupported("sample line")
            name, labels, value = match.groups()
            if current is None or not _belongs(current, name, openmetrics):
                current = self.current = _new_block(name, None, self.blocks, self.seen)
            current.sampled = True
            if current.delegated:
                current.text.append(line)
                continue
            if (
                openmetrics
                and current.kind == "counter"
                and name[-6:] == "_total"
                and not float(value) >= 0
            ):
                raise Unsupported("negative or NaN counter")  # prometheus_client refuses it
            labels = labels or ""
            names = _label_names(labels)
            current.chunks.append(_line(name, labeller(labels, names), value))
            current.label_names.update(labeller.names(names))


# prometheus_client's OpenMetrics parser: the names each family type claims; a family
# whose name or any of these clashes with an earlier family's is refused.
def _check_clashes(blocks: Iterable[_Block]) -> None:
    """`Unsupported` when prometheus_client would refuse a clashing OpenMetrics name."""
    claimed: set[str] = set()
    for block in blocks:
        for name in sample_names(block.name, block.kind or "unknown"):
            if name in claimed:
                raise Unsupported("clashing name")
            claimed.add(name)


def _belongs(block: _Block, name: str, openmetrics: bool) -> bool:
    if block.allowed is None:
        block.allowed = _sample_names(block, openmetrics)
        block.delegated = not block.is_simple(openmetrics)
    return name in block.allowed


def _new_block(name: str, kind: str | None, blocks: list[_Block], seen: set[str]) -> _Block:
    if name in seen:
        raise Unsupported("family repeated")
    seen.add(name)
    block = _Block(name, kind)
    blocks.append(block)
    return block


def _comment(
    line: str, current: _Block | None, blocks: list[_Block], seen: set[str], openmetrics: bool
) -> _Block | None:
    parts = line.split(" ", 3)
    keyword = parts[1] if len(parts) > 1 and parts[0] == "#" else ""
    if keyword not in (OPENMETRICS_KEYWORDS if openmetrics else TEXT_KEYWORDS):
        if openmetrics or any(k in line for k in TEXT_KEYWORDS):
            # prometheus_client's text parser splits at any whitespace after any "#..."
            # word: "#  HELP", "#\tTYPE", "#x TYPE" are metadata to it
            raise Unsupported("comment")
        return current  # text format: other comments are ignored
    if len(parts) < (4 if openmetrics else 3) or not _NAME_RE.fullmatch(parts[2]):
        raise Unsupported("metadata line")  # OpenMetrics: "# HELP a" is invalid, "# HELP a " not
    name, rest = parts[2], parts[3] if len(parts) > 3 else ""
    if keyword == "TYPE" and not openmetrics and rest == "counter" and name[-6:] != "_total":
        raise Unsupported("text counter without _total")
    if current is None or current.name != name or current.sampled:
        current = _new_block(name, None, blocks, seen)
    current.text.append(line)
    if keyword == "HELP":
        if "\\" in rest or rest != rest.strip() or current.help is not None:
            raise Unsupported("HELP")
        current.help = rest
    elif keyword == "TYPE":
        if current.kind is not None:
            raise Unsupported("TYPE twice")
        current.kind = rest
    else:
        if current.unit or not rest or not name.endswith("_" + rest):
            raise Unsupported("UNIT")
        current.unit = rest
    return current


def parse_fast(body: str, openmetrics: bool, labels: Mapping[str, str]) -> list[RawFamily | Family]:
    """Parse ``body``; simple families as `RawFamily`, the others by prometheus_client.

    Raises:
        Unsupported: the body needs prometheus_client's parser as a whole.
        ValueError: a delegated block is invalid (prometheus_client's verdict).
    """
    if not openmetrics and not labels and _Splitter.whole_body and body.isascii():
        scanned = _scan_text(body)
        if scanned is not None:
            return scanned
    labeller = _Labeller(labels)
    out: list[RawFamily | Family] = []
    for block in _Splitter(body, openmetrics, labeller).split():
        if block.is_simple(openmetrics):
            out.append(_raw_family(block, openmetrics))
        else:
            out.extend(_delegate(block, openmetrics, labeller))
    return out if openmetrics else fold_created(out)


def parse_small(
    body: str, openmetrics: bool, labels: Mapping[str, str]
) -> list[RawFamily | Family] | None:
    """`parse_fast` when that is cheap enough to do on the event loop (a worker thread's
    two hand-overs cost more, and on a busy machine much more): a small text body
    without configured labels that the whole-body scan takes, with few bytes for
    prometheus_client's parser (node_exporter: ~57 kB, 0.3 ms). None: use `parse_fast`.

    Raises:
        ValueError: a delegated block is invalid (prometheus_client's verdict).
    """
    if openmetrics or labels or len(body) > SMALL_BODY or not body.isascii():
        return None
    if not _Splitter.whole_body:
        return None
    return _scan_text(body, SMALL_DELEGATED)


def _scan_text(body: str, delegated: int | None = None) -> list[RawFamily | Family] | None:
    """`parse_fast` for a text body without configured labels, in one C pass
    (`sidecar.merge._runs.scan_text`: the layout client_golang and prometheus_client
    write); None when the body is laid out otherwise, or (with ``delegated``) when
    more bytes than that would go to prometheus_client's parser."""
    scanned = scan_text(body)
    names = {name for name, *_ in scanned} if scanned is not None else set()
    if scanned is None or len(names) != len(scanned):
        return None  # a family repeated: the block-by-block way refuses it
    if delegated is not None:
        heavy = sum(
            end - header
            for _, kind, _, header, _, end, _ in scanned
            if kind not in SIMPLE_TEXT_TYPES
        )
        if heavy > delegated:
            return None
    out: list[RawFamily | Family] = []
    for name, kind, help_text, header, start, end, label_names in scanned:
        if kind not in SIMPLE_TEXT_TYPES:
            out.extend(parse_text(body[header:end]))
            continue
        counter = kind == "counter"
        family = RawFamily(
            name[: -len("_total")] if counter else name,
            "unknown" if kind == "untyped" else kind,
            help_text or "",
            "",
        )
        if end > start:
            family.chunks.append(body[start:end])
        if label_names is not None:
            family.label_names = frozenset(label_names)
        if help_text is not None:  # "# HELP name text\n# TYPE name kind\n", as written
            family.text_header = body[header:start]
        if counter:
            family.split = len(family.chunks)
        out.append(family)
    # a gauge x_created after a counter, histogram or summary x goes into x (rare: not
    # client_golang's; prometheus_client's text writes one for every counter)
    created = any(name.endswith("_created") for name in names)
    return fold_created(out) if created else out


def _raw_family(block: _Block, openmetrics: bool) -> RawFamily:
    kind = block.kind or "untyped"
    kind = "unknown" if kind == "untyped" else kind
    name = block.name
    if kind == "counter" and not openmetrics:
        name = name[: -len("_total")]
    family = RawFamily(name, kind, block.help or "", block.unit if openmetrics else "")
    family.chunks = block.chunks
    family.label_names = frozenset(block.label_names)
    if kind == "counter" and not openmetrics:
        family.split = len(family.chunks)  # all _total lines (the TYPE line names them)
    return family


def _delegate(block: _Block, openmetrics: bool, labeller: _Labeller) -> list[Family]:
    text = "\n".join(block.text) + "\n"
    families = list(parse_openmetrics(text + EOF_LINE + "\n") if openmetrics else parse_text(text))
    if labeller.extra:
        for family in families:
            family.samples = [
                s._replace(labels=with_labels(s.labels, labeller.extra)) for s in family.samples
            ]
    return families


def with_labels(labels: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``labels`` plus ``extra``; a replaced label is kept as ``exported_<name>``."""
    merged = dict(labels)
    for name, value in extra.items():
        if name in merged:
            merged[EXPORTED_PREFIX + name] = merged[name]
        merged[name] = value
    return merged


def fold_created(families: Sequence[RawFamily | Family]) -> list[RawFamily | Family]:
    """Text has no ``_created`` samples: gauge ``x_created`` after counter ``x`` goes into ``x``."""
    out: list[RawFamily | Family] = []
    owners: dict[str, RawFamily | Family] = {}
    for family in families:
        owner = owners.get(family.name) if family.type in ("gauge", "unknown") else None
        if owner is not None:
            _absorb(owner, family)
            continue
        if family.type in CREATED_OWNERS:
            owners[family.name + "_created"] = family
        out.append(family)
    return out


def _absorb(owner: RawFamily | Family, created: RawFamily | Family) -> None:
    if isinstance(owner, RawFamily) and isinstance(created, RawFamily):
        owner.chunks.extend(created.chunks)
        mine, theirs = owner.label_names, created.label_names
        owner.label_names = mine | theirs if mine is not None and theirs is not None else None
        return
    samples = created.to_metric().samples if isinstance(created, RawFamily) else created.samples
    if isinstance(owner, RawFamily):
        raise Unsupported("_created of a delegated family")
    owner.samples.extend(samples)
