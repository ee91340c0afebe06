"""One gzip stream from freshly compressed bytes followed by a gzip member that already exists.

A merged scrape whose last part is, byte for byte, the body a merge target sent gzipped
need not compress that part again: our part is raw deflate ended with ``Z_SYNC_FLUSH``,
the member's deflate data follows as it came, and the trailer's CRC-32 is combined
(``crc32_combine``), as ``pigz`` joins pieces (RFC 1951/1952). `gzip_with_tail` is only
called with a member `sidecar.inflate` checked and whose body equals what the scrape would
have sent. When it applies and what it saves: docs/merge-export.md.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from isal import isal_zlib

__all__ = ["GzipMember", "deflate_span", "gzip_with_tail"]

GZIP_MAGIC = b"\x1f\x8b\x08"  # ID1, ID2, CM = deflate
HEADER = GZIP_MAGIC + b"\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"  # no flags, mtime 0, OS unknown
FEXTRA, FNAME, FCOMMENT, FHCRC = 4, 8, 16, 2
TRAILER = struct.Struct("<II")  # CRC-32, ISIZE


@dataclass(frozen=True, slots=True)
class GzipMember:
    """A body and the single gzip member it arrived in."""

    body: bytes
    data: bytes


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


def gzip_with_tail(prefix: Sequence[bytes], tail: GzipMember, level: int) -> bytes | None:
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
    packer = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS)
    out: list[bytes | memoryview] = [HEADER]
    crc = length = 0
    for part in prefix:
        out.append(packer.compress(part))
        crc = isal_zlib.crc32(part, crc)
        length += len(part)
    out.append(packer.flush(isal_zlib.Z_SYNC_FLUSH))
    out.append(memoryview(tail.data)[start:end])
    crc = isal_zlib.crc32_combine(crc, tail_crc, len(tail.body))
    out.append(TRAILER.pack(crc, (length + len(tail.body)) & 0xFFFFFFFF))
    return b"".join(out)
