"""Fetching one merge target's /metrics: the request, the reply's format, the parse.

The request asks with Prometheus's own ``Accept`` preference (OpenMetrics 1.0, then
OpenMetrics 0.0.1, then text 0.0.4), or text first when the scraper asked for text, and
accepts gzip, which `sidecar.inflate` undoes (ISA-L, bounded by `MAX_BODY_BYTES`; even on
loopback a pre-compressed reply arrives sooner than the plain one: 1.7 ms against 2.6 ms
for 1.9 MB), unless the scraper found the target's last reply small, or found that a
target on loopback has its body rewritten anyway (``gzip=False``: a target that
compresses on the fly spends more on it than sending the body costs; see
`sidecar.merge.scraper.REWRITTEN_RECHECK_S`). A
reply that was one gzip member is kept as it came, for `sidecar.gzipjoin`. The reply is
parsed by its ``Content-Type``: OpenMetrics or text 0.0.4 (also when the header
is missing, as Prometheus falls back). An OpenMetrics reply that does not parse is asked
for again as text 0.0.4 within the same budget (client_golang's OpenMetrics encoder
names the counter ``go_memstats_alloc_bytes_total`` family ``go_memstats_alloc_bytes``,
beside the gauge of that name: a clash that OpenMetrics parsers refuse; its text is
valid), and `Scrape.text_first` says so, for the scraper to ask text first next time.
A scraper that asked the sidecar for protobuf has targets asked for it first too
(`PROTOBUF_ACCEPT`); a protobuf reply is parsed by `sidecar.merge.pbparse`, its native
histograms kept only when protobuf was asked for (else left out, counted in
`Scrape.natives_dropped`). Another Content-Type, a non-2xx status, a malformed body, a
timeout or a connection error each end as a `Scrape` whose `result` says which; nothing
here raises for a bad target.

Parsing is CPU work (~0.03 µs a sample in the fast path's whole runs, ~3 µs line by
line, tens through prometheus_client's parsers; `sidecar.merge.rawtext`): it runs in the
default executor so the proxy sharing this event loop keeps answering meanwhile, except
for a small body that the whole-body scan reads in well under a millisecond
(`rawtext.parse_small`: node_exporter's), where the executor's two thread hand-overs
would cost more than the parse.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import aiohttp
from aiohttp import hdrs
from prometheus_client.core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.config import MergeTarget
from sidecar.gzipjoin import GzipMember
from sidecar.inflate import BodyTooLarge, BoundedDecompressor, CorruptBody
from sidecar.merge.pbparse import parse_protobuf
from sidecar.merge.rawtext import (
    RawFamily,
    Unsupported,
    fold_created,
    parse_fast,
    parse_small,
    with_labels,
)
from sidecar.negotiation import Escaping

__all__ = [
    "ACCEPT",
    "MAX_BODY_BYTES",
    "PROTOBUF_ACCEPT",
    "TEXT_ACCEPT",
    "Result",
    "Scrape",
    "accept_for",
    "fetch_target",
    "parse_exposition",
]

log = logging.getLogger(__name__)

PROTOBUF_TYPE = "application/vnd.google.protobuf"
PROTOBUF_PROTO = "io.prometheus.client.MetricFamily"
# Prometheus 2.x/3.x scrape_protocols order, without protobuf (see PROTOBUF_ACCEPT).
ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,"
    "*/*;q=0.1"
)
# For a scraper that asked for protobuf (Prometheus with native histograms on): protobuf
# first, as Prometheus asks, so a client_golang target's native histograms reach it intact.
PROTOBUF_ACCEPT = f"{PROTOBUF_TYPE};proto={PROTOBUF_PROTO};encoding=delimited;q=0.6," + ACCEPT
# For a scraper that wants text 0.0.4 (Prometheus with scrape_protocols: [PrometheusText0.0.4],
# most other agents): text, so the reply needs no conversion. OpenMetrics is not named at
# all: prometheus_client answers OpenMetrics to any Accept that names it, whatever its q.
TEXT_ACCEPT = "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def accept_for(*, protobuf: bool, text: bool, escaping: Escaping) -> str:
    """The ``Accept`` a target is asked with for one scraper: `PROTOBUF_ACCEPT`,
    `TEXT_ACCEPT` or `ACCEPT`, carrying the scraper's ``escaping`` offer on the formats
    that know it (OpenMetrics 1.0.0, text 1.0.0, protobuf), as Prometheus 3 asks: a
    target serving UTF-8 names sends them as they are to a scraper that allows them, and
    escapes them by the scheme the scraper asked for otherwise. ``underscores`` (also
    what no ``escaping`` means) asks as Prometheus 2 does: today's headers."""
    if escaping is Escaping.UNDERSCORES:
        return PROTOBUF_ACCEPT if protobuf else TEXT_ACCEPT if text else ACCEPT
    e = escaping.value
    if text:
        return f"text/plain;version=1.0.0;escaping={e};q=0.6,{TEXT_ACCEPT}"
    accept = (
        f"application/openmetrics-text;version=1.0.0;escaping={e};q=0.5,"
        "application/openmetrics-text;version=0.0.1;q=0.4,"
        f"text/plain;version=1.0.0;escaping={e};q=0.35,"
        "text/plain;version=0.0.4;q=0.3,"
        "*/*;q=0.1"
    )
    if protobuf:
        return (
            f"{PROTOBUF_TYPE};proto={PROTOBUF_PROTO};encoding=delimited;escaping={e};q=0.6,{accept}"
        )
    return accept


