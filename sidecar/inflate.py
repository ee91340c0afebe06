"""Bounded streaming decompression of HTTP bodies (gzip, deflate), with ISA-L.

Used where the sidecar reads a compressed body itself rather than letting aiohttp
inflate it without a bound: OTLP ingest requests (`sidecar.ingest.receiver`) and merge
targets' replies (`sidecar.merge.fetch`). ISA-L's inflate (`isal.isal_zlib`, the same
API as `zlib`) is 2-3x faster than zlib's: a 1.9 MB exposition gzipped to 160 kB inflates
in ~0.6 ms instead of ~1.5 ms.

Errors::

    BodyError
    ├── CorruptBody      bad or unsupported compression (an unasked-for Content-Encoding)
    └── BodyTooLarge     over the limit once decompressed
"""

from __future__ import annotations

from typing import Any, cast

from isal import isal_zlib

__all__ = ["BodyError", "BodyTooLarge", "BoundedDecompressor", "CorruptBody"]

_Decompress = Any  # isal_zlib's decompress object (no annotations)
GZIP = ("gzip", "x-gzip")
_INFLATE_ERROR = cast(type[Exception], isal_zlib.error)  # its stub does not say it is one


class BodyError(Exception):
    """A body that cannot be read."""


class CorruptBody(BodyError):
    """A corrupt compressed stream, or a Content-Encoding this reader does not take."""


class BodyTooLarge(BodyError):
    """Larger than the reader's limit once decompressed."""


class BoundedDecompressor:
    """Feed compressed chunks, get the body; never holds more than ``limit`` output bytes.

    ``content_encoding`` is ``identity``/empty, ``gzip`` (several members allowed) or
    ``deflate`` (zlib-wrapped as RFC 9110 says, raw deflate accepted too). With
    ``keep_member`` a gzip body's compressed bytes are kept too, for `single_member`.
    """

    def __init__(self, content_encoding: str, limit: int, *, keep_member: bool = False) -> None:
        encoding = content_encoding.strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise CorruptBody(f"unsupported Content-Encoding {content_encoding!r}")
        self._encoding = encoding
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._zlib: _Decompress | None = self._new_decompressor()
        self._raw_deflate_tried = False
        self._in_member = False  # compressed bytes fed to a stream that has not ended
        self.members = 0  # whole gzip (or zlib) members inflated so far
        self._fed: list[bytes] | None = [] if keep_member and encoding in GZIP else None

    @property
    def inflated(self) -> int:
        """Output bytes held so far (at most ``limit + 1``: the byte that proves a body
        too large)."""
        return self._size

    def _new_decompressor(self) -> _Decompress | None:
        if self._encoding in GZIP:
            return isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
        if self._encoding == "deflate":
            return isal_zlib.decompressobj(isal_zlib.MAX_WBITS)
        return None

    def feed(self, chunk: bytes) -> None:
        """Add a chunk of the (compressed) body.

        Raises:
            BodyTooLarge: the decompressed body went over the limit.
            CorruptBody: the compressed stream is corrupt.
        """
        if self._fed is not None:
            self._fed.append(chunk)
        if self._zlib is None:
            self._append(chunk)
            return
        try:
            self._inflate(chunk)
        except _INFLATE_ERROR as exc:
            if self._encoding == "deflate" and not self._raw_deflate_tried and not self._size:
                self._raw_deflate_tried = True
                self._zlib = isal_zlib.decompressobj(-isal_zlib.MAX_WBITS)
                self.feed(chunk)
                return
            raise CorruptBody(f"corrupt {self._encoding} stream: {exc}") from exc

    def _inflate(self, data: bytes) -> None:
        while data and self._zlib is not None:
            self._in_member = True
            # max_length bounds every allocation: a bomb stops one byte past the limit.
            out = self._zlib.decompress(data, self._limit - self._size + 1)
            self._append(out)
            data = self._zlib.unconsumed_tail
            if self._zlib.eof:
                self._in_member = False
                self.members += 1
                rest = self._zlib.unused_data
                self._zlib = self._new_decompressor()
                data = rest or data

    def _append(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise BodyTooLarge(f"body is over {self._limit} bytes after decompression")
        if data:
            self._parts.append(data)

    def finish(self) -> bytes:
        """The whole decompressed body.

        Raises:
            CorruptBody: the compressed stream ended early.
        """
        if self._zlib is not None and self._in_member:
            raise CorruptBody(f"truncated {self._encoding} stream")
        return b"".join(self._parts)

    def single_member(self) -> bytes | None:
        """The compressed body, when it was kept and is exactly one gzip member (call
        after `finish`)."""
        if self._fed is None or self.members != 1 or self._in_member:
            return None
        return b"".join(self._fed)
