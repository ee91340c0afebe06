"""The one label-text parser (`sidecar.exposition.parse_labels`) and HELP escaping.

Every case is also read by prometheus_client's text parser (a real, independent reader
of text format 1.0.0), which must agree with the expected dict.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.exposition import escape_help, escape_label_value, parse_labels

PARSE_CASES = [
    # (label text as written inside {...}, the labels it means)
    ("", {}),
    ('a="1"', {"a": "1"}),
    ('a="1",b="2"', {"a": "1", "b": "2"}),
    ('a=""', {"a": ""}),
    ('a="x,y",b="z"', {"a": "x,y", "b": "z"}),  # a comma inside a value
    ('a="k=\\"v\\",w"', {"a": 'k="v",w'}),  # quotes and a comma inside a value
    ('a="back\\\\slash"', {"a": "back\\slash"}),
    ('a="new\\nline"', {"a": "new\nline"}),
    ('a="\\\\n"', {"a": "\\n"}),  # an escaped backslash before an n: no newline
    ('a="\\\\"', {"a": "\\"}),  # a value that is one backslash
    ('a="é ü 日本"', {"a": "é ü 日本"}),
    ('"my.label"="v"', {"my.label": "v"}),  # a quoted UTF-8 name (text format 1.0.0)
    ('a="1","my.label"="v",z="2"', {"a": "1", "my.label": "v", "z": "2"}),
    ('"quote\\"d"="v"', {'quote"d': "v"}),  # a quoted name is escaped as a value is
    ('"日本"="x,\\"y\\""', {"日本": 'x,"y"'}),
    ('_under="1",A9="2"', {"_under": "1", "A9": "2"}),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_labels(text: str, expected: dict[str, str]) -> None:
    assert parse_labels(text) == expected
    body = "m{" + text + "} 1\n"
    (family,) = text_string_to_metric_families(body)
    assert family.samples[0].labels == expected  # prometheus_client reads it so too


@pytest.mark.parametrize(
    "value", ["", "plain", 'a"b', "a\\b", "a\nb", '\\"\n', "x,y", "\\n", "日本"]
)
def test_parse_labels_inverts_escape_label_value(value: str) -> None:
    assert parse_labels(f'a="{escape_label_value(value)}"') == {"a": value}
    assert parse_labels(f'"my.label"="{escape_label_value(value)}"') == {"my.label": value}


@pytest.mark.parametrize(
    ("text", "openmetrics", "expected"),
    [
        ("plain help", False, "plain help"),
        ("a\\b", False, "a\\\\b"),
        ("two\nlines", False, "two\\nlines"),
        ('say "hi"', False, 'say "hi"'),  # text 0.0.4 leaves quotes in HELP alone
        ('say "hi"', True, 'say \\"hi\\"'),  # OpenMetrics escapes them
        ('a\\b\n"c"', True, 'a\\\\b\\n\\"c\\"'),
    ],
)
def test_escape_help(text: str, openmetrics: bool, expected: str) -> None:
    assert escape_help(text, openmetrics) == expected