READ_CHUNK = 256 * 1024
MAX_BODY_BYTES = 64 * 2**20  # after decompression; a bigger reply is an error, not OOM
OPENMETRICS_TYPE = "application/openmetrics-text"
TEXT_TYPES = frozenset({"text/plain", ""})


# prometheus_client's OpenMetrics parser has no annotations; this is its signature.
parse_openmetrics = cast(
    Callable[[str], Iterable[Metric]], openmetrics_parser.text_string_to_metric_families
)


class Result(enum.StrEnum):
    """The ``result`` label of ``sidecar_merge_scrapes_total``."""

    SUCCESS = "success"
    TIMEOUT = "timeout"
    ERROR = "error"  # connection error, non-2xx status, too large a body
    MALFORMED = "malformed"
    UNSUPPORTED_FORMAT = "unsupported_format"


@dataclass(frozen=True, slots=True)
class Scrape:
    """One target's outcome for one scrape; ``families`` is empty unless it succeeded."""

    target: MergeTarget
    result: Result
    families: tuple[RawFamily | Metric, ...] = ()
    detail: str = ""
    seconds: float = 0.0
    # the body and the one gzip member it came in (a target without configured labels);
    # `sidecar.unified` sends that member on when its answer ends with this very body
    member: GzipMember | None = None
    openmetrics: bool = False
    text_first: bool = False  # its OpenMetrics reply did not parse, its text did
    size: int = 0  # characters of the (inflated) body
    natives_dropped: int = 0  # native histogram series left out (protobuf not asked for)


class _Refused(Exception):
    """A reply we will not merge; carries the result to count."""

    def __init__(self, result: Result, detail: str) -> None:
        super().__init__(detail)
        self.result = result
        self.detail = detail


async def fetch_target(
    session: aiohttp.ClientSession,
    target: MergeTarget,
    budget: float,
    accept: str = ACCEPT,
    *,
    gzip: bool = True,
) -> Scrape:
    """Fetch and parse ``target`` within ``budget`` seconds (its own timeout already applied),
    asking with ``accept`` (`ACCEPT`, or `TEXT_ACCEPT` for a scraper that wants text), and
    for gzip unless ``gzip`` is false.

    Returns:
        A `Scrape`; on any failure its ``families`` is empty and ``result`` says why.
    """
    start = time.perf_counter()
    text_first = False
    try:
        async with asyncio.timeout(budget):
            reply = await _get(session, target.url, accept, not target.labels, gzip)
            if reply.protobuf is not None:
                keep = accept.startswith(PROTOBUF_TYPE)
                metrics, dropped = await asyncio.get_running_loop().run_in_executor(
                    None, parse_protobuf, reply.protobuf, target.labels, keep
                )
                return Scrape(
                    target,
                    Result.SUCCESS,
                    metrics,
                    seconds=time.perf_counter() - start,
                    size=len(reply.protobuf),
                    natives_dropped=dropped,
                )
            try:
                families = await _parse(reply, target)
            except ValueError as exc:
                if not reply.openmetrics:
                    raise
                log.info(
                    "merge target %s: its OpenMetrics reply does not parse (%s); asking for text",
                    target.name,
                    exc,
                    extra={"event": "merge_target_text_first", "target": target.name},
                )
                reply = await _get(session, target.url, TEXT_ACCEPT, not target.labels, gzip)
                families = await _parse(reply, target)
                text_first = not reply.openmetrics
    except TimeoutError:
        return _failed(target, Result.TIMEOUT, f"no complete reply within {budget:.3g}s", start)
    except _Refused as exc:
        return _failed(target, exc.result, exc.detail, start)
    except (aiohttp.ClientError, OSError) as exc:
        return _failed(target, Result.ERROR, f"{type(exc).__name__}: {exc}", start)
    except ValueError as exc:  # both parsers raise ValueError (or subclasses) on bad input
        return _failed(target, Result.MALFORMED, f"cannot parse: {exc}", start)
    seconds = time.perf_counter() - start
    return Scrape(
        target,
        Result.SUCCESS,
        families,
        seconds=seconds,
        member=reply.member,
        openmetrics=reply.openmetrics,
        text_first=text_first,
        size=len(reply.text),
    )


async def _parse(reply: _Reply, target: MergeTarget) -> tuple[RawFamily | Metric, ...]:
    """The reply's families: a small plain text one on the loop, others in a worker thread."""
    small = parse_small(reply.text, reply.openmetrics, target.labels)
    if small is not None:
        return tuple(small)
    return await asyncio.get_running_loop().run_in_executor(
        None, parse_exposition, reply.text, reply.openmetrics, target.labels
    )


