"""The protobuf scrape's label encoding (`sidecar.ingest.pbencode.LabelBytes`) and the
stored-family encoder, byte for byte against the general path, both ways: the C label
encoder (`sidecar/ingest/_pblabels.c`) and the pure-Python one from interned pairs."""

from __future__ import annotations

import random

import pytest

from sidecar import extensions
from sidecar.exposition import parse_labels
from sidecar.ingest.pbencode import C_LABELS, LabelBytes, encode_stored
from sidecar.ingest.store import ExponentialState
from sidecar.ingest.text import to_metric
from sidecar.ingest.translate import label_text
from sidecar.protobuf import labels_bytes, to_family
from tests.support.otlp import mixed_harness

# the C encoder where it is built (`C_LABELS`), and the pure-Python one
PATHS = {"C": True, "pure Python": False}

# label text as the store writes it (and some it never writes) -> why it is here
TEXTS = {
    "": "no labels",
    'a="x"': "one label",
    'a="x",b="y",c=""': "an empty value",
    'method="GET",route="/a,b=c",x="="': "commas and equals signs in a value",
    'a="x\\",y",b="z"': 'an escaped quote before a comma: \\", is no end of pair',
    'a="back\\\\",b="slash"': "an escaped backslash ending a value",
    'a="line\\nbreak"': "an escaped newline",
    'a="é😀",ß="v"': "UTF-8 values; a name outside the legacy set unquoted",
    '"service.name"="svc",a="1"': "a quoted UTF-8 name",
    '"a\\"b"="v"': "an escaped quote in a quoted name",
    '""="v"': "an empty quoted name",
    'a="1",a="2"': "a name twice (the dict keeps the last value)",
    'a="1",b="2",a="3"': "a name twice, apart",
    "a=x": "no quotes: nothing parsed",
    'a="x",': "a trailing comma",
    'a="x",1b="y"': "a name starting with a digit",
    'a="x' + "v" * 200 + '"': "a value longer than 127 bytes (two-byte lengths)",
    'a="' + "w" * 20_000 + '"': "a value longer than 16,383 bytes (three-byte lengths)",
    ",".join(f'l{i}="{i}"' for i in range(200)): "more labels than the C encoder's array",
    'a="raw\nnewline"': "an unescaped newline in a value",
}


@pytest.mark.parametrize("use_c", PATHS.values(), ids=PATHS)
@pytest.mark.parametrize("text", TEXTS, ids=TEXTS.values())
def test_label_text_encodes_as_the_general_parser_reads_it(text: str, use_c: bool) -> None:
    expected = labels_bytes(parse_labels(text))
    labels = LabelBytes(use_c=use_c)
    for _ in range(2):  # new, then from the caches
        assert labels.encode(text) == expected
        assert labels(text) == expected
        # a counter's or gauge's Metric head: tag 4, the length with its 11-byte value
        head = labels.scalar(text)
        assert head.endswith(expected)
        assert head[0] == 0x22
        assert _varint(head[1:]) == len(expected) + 11


def _varint(data: bytes) -> int:
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value
        shift += 7
    raise AssertionError("no varint end")


ALPHABET = ['"', "\\", "\n", ",", "=", "a", "Z", "0", " ", "é", "😀", "{", "}"]
NAMES = ["a", "b", "method", "route", "_x", "le9"]


@pytest.mark.parametrize("use_c", PATHS.values(), ids=PATHS)
def test_random_label_sets_encode_as_the_general_parser_reads_them(use_c: bool) -> None:
    """Label sets written by the store's own `label_text`, awkward values, shared pairs."""
    rng = random.Random(17)
    labels = LabelBytes(use_c=use_c)
    values = ["".join(rng.choices(ALPHABET, k=rng.randrange(6))) for _ in range(40)]
    for _ in range(3000):
        names = rng.sample(NAMES, rng.randrange(len(NAMES) + 1))
        text = label_text({name: rng.choice(values) for name in names})
        if rng.random() < 0.2:  # a quoted UTF-8 name in front, as the UTF-8 strategies write
            text = '"k.8"="v"' + ("," + text if text else "")
        assert labels.encode(text) == labels_bytes(parse_labels(text)), text


@pytest.mark.parametrize("scalar", [True, False], ids=["counter heads", "label pairs"])
def test_a_familys_texts_primed_at_once_encode_as_one_by_one(scalar: bool) -> None:
    """`LabelBytes.prime` (the pure-Python first scrape: all of a family's new label texts
    in one pass) leaves exactly what encoding each alone gives: the awkward texts above,
    families naming the same labels (the one-check case) and mixed ones, shared pairs."""
    rng = random.Random(19)
    values = ["".join(rng.choices(ALPHABET, k=rng.randrange(6))) for _ in range(40)]
    same = sorted(rng.sample(NAMES, 3))
    families = [
        list(TEXTS),
        [label_text({n: rng.choice(values) for n in same}) for _ in range(300)],
        [label_text({n: rng.choice(values) for n in same}) for _ in range(30)] + ['a="1",a="2"'],
        [
            label_text({n: rng.choice(values) for n in rng.sample(NAMES, rng.randrange(5))})
            for _ in range(300)
        ],
    ]
    labels = LabelBytes(use_c=False)
    for texts in families:
        labels.prime([Series(text) for text in texts], scalar=scalar)
        for text in texts:
            expected = labels_bytes(parse_labels(text))
            assert (labels.scalar(text) if scalar else labels(text)).endswith(expected), text
            assert labels(text) == expected


class Series:
    """What `prime` reads of a stored series: its label text."""

    def __init__(self, labels: str) -> None:
        self.labels = labels


@pytest.mark.parametrize("use_c", PATHS.values(), ids=PATHS)
def test_stored_families_are_the_protobuf_runtimes_bytes(use_c: bool) -> None:
    """`encode_stored` writes exactly what the protobuf runtime serializes for the family's
    `to_metric` (classic families: native parts are checked in tests/unified), on the first
    scrape and from the caches on the next."""
    harness = mixed_harness(30)
    families = [
        f
        for f in harness.store.families.values()
        if f.series and not any(isinstance(s.extra, ExponentialState) for s in f.all_series())
    ]
    kinds = {f.descriptor.kind.value for f in families}
    assert kinds >= {"counter", "gauge", "histogram", "summary"}, kinds
    labels = LabelBytes(use_c=use_c)
    for _ in range(2):
        for family in families:
            expected = to_family(to_metric(family)).SerializeToString()
            assert encode_stored(family, labels) == expected, family.descriptor.name


def test_the_c_encoder_is_built_here() -> None:
    """The C path above is not the pure one twice: `make setup` builds the extension
    (unless SIDECAR_NO_EXTENSIONS asks for the pure paths)."""
    assert C_LABELS or extensions.NO_EXTENSIONS
