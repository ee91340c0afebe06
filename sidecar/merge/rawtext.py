"""A fast path for the common families of a target's exposition, checked against prometheus_client.

prometheus_client's parsers cost ~20 µs a sample and its encoders ~7 µs more to write
each sample back out: for an app with 20,000 series that is most of a scrape. Most of
an app's lines are plain counter, gauge and untyped samples (``name{labels} value``),
so those families are kept as text: each sample line is checked whole by one regular
expression (name, an exact label list, a plain value) and written back as it came
(`RawFamily` renders itself for `sidecar.unified`, in either format). Everything else
goes to prometheus_client's parsers, block by block (histograms, summaries, info,
stateset, ...) or — for anything the fast path does not recognise exactly (timestamps,
exemplars, escapes in HELP, a counter without ``_total``, repeated families, comments
OpenMetrics does not allow) — the whole body, so prometheus_client decides about it.

A differential test parses many generated expositions both ways and requires the same
families, HELP, types, samples and values (``tests/merge/test_rawtext.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import cast

from prometheus_client.core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.exposition import escape_label_value, unescape_label_value
from sidecar.unified import sample_names

__all__ = [
    "RawFamily",
    "Unsupported",
    "fold_created",
    "label_dict",
    "parse_fast",
    "with_labels",
]

parse_openmetrics = cast(
    Callable[[str], Iterable[Metric]], openmetrics_parser.text_string_to_metric_families
)

_ONE_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\n"])*"'
_VALUE = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]Inf|NaN"
# One sample line, checked whole: name, exactly a label list (or nothing), one plain value
# (no timestamp, no exemplar). Anything else is left to prometheus_client.
_SAMPLE_RE = re.compile(
    rf"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{((?:{_ONE_LABEL}(?:,{_ONE_LABEL})*)?)\}})? ({_VALUE})"
)
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\n"])*)"(?:,|$)')
_LABEL_NAME_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\\n]|\\[\\n"])*"')
_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
SIMPLE_TEXT_TYPES = frozenset({"counter", "gauge", "untyped"})
SIMPLE_OPENMETRICS_TYPES = frozenset({"counter", "gauge", "unknown"})
CREATED_OWNERS = frozenset({"counter", "histogram", "summary"})
EOF_LINE = "# EOF"
TEXT_KEYWORDS = ("HELP", "TYPE")
OPENMETRICS_KEYWORDS = ("HELP", "TYPE", "UNIT")
EXPORTED_PREFIX = "exported_"

Family = Metric  # what prometheus_client hands back for delegated blocks


class Unsupported(Exception):
    """The fast path does not handle this body; prometheus_client's parser must."""


def label_dict(labels: str) -> dict[str, str]:
    """A (checked) label text as a dict of unescaped values."""
    return {name: unescape_label_value(value) for name, value in _LABEL_RE.findall(labels)}


class RawFamily:
    """A counter, gauge or untyped family whose samples stay exposition text.

    ``lines`` holds ``(sample name, label text, value text)``; label text is what sat
    between the braces (configured labels already added), value text is checked.
    """

    __slots__ = ("documentation", "lines", "name", "type", "unit")

    def __init__(self, name: str, kind: str, documentation: str, unit: str) -> None:
        self.name = name
        self.type = kind
        self.documentation = documentation
        self.unit = unit
        self.lines: list[tuple[str, str, str]] = []

    def _header(self, shown: str, kind: str, openmetrics: bool) -> str:
        doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        if openmetrics:
            doc = doc.replace('"', r"\"")
            unit = f"# UNIT {shown} {self.unit}\n" if self.unit else ""
            return f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n{unit}"
        return f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n"

    def render(self, openmetrics: bool, out: list[str]) -> None:
        """Append the family in either format, as prometheus_client lays it out."""
        if openmetrics:
            out.append(self._header(self.name, self.type, True))
            out.extend(_line(n, labels, v) for n, labels, v in self.lines)
            return
        if self.type != "counter":
            kind = "untyped" if self.type == "unknown" else self.type
            out.append(self._header(self.name, kind, False))
            out.extend(_line(n, labels, v) for n, labels, v in self.lines)
            return
        created = self.name + "_created"
        out.append(self._header(self.name + "_total", "counter", False))
        out.extend(_line(n, labels, v) for n, labels, v in self.lines if n != created)
        later = [_line(n, labels, v) for n, labels, v in self.lines if n == created]
        if later:
            out.append(self._header(created, "gauge", False))
            out.extend(later)

    def to_metric(self) -> Metric:
        """The same family as a prometheus_client `Metric` (for merging and conversion)."""
        metric = Metric(self.name, self.documentation, self.type, self.unit)
        for name, labels, value in self.lines:
            metric.add_sample(name, label_dict(labels), float(value))
        return metric


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
        for match in _LABEL_RE.finditer(labels):
            name = match.group(1)
            prefix = EXPORTED_PREFIX if name in self.extra else ""
            pairs.append(f'{prefix}{name}="{match.group(2)}"')
        return ",".join([*pairs, self.suffix])


