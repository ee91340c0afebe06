"""One gzip stream from freshly compressed bytes followed by a gzip member that already exists.

A merged scrape whose last part is, byte for byte, the body a merge target sent gzipped
need not compress that part again: our part is raw deflate ended with ``Z_SYNC_FLUSH``,
the member's deflate data follows as it came, and the trailer's CRC-32 is combined
(``crc32_combine``), as ``pigz`` joins pieces (RFC 1951/1952). `gzip_with_tail` is only
called with a member `sidecar.inflate` checked and whose body equals what the scrape would
have sent. When it applies and what it saves: docs/merge-export.md.

The same join serves the render cache (`sidecar.rendercache`): pieces kept compressed
(`Deflated`, each raw deflate from a fresh compressor ended with ``Z_SYNC_FLUSH``) go
between freshly compressed parts, which end with ``Z_FULL_FLUSH`` before each piece so
nothing after a piece refers back past it (`gzip_parts`); docs/tail-latency.md.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from isal import isal_zlib

__all__ = ["Deflated", "GzipMember", "deflate_span", "gzip_parts", "gzip_with_tail", "inflated"]

GZIP_MAGIC = b"\x1f\x8b\x08"  # ID1, ID2, CM = deflate
HEADER = GZIP_MAGIC + b"\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"  # no flags, mtime 0, OS unknown
FEXTRA, FNAME, FCOMMENT, FHCRC = 4, 8, 16, 2
TRAILER = struct.Struct("<II")  # CRC-32, ISIZE


@dataclass(frozen=True, slots=True)
class GzipMember:
    """A body and the single gzip member it arrived in."""

    body: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class Deflated:
    """A piece of a body, compressed on its own: raw deflate blocks that refer to nothing
    before them, ended with ``Z_SYNC_FLUSH`` (byte-aligned, not final)."""

    data: bytes
    crc: int  # CRC-32 of the uncompressed piece
    size: int  # its uncompressed length

    @classmethod
    def of(cls, raw: bytes, level: int) -> Deflated:
        """``raw`` compressed at ``level`` by a fresh compressor."""
        packer = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS)
        data = packer.compress(raw) + packer.flush(isal_zlib.Z_SYNC_FLUSH)
        return cls(data, isal_zlib.crc32(raw), len(raw))


Part = bytes | Deflated


def _deflate(
    parts: Sequence[Part], level: int, end: int
) -> tuple[list[bytes | memoryview], int, int]:
    """A gzip header and the raw deflate data of ``parts``, ended by the flush ``end``;
    the CRC-32 and length of what they hold."""
    packer = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS)
    out: list[bytes | memoryview] = [HEADER]
    crc = length = 0
    fresh = False  # the packer holds data that is not flushed yet
    for part in parts:
        if isinstance(part, Deflated):
            if fresh:  # what follows the piece must not refer back past it
                out.append(packer.flush(isal_zlib.Z_FULL_FLUSH))
                fresh = False
            out.append(part.data)
            crc = isal_zlib.crc32_combine(crc, part.crc, part.size)
            length += part.size
            continue
        out.append(packer.compress(part))
        crc = isal_zlib.crc32(part, crc)
        length += len(part)
        fresh = True
    out.append(packer.flush(end))
    return out, crc, length


def gzip_parts(parts: Sequence[Part], level: int) -> bytes:
    """One gzip member of the parts' concatenation: bytes compressed at ``level``,
    `Deflated` pieces as they are."""
    out, crc, length = _deflate(parts, level, isal_zlib.Z_FINISH)
    out.append(TRAILER.pack(crc, length & 0xFFFFFFFF))
    return b"".join(out)


def inflated(parts: Sequence[Part]) -> list[bytes]:
    """The parts uncompressed (for a scraper that does not take gzip)."""
    return [
        isal_zlib.decompressobj(-isal_zlib.MAX_WBITS).decompress(part.data)
        if isinstance(part, Deflated)
        else part
        for part in parts
    ]


def deflate_span(data: bytes) -> tuple[int, int] | None:
    """Where one gzip member's deflate data starts and ends (its trailer follows); None
    when ``data`` is not a whole gzip member as RFC 1952 lays it out."""
    if len(data) < 18 or not data.startswith(GZIP_MAGIC):
        return None
    flags, pos = data[3], 10
    if flags & FEXTRA:
        pos += 2 + int.from_bytes(data[pos : pos + 2], "little")
    for flag in (FNAME, FCOMMENT):
        if flags & flag:
            pos = data.find(b"\x00", pos) + 1
            if pos == 0:
                return None
    if flags & FHCRC:
        pos += 2
    end = len(data) - TRAILER.size
    return (pos, end) if pos <= end else None


def gzip_with_tail(prefix: Sequence[Part], tail: GzipMember, level: int) -> bytes | None:
    """A gzip stream of ``prefix`` (compressed at ``level``) then ``tail.body``, whose
    compressed form is taken from ``tail.data``; None when that is not one whole member
    of exactly that body (the caller then compresses everything itself)."""
    span = deflate_span(tail.data)
    if span is None:
        return None
    start, end = span
    tail_crc, size = TRAILER.unpack_from(tail.data, end)
    if size != len(tail.body) & 0xFFFFFFFF:
        return None
    out, crc, length = _deflate(prefix, level, isal_zlib.Z_SYNC_FLUSH)
    out.append(memoryview(tail.data)[start:end])
    crc = isal_zlib.crc32_combine(crc, tail_crc, len(tail.body))
    out.append(TRAILER.pack(crc, (length + len(tail.body)) & 0xFFFFFFFF))
    return b"".join(out)
