"""Which exposition format and name escaping a scraper gets: the ``Accept`` header read.

The header's media ranges are tried from the highest ``q`` down (RFC 9110 §12.5.1) and
the first one served is answered (protobuf, OpenMetrics 1.0.0/0.0.1, text 1.0.0/0.0.4),
else text 0.0.4 as Prometheus falls back; the chosen range's ``escaping`` parameter says
how names outside the legacy set are written (`sidecar.escaping`). The rules in full
(which range gets which answer, the Content-Type): docs/ingest.md.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics import exposition as om_module
from prometheus_client.registry import Collector

from sidecar import protobuf

__all__ = [
    "ESCAPING_SCHEMES",
    "Escaping",
    "Format",
    "MediaRange",
    "Negotiated",
    "encoder_for",
    "negotiate",
    "parse_accept",
]


class Format(enum.Enum):
    """An exposition format we serve: (media type, version)."""

    PROTOBUF = (
        "application/vnd.google.protobuf",
        "",
    )  # delimited io.prometheus.client.MetricFamily
    OPENMETRICS_1_0_0 = ("application/openmetrics-text", "1.0.0")
    OPENMETRICS_0_0_1 = ("application/openmetrics-text", "0.0.1")
    TEXT_1_0_0 = ("text/plain", "1.0.0")
    TEXT_0_0_4 = ("text/plain", "0.0.4")

    @property
    def media_type(self) -> str:
        """``text/plain`` or ``application/openmetrics-text``."""
        return self.value[0]

    @property
    def version(self) -> str:
        """The ``version`` parameter."""
        return self.value[1]

    @property
    def openmetrics(self) -> bool:
        """An OpenMetrics format (ends in ``# EOF``, counters named by their bare name)."""
        return self.media_type == OPENMETRICS

    @property
    def utf8(self) -> bool:
        """The format can carry names outside the legacy character set (quoted)."""
        return self.version in ("1.0.0", "")


class Escaping(enum.StrEnum):
    """Prometheus's name escaping schemes (the ``escaping`` parameter)."""

    ALLOW_UTF8 = "allow-utf-8"
    UNDERSCORES = "underscores"
    DOTS = "dots"
    VALUES = "values"


OPENMETRICS = "application/openmetrics-text"
TEXT = "text/plain"
ESCAPING_SCHEMES = frozenset(e.value for e in Escaping)
_BY_TYPE_AND_VERSION: dict[tuple[str, str], Format] = {
    (OPENMETRICS, "1.0.0"): Format.OPENMETRICS_1_0_0,
    (OPENMETRICS, ""): Format.OPENMETRICS_1_0_0,
    (OPENMETRICS, "0.0.1"): Format.OPENMETRICS_0_0_1,
    (TEXT, "1.0.0"): Format.TEXT_1_0_0,
    (TEXT, "0.0.4"): Format.TEXT_0_0_4,
    (TEXT, ""): Format.TEXT_0_0_4,
}
_WILDCARDS = {"*/*": Format.TEXT_0_0_4, "text/*": Format.TEXT_0_0_4}
_WILDCARDS["application/*"] = Format.OPENMETRICS_1_0_0
DEFAULT = Format.TEXT_0_0_4


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One comma-separated element of ``Accept``."""

    media_type: str  # lower case, e.g. ``text/plain``
    params: dict[str, str]  # keys lower case, values unquoted; without ``q``
    q: float


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The answer's format, its escaping and the Content-Type that says so."""

    format: Format
    escaping: Escaping

    @property
    def openmetrics(self) -> bool:
        """An OpenMetrics answer."""
        return self.format.openmetrics

    @property
    def content_type(self) -> str:
        """E.g. ``text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8``."""
        if self.format is Format.PROTOBUF:
            return f"{protobuf.CONTENT_TYPE}; escaping={self.escaping.value}"
        head = f"{self.format.media_type}; version={self.format.version}; charset=utf-8"
        if self.format.utf8 or self.escaping is not Escaping.UNDERSCORES:
            return f"{head}; escaping={self.escaping.value}"
        return head


def parse_accept(header: str) -> list[MediaRange]:
    """The media ranges of ``header``, highest ``q`` first (header order among equals);
    ranges with ``q=0`` or an unreadable ``q`` are left out."""
    ranges: list[MediaRange] = []
    for element in header.split(","):
        parts = element.split(";")
        media_type = parts[0].strip().lower()
        if not media_type:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for part in parts[1:]:
            key, _, value = part.partition("=")
            key = key.strip().lower()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # also NaN
                    q = 0.0
            elif key:
                params[key] = value
        if q > 0.0:
            ranges.append(MediaRange(media_type, params, q))
    ranges.sort(key=lambda r: -r.q)  # stable: header order among equal q
    return ranges


def _served(media: MediaRange) -> Format | None:
    if media.media_type == protobuf.MEDIA_TYPE:
        params = media.params
        delimited = params.get("proto") == protobuf.PROTO and params.get("encoding") == "delimited"
        return Format.PROTOBUF if delimited else None
    wildcard = _WILDCARDS.get(media.media_type)
    if wildcard is not None:
        return wildcard
    return _BY_TYPE_AND_VERSION.get((media.media_type, media.params.get("version", "")))


def negotiate(accept: str) -> Negotiated:
    """The format and escaping to answer a scraper that sent ``Accept: accept``."""
    for media in parse_accept(accept or ""):
        served = _served(media)
        if served is None:
            continue
        try:
            escaping = Escaping(media.params.get("escaping", Escaping.UNDERSCORES))
        except ValueError:  # unknown scheme: ignored, as client_golang does
            escaping = Escaping.UNDERSCORES
        if escaping is Escaping.ALLOW_UTF8 and not served.utf8:
            escaping = Escaping.UNDERSCORES
        return Negotiated(served, escaping)
    return Negotiated(DEFAULT, Escaping.UNDERSCORES)


Encoder = Callable[[Collector], bytes]


def encoder_for(negotiated: Negotiated) -> Encoder:
    """prometheus_client's encoder for the format. Names reach it escaped already
    (`sidecar.escaping`), except with ``allow-utf-8``, where it quotes the names outside
    the legacy set as the 1.0.0 formats want (``{"http.server.duration",le="1"}``)."""
    if negotiated.format is Format.PROTOBUF:
        return lambda collector: b"".join(protobuf.family_messages(collector.collect()))
    escaping = (
        om_module.ALLOWUTF8 if negotiated.escaping is Escaping.ALLOW_UTF8 else om_module.UNDERSCORES
    )
    if negotiated.openmetrics:
        return partial(om_module.generate_latest, escaping=escaping)
    return partial(text_latest, escaping=escaping)
