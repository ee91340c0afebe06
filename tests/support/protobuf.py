"""Decoding a delimited ``io.prometheus.client.MetricFamily`` stream in tests.

Written apart from `sidecar.merge.pbparse` on purpose: a test reads the sidecar's
protobuf answers with its own few lines, not with the code under test.
"""

from __future__ import annotations

from sidecar.gen.io.prometheus.client import metrics_pb2 as pb


def _varint(body: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = body[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def delimited(body: bytes) -> list[pb.MetricFamily]:
    """The MetricFamily messages of *body*, each behind its varint length, in order."""
    out, at = [], 0
    while at < len(body):
        size, at = _varint(body, at)
        out.append(pb.MetricFamily.FromString(body[at : at + size]))
        at += size
    return out


def by_name(body: bytes) -> dict[str, pb.MetricFamily]:
    """The families of *body* by name; a name written twice fails the test."""
    out: dict[str, pb.MetricFamily] = {}
    for family in delimited(body):
        assert family.name not in out, family.name
        out[family.name] = family
    return out