def _failed(target: MergeTarget, result: Result, detail: str, start: float) -> Scrape:
    log.warning(
        "merge target %s skipped for this scrape: %s (%s)",
        target.name,
        result.value,
        detail,
        extra={"event": "merge_target_skipped", "target": target.name, "result": result.value},
    )
    return Scrape(target, result, detail=detail, seconds=time.perf_counter() - start)


@dataclass(frozen=True, slots=True)
class _Reply:
    text: str
    openmetrics: bool
    member: GzipMember | None
    protobuf: bytes | None = None  # the body of a protobuf reply (``text`` is then empty)


async def _get(
    session: aiohttp.ClientSession, url: str, accept: str, keep_member: bool, gzip: bool = True
) -> _Reply:
    """The reply body as text, whether it is OpenMetrics and (with ``keep_member``) the
    gzip member it came in; `_Refused` when unusable."""
    headers = {hdrs.ACCEPT: accept, hdrs.ACCEPT_ENCODING: "gzip" if gzip else "identity"}
    async with session.get(url, headers=headers, auto_decompress=False) as response:
        if not 200 <= response.status < 300:
            raise _Refused(Result.ERROR, f"HTTP {response.status}")
        media_type = response.content_type if hdrs.CONTENT_TYPE in response.headers else ""
        openmetrics = media_type == OPENMETRICS_TYPE
        protobuf = media_type == PROTOBUF_TYPE
        if protobuf and not _delimited_families(response.headers.get(hdrs.CONTENT_TYPE, "")):
            raise _Refused(
                Result.UNSUPPORTED_FORMAT,
                f"Content-Type {media_type!r} (not delimited MetricFamily)",
            )
        if not openmetrics and not protobuf and media_type not in TEXT_TYPES:
            raise _Refused(Result.UNSUPPORTED_FORMAT, f"Content-Type {media_type!r}")
        if response.content_length is not None and response.content_length > MAX_BODY_BYTES:
            raise _Refused(Result.ERROR, f"body larger than {MAX_BODY_BYTES} bytes")
        raw, member = await _read_body(response, keep_member and not protobuf)
        if protobuf:
            return _Reply("", False, None, raw)
        try:
            text = raw.decode(response.charset or "utf-8")
        except (UnicodeDecodeError, LookupError) as exc:
            raise _Refused(Result.MALFORMED, f"cannot decode the body: {exc}") from exc
        return _Reply(text, openmetrics, GzipMember(raw, member) if member is not None else None)


def _delimited_families(content_type: str) -> bool:
    """True for a protobuf Content-Type of delimited ``io.prometheus.client.MetricFamily``."""
    params = dict(
        (key.strip().lower(), value.strip().strip('"'))
        for key, _, value in (p.partition("=") for p in content_type.split(";")[1:])
    )
    return params.get("proto") == PROTOBUF_PROTO and params.get("encoding") == "delimited"


async def _read_body(
    response: aiohttp.ClientResponse, keep_member: bool
) -> tuple[bytes, bytes | None]:
    """The whole (decompressed) body, refused beyond `MAX_BODY_BYTES`, and (with
    ``keep_member``) the compressed body when it was exactly one gzip member."""
    encoding = response.headers.get(hdrs.CONTENT_ENCODING, "")
    try:
        body = BoundedDecompressor(encoding, MAX_BODY_BYTES, keep_member=keep_member)
        async for chunk in response.content.iter_chunked(READ_CHUNK):
            body.feed(chunk)
        return body.finish(), body.single_member()
    except BodyTooLarge as exc:
        raise _Refused(Result.ERROR, f"body larger than {MAX_BODY_BYTES} bytes") from exc
    except CorruptBody as exc:
        raise _Refused(Result.ERROR, str(exc)) from exc


def parse_exposition(
    body: str, openmetrics: bool, labels: Mapping[str, str] | None = None
) -> tuple[RawFamily | Metric, ...]:
    """Parse a whole exposition, then add ``labels`` to every sample.

    Plain counter, gauge and untyped families take the fast path (`sidecar.merge.rawtext`);
    the rest, and any body the fast path does not recognise exactly, go through
    prometheus_client's parsers. A scraped label that a configured one replaces is kept
    as ``exported_<name>``, as Prometheus does without ``honor_labels``.

    Raises:
        ValueError: the body is not valid exposition of that format.
    """
    labels = labels or {}
    try:
        return tuple(parse_fast(body, openmetrics, labels))
    except Unsupported:
        pass
    metrics = list(parse_openmetrics(body) if openmetrics else parse_text(body))
    if labels:
        for family in metrics:
            family.samples = [
                s._replace(labels=with_labels(s.labels, labels)) for s in family.samples
            ]
    return tuple(metrics) if openmetrics else tuple(fold_created(metrics))