def _label_names(labels: str) -> list[str]:
    """The label names of a (checked) label text; `Unsupported` when one repeats."""
    if not labels:
        return []
    names: list[str] = _LABEL_NAME_RE.findall(labels)
    if len(set(names)) != len(names):
        raise Unsupported("label repeated")
    return names


class _Block:
    """The lines of one family: header facts, then either raw samples or delegated text."""

    def __init__(self, name: str, kind: str | None = None) -> None:
        self.name = name
        self.kind = kind
        self.help: str | None = None
        self.unit = ""
        self.text: list[str] = []  # every line of a delegated block
        self.samples: list[tuple[str, str, str]] = []
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


def _split(body: str, openmetrics: bool) -> list[_Block]:
    """The body's family blocks, in order; `Unsupported` for anything unusual."""
    blocks: list[_Block] = []
    seen: set[str] = set()
    current: _Block | None = None
    lines = body.split("\n")
    if openmetrics:
        while lines and lines[-1] == "":
            lines.pop()
        if not lines or lines[-1] != EOF_LINE:
            raise Unsupported("no # EOF")
        lines.pop()
    for line in lines:
        if not line:
            if openmetrics:
                raise Unsupported("blank line")
            continue
        if not openmetrics and line != line.strip():
            raise Unsupported("whitespace")  # the text parser strips every line
        if line[0] == "#":
            current = _comment(line, current, blocks, seen, openmetrics)
            continue
        match = _SAMPLE_RE.fullmatch(line)
        if match is None:
            raise Unsupported("sample line")
        name, labels, value = match.groups()
        if current is None or not _belongs(current, name, openmetrics):
            current = _new_block(name, None, blocks, seen)
        if current.delegated:
            current.text.append(line)
        current.samples.append((name, labels or "", value))
    return blocks


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
        if openmetrics:
            raise Unsupported("comment")
        return current  # text format: other comments are ignored
    if len(parts) < 3 or not _NAME_RE.fullmatch(parts[2]):
        raise Unsupported("metadata line")
    name, rest = parts[2], parts[3] if len(parts) > 3 else ""
    if keyword == "TYPE" and not openmetrics and rest == "counter" and name[-6:] != "_total":
        raise Unsupported("text counter without _total")
    if current is None or current.name != name or current.samples:
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
    labeller = _Labeller(labels)
    out: list[RawFamily | Family] = []
    for block in _split(body, openmetrics):
        if block.is_simple(openmetrics):
            out.append(_raw_family(block, openmetrics, labeller))
        else:
            out.extend(_delegate(block, openmetrics, labeller))
    return out if openmetrics else fold_created(out)


def _raw_family(block: _Block, openmetrics: bool, labeller: _Labeller) -> RawFamily:
    kind = block.kind or "untyped"
    kind = "unknown" if kind == "untyped" else kind
    name = block.name
    if kind == "counter" and not openmetrics:
        name = name[: -len("_total")]
    family = RawFamily(name, kind, block.help or "", block.unit if openmetrics else "")
    for sample_name, label_text, value in block.samples:
        family.lines.append((sample_name, labeller(label_text, _label_names(label_text)), value))
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
        owner.lines.extend(created.lines)
        return
    samples = created.to_metric().samples if isinstance(created, RawFamily) else created.samples
    if isinstance(owner, RawFamily):
        raise Unsupported("_created of a delegated family")
    owner.samples.extend(samples)
