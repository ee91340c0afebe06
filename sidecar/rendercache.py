"""The ingested series' rendered lines, kept compressed from one scrape to the next.

With 100,000 ingested series a scrape is ~63 MB of text, ~0.3-0.5 s of CPU to render and
gzip, though most series have not changed since the last scrape. The store keeps each
family's series in chunks of 256 by insertion order and stamps a chunk with its write
epoch whenever what it renders changes (`sidecar.ingest.store.Family`). A render takes
each unchanged chunk from here, compressed (`sidecar.gzipjoin.Deflated`), and renders and
compresses only the changed ones; the gzip answer joins the pieces as they are, a scraper
without gzip gets them inflated. A chunk's lines are the same in every text format (the
format only changes a family's header, rendered each time), so one piece serves all.
A protobuf answer has pieces of its own (`family_protobuf_parts`): a chunk's ``metric``
entries, encoded and compressed; a family's delimited header (length, name, help, type)
is written fresh with the length of all its pieces.

Held: the compressed pieces only, at most `MAX_BYTES`; pieces of families and chunks that
are gone are dropped at each render (`RenderCache.prune`). At the bound a new piece is not
kept: with more series than the bound holds, a steady share of the chunks stays cached
(an LRU would evict, chunk by chunk, what the same scrape needs next). Thread-safe
(renders run in worker threads, `sidecar.offloop`). What it saves and what it does not:
docs/tail-latency.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from itertools import islice

from sidecar.exposition import GZIP_LEVEL
from sidecar.gzipjoin import Deflated, Part
from sidecar.ingest import text
from sidecar.ingest.pbencode import LabelBytes, encode_series, family_head
from sidecar.ingest.store import Family, Series
from sidecar.protobuf import varint_field

__all__ = ["MAX_BYTES", "RenderCache", "family_parts", "family_protobuf_parts"]

MAX_BYTES = 32 << 20  # compressed pieces held (100,000 bench series: ~3 MB)

TEXT, PROTOBUF = 0, 1  # a piece's variant: sample lines (every text format), Metric entries
Key = tuple[int, int, int]  # (family serial, chunk, variant)


class RenderCache:
    """Compressed chunks by (family, chunk, variant), each with the version it was
    rendered at."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._pieces: dict[Key, tuple[int, Deflated]] = {}
        self._lock = threading.Lock()
        self.bytes = 0  # compressed bytes held
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        """Pieces held."""
        return len(self._pieces)

    def lookup(self, key: Key, version: int) -> Deflated | None:
        """The piece kept for ``key`` if it was rendered at ``version``."""
        with self._lock:
            kept = self._pieces.get(key)
            if kept is None or kept[0] != version:
                self.misses += 1
                return None
            self.hits += 1
            return kept[1]

    def keep(self, key: Key, version: int, piece: Deflated) -> None:
        """Keep ``piece``, in place of an older version of it; not when the bound is
        reached (the pieces held stay: they are in use, `prune` drops the others)."""
        with self._lock:
            old = self._pieces.pop(key, None)
            if old is not None:
                self.bytes -= len(old[1].data)
            if self.bytes + len(piece.data) > self.max_bytes:
                return
            self._pieces[key] = (version, piece)
            self.bytes += len(piece.data)

    def prune(self, families: Iterable[Family]) -> None:
        """Drop the pieces of families and chunks that are gone."""
        chunks = {family.serial: family.sizes for family in families}
        with self._lock:
            dead = [
                key for key in self._pieces if key[0] not in chunks or key[1] not in chunks[key[0]]
            ]
            for key in dead:
                self.bytes -= len(self._pieces.pop(key)[1].data)


def _pieces(
    family: Family, variant: int, cache: RenderCache, render: Callable[[list[Series]], bytes]
) -> list[Part]:
    """Each chunk of ``family`` as ``render`` writes its series, compressed: from ``cache``
    when the chunk is unchanged, else rendered and kept; then the overflow series' bytes."""
    series = iter(family.series.values())  # in chunk order (`Family.insert`)
    versions = family.versions
    parts: list[Part] = []
    for chunk, size in family.sizes.items():
        key, version = (family.serial, chunk, variant), versions[chunk]
        piece = cache.lookup(key, version)
        if piece is None:
            piece = Deflated.of(render(list(islice(series, size))), GZIP_LEVEL)
            cache.keep(key, version, piece)
        else:
            next(islice(series, size, size), None)  # past the chunk's series
        parts.append(piece)
    if family.overflow is not None:
        parts.append(render([family.overflow]))
    return parts


def family_parts(family: Family, openmetrics: bool, cache: RenderCache) -> list[Part]:
    """A stored family's exposition: its header, then each chunk's lines compressed (from
    ``cache`` when unchanged), then its overflow series; the same text as
    `sidecar.ingest.text.render_family`."""
    d = family.descriptor

    def lines(series: list[Series]) -> bytes:
        out: list[str] = []
        text.render_series(d, series, out)
        return "".join(out).encode()

    head = text.header(d.name, d.kind, d.help, d.unit, openmetrics).encode()
    return [head, *_pieces(family, TEXT, cache, lines)]


def family_protobuf_parts(family: Family, labels: LabelBytes, cache: RenderCache) -> list[Part]:
    """A stored family as a delimited MetricFamily: length and header fields written
    fresh, then each chunk's ``metric`` entries compressed (from ``cache`` when
    unchanged), then its overflow series' entry; the same bytes as
    ``delimited_bytes(encode_stored(family, labels))`` (`sidecar.ingest.pbencode`)."""
    pieces = _pieces(family, PROTOBUF, cache, lambda series: encode_series(family, series, labels))
    length = sum(piece.size if isinstance(piece, Deflated) else len(piece) for piece in pieces)
    head = family_head(family)
    return [varint_field(b"", len(head) + length) + head, *pieces]
