"""Sample lines as prometheus_client's OpenMetrics encoder writes them, and the lines
of the sidecar's own unchanged series kept from one collection to the next.

`sample_lines` writes a family's samples directly (the encoder escapes every sample name
a character at a time). The own registry's collector (`sidecar.observability`) keeps the
samples of each histogram series whose values did not change since the last collection,
as one `TextPoint`; it keeps the lines written for them too, so an unchanged series of
the proxy's histograms is neither translated nor written again (`attach_points`,
`cached_lines`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString as _float_to_go_string

__all__ = [
    "TextPoint",
    "attach_points",
    "cached_lines",
    "go_float",
    "points_of",
    "sample_lines",
]

# names the OpenMetrics encoder writes as they are (a sample name is escaped as a label
# name is: a colon in one would be replaced)
_LEGACY_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").fullmatch
_float_to_go = cast(Callable[[float], str], _float_to_go_string)
_INF = float("inf")


def go_float(value: float) -> str:
    """prometheus_client's ``floatToGoString(value)``, written faster for the values most
    samples hold: it is ``repr`` of the float unless the value is infinite, NaN or at
    least a million (which Go writes with an exponent), so below that ``repr`` is taken
    as it is (``5`` -> ``5.0``, ``0.25``, ``-3.0``, ``1e-05``)."""
    kind = type(value)
    if kind is float:
        if -_INF < value < 1e6:
            return repr(value)
    elif kind is int and -(2**53) < value < 1_000_000:  # (exact as a float)
        return f"{value}.0"
    return _float_to_go(value)


_POINTS = "text_points"  # the attribute `attach_points` sets on a family


class TextPoint:
    """The samples of one series, as a collection built them, and their lines once
    written (None until then; a point whose samples the writer refuses keeps None)."""

    __slots__ = ("samples", "text")

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = samples
        self.text: str | None = None


def sample_lines(samples: Iterable[Sample]) -> str | None:
    """The OpenMetrics lines of ``samples``, byte for byte as prometheus_client's encoder
    writes them when every name is in the legacy set; None when a name is not, or a
    sample has an exemplar or a native histogram (the encoder writes those)."""
    out = []
    for sample in samples:
        if sample.exemplar or sample.native_histogram or not _LEGACY_LABEL_NAME(sample.name):
            return None
        labels = ""
        if sample.labels:
            pairs = []
            for key, value in sorted(sample.labels.items()):
                if not _LEGACY_LABEL_NAME(key):
                    return None
                if "\\" in value or "\n" in value or '"' in value:
                    value = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
                pairs.append(f'{key}="{value}"')
            labels = "{" + ",".join(pairs) + "}"
        shown = "" if sample.value is None else go_float(sample.value)
        stamp = "" if sample.timestamp is None else f" {sample.timestamp}"
        out.append(f"{sample.name}{labels} {shown}{stamp}\n")
    return "".join(out)


def attach_points(family: Metric, points: list[TextPoint]) -> None:
    """Say that ``family.samples`` are, in order, the samples of ``points``: valid while
    the family keeps that very list with that many samples (anything that rewrites a
    family's samples gives it a new list, or changes its length)."""
    setattr(family, _POINTS, (family.samples, len(family.samples), points))


def points_of(family: Metric) -> list[TextPoint] | None:
    """``family``'s points (`attach_points`), one per series; None when it has none, or
    they no longer hold."""
    held: tuple[list[Sample], int, list[TextPoint]] | None = getattr(family, _POINTS, None)
    if held is None or held[0] is not family.samples or held[1] != len(family.samples):
        return None
    return held[2]


def cached_lines(family: Metric) -> str | None:
    """The lines of ``family``'s samples from its points (`attach_points`), writing only
    the points written for the first time; None when it has none, or they no longer hold."""
    points = points_of(family)
    if points is None:
        return None
    texts = []
    for point in points:
        text = point.text
        if text is None:  # (two threads may both write it: the same text)
            text = point.text = sample_lines(point.samples)
            if text is None:
                return None
        texts.append(text)
    return "".join(texts)
