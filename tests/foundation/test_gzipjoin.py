"""sidecar.gzipjoin: our compressed prefix and an existing gzip member, as one gzip stream."""

from __future__ import annotations

import gzip
import io
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from isal import igzip

from sidecar.gzipjoin import (
    Deflated,
    GzipMember,
    Part,
    deflate_span,
    gzip_parts,
    gzip_with_tail,
    inflated,
)


def gzip_file(body: bytes, **kwargs: object) -> bytes:
    """A member written by Python's GzipFile (FNAME, mtime set)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", **kwargs) as f:  # type: ignore[arg-type]
        f.write(body)
    return out.getvalue()


def with_header_fields(member: bytes, flags: int, fields: bytes) -> bytes:
    """``member`` with header flags and their fields (FEXTRA, FNAME, FCOMMENT, FHCRC) added."""
    return member[:3] + bytes([flags]) + member[4:10] + fields + member[10:]


# every way of producing the member that a target's gzip may take
COMPRESSORS = {
    "zlib-1": lambda b: gzip.compress(b, 1),
    "zlib-6": lambda b: gzip.compress(b, 6),
    "zlib-9": lambda b: gzip.compress(b, 9),
    "isal-0": lambda b: igzip.compress(b, 0),
    "isal-2": lambda b: igzip.compress(b, 2),
    "isal-3": lambda b: igzip.compress(b, 3),
    "gzipfile-fname": lambda b: gzip_file(b, filename="metrics.txt", mtime=1_700_000_000),
    "extra-comment-hcrc": lambda b: with_header_fields(
        gzip.compress(b), 4 | 16 | 2, b"\x03\x00abc" + b"a comment\x00" + b"\x12\x34"
    ),
}

BODIES = st.one_of(
    st.binary(max_size=3000),
    st.integers(0, 3000).map(lambda n: b"".join(b'm{a="%d"} %d\n' % (i, i) for i in range(n))),
)


def inflate_all_ways(stream: bytes) -> bytes:
    """The stream inflated by zlib (one member, nothing after it), gzip and ISA-L, alike."""
    inflater = zlib.decompressobj(31)
    plain = inflater.decompress(stream) + inflater.flush()
    assert inflater.eof
    assert inflater.unused_data == b""
    assert gzip.decompress(stream) == plain
    assert igzip.decompress(stream) == plain
    return plain


@pytest.mark.parametrize("compress", COMPRESSORS.values(), ids=COMPRESSORS)
@settings(max_examples=40, deadline=None)
@given(prefix=st.lists(st.binary(max_size=2000), max_size=4), body=BODIES)
def test_joined_stream_inflates_to_prefix_then_body(
    compress: object, prefix: list[bytes], body: bytes
) -> None:
    member = compress(body)  # type: ignore[operator]
    joined = gzip_with_tail(prefix, GzipMember(body, member), 2)
    assert joined is not None
    assert inflate_all_ways(joined) == b"".join(prefix) + body
    span = deflate_span(member)
    assert span is not None
    assert member[span[0] : span[1]] in joined  # the member's blocks as they came


def test_a_large_body_keeps_its_compression() -> None:
    body = b"".join(b'app_requests_total{route="/r/%d"} %d\n' % (i, i) for i in range(20_000))
    member = gzip.compress(body, 6)
    joined = gzip_with_tail([b"# HELP own x\n", b"own 1\n"], GzipMember(body, member), 2)
    assert joined is not None
    assert inflate_all_ways(joined) == b"# HELP own x\nown 1\n" + body
    assert len(joined) < len(member) + 100  # not compressed again


REFUSED = {
    "two-members": lambda b: gzip.compress(b[:10]) + gzip.compress(b[10:]),
    "another-body": lambda b: gzip.compress(b + b"x"),
    "truncated": lambda b: gzip.compress(b)[:12],
    "not-gzip": lambda b: zlib.compress(b),
    "name-without-end": lambda b: with_header_fields(gzip.compress(b)[:10], 8, b"abc"),
}


@pytest.mark.parametrize("make", REFUSED.values(), ids=REFUSED)
def test_what_is_not_one_member_of_the_body_is_refused(make: object) -> None:
    body = b"m 1\n" * 20
    # two-members: the trailer's size is the second member's, not the body's
    assert gzip_with_tail([b"p\n"], GzipMember(body, make(body)), 2) is None  # type: ignore[operator]


# (bytes compressed now, or a `Deflated` piece compressed earlier) at every level
PARTS = st.lists(
    st.tuples(st.booleans(), BODIES | st.binary(max_size=300), st.sampled_from((0, 1, 2, 3))),
    max_size=8,
)


def as_parts(drawn: list[tuple[bool, bytes, int]]) -> list[Part]:
    return [Deflated.of(raw, level) if kept else raw for kept, raw, level in drawn]


@settings(max_examples=150, deadline=None)
@given(drawn=PARTS, level=st.sampled_from((0, 2, 3)))
def test_pieces_and_fresh_parts_inflate_to_their_concatenation(
    drawn: list[tuple[bool, bytes, int]], level: int
) -> None:
    parts = as_parts(drawn)
    plain = b"".join(raw for _, raw, _ in drawn)
    assert inflate_all_ways(gzip_parts(parts, level)) == plain
    assert b"".join(inflated(parts)) == plain


@settings(max_examples=40, deadline=None)
@given(drawn=PARTS, body=BODIES)
def test_pieces_before_a_passed_through_member(
    drawn: list[tuple[bool, bytes, int]], body: bytes
) -> None:
    joined = gzip_with_tail(as_parts(drawn), GzipMember(body, gzip.compress(body)), 2)
    assert joined is not None
    assert inflate_all_ways(joined) == b"".join(raw for _, raw, _ in drawn) + body


def test_gnu_gzip_reads_pieces_joined_between_fresh_parts(tmp_path: Path) -> None:
    lines = [b'm_total{i="%d"} %d\n' % (i, i) for i in range(3000)]
    pieces = [Deflated.of(b"".join(lines[i : i + 256]), 2) for i in range(0, 3000, 256)]
    parts: list[Part] = []
    for number, piece in enumerate(pieces):  # a fresh header before each piece
        parts += [b"# HELP m %d\n" % number, piece]
    (tmp_path / "m.gz").write_bytes(gzip_parts([*parts, b"# EOF\n"], 2))
    done = subprocess.run(["gzip", "-dc", "m.gz"], cwd=tmp_path, capture_output=True, check=True)
    want = b"".join(
        b"# HELP m %d\n" % n + b"".join(lines[n * 256 : n * 256 + 256]) for n in range(12)
    )
    assert done.stdout == want + b"# EOF\n"
