"""sidecar.inflate: bounded streaming decompression (ISA-L) of request and reply bodies."""

from __future__ import annotations

import gzip
import zlib

import pytest

from sidecar.inflate import BodyTooLarge, BoundedDecompressor, CorruptBody


def test_multi_member_gzip():
    body = b"abc" * 100
    d = BoundedDecompressor("gzip", 1000)
    d.feed(gzip.compress(body[:100]) + gzip.compress(body[100:]))
    assert d.finish() == body


def test_decompression_fed_byte_by_byte():
    body = bytes(range(256)) * 10
    d = BoundedDecompressor("deflate", 10_000)
    for b in zlib.compress(body):
        d.feed(bytes([b]))
    assert d.finish() == body


def test_limit_is_exact():
    BoundedDecompressor("gzip", 100).feed(gzip.compress(b"x" * 100))
    with pytest.raises(BodyTooLarge):
        BoundedDecompressor("gzip", 99).feed(gzip.compress(b"x" * 100))
    with pytest.raises(BodyTooLarge):
        BoundedDecompressor("", 99).feed(b"x" * 100)


def test_trailing_garbage_after_gzip():
    d = BoundedDecompressor("gzip", 1000)
    d.feed(gzip.compress(b"ok") + b"junk")  # ISA-L waits for a whole header ...
    with pytest.raises(CorruptBody, match="truncated gzip stream"):
        d.finish()  # ... so the end of the body says it


def test_raw_deflate_is_accepted_as_deflate():
    body = b"raw deflate, as some servers send it" * 20
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    d = BoundedDecompressor("deflate", 10_000)
    d.feed(packer.compress(body) + packer.flush())
    assert d.finish() == body


def test_truncated_stream_is_refused_at_the_end():
    d = BoundedDecompressor("gzip", 10_000)
    d.feed(gzip.compress(b"x" * 1000)[:-5])
    with pytest.raises(CorruptBody, match="truncated gzip stream"):
        d.finish()


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br"])
def test_an_encoding_not_asked_for_is_refused(encoding: str) -> None:
    with pytest.raises(CorruptBody, match="unsupported Content-Encoding"):
        BoundedDecompressor(encoding, 100)


def test_a_bomb_stops_one_byte_past_the_limit():
    d = BoundedDecompressor("gzip", 1 << 20)
    with pytest.raises(BodyTooLarge):
        d.feed(gzip.compress(b"\0" * (64 << 20)))  # 64 MiB that gzip packs into ~64 kB
    assert d.inflated == (1 << 20) + 1  # never inflated more than that


@pytest.mark.parametrize(
    ("encoding", "body", "kept"),
    [
        ("gzip", gzip.compress(b"m 1\n" * 50, mtime=0), True),
        ("x-gzip", gzip.compress(b"m 1\n" * 50, mtime=0), True),
        ("gzip", gzip.compress(b"m 1\n", mtime=0) + gzip.compress(b"m 2\n", mtime=0), False),
        ("deflate", zlib.compress(b"m 1\n" * 50), False),
        ("", b"m 1\n" * 50, False),
    ],
    ids=["gzip", "x-gzip", "two-members", "deflate", "identity"],
)
def test_the_compressed_body_is_kept_only_when_it_is_one_gzip_member(
    encoding: str, body: bytes, kept: bool
) -> None:
    d = BoundedDecompressor(encoding, 10_000, keep_member=True)
    for at in range(0, len(body), 7):  # in pieces, as a reply arrives
        d.feed(body[at : at + 7])
    d.finish()
    assert d.single_member() == (body if kept else None)
    assert BoundedDecompressor(encoding, 10_000).single_member() is None  # not asked to keep
