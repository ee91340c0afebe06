"""Case 10: hostile label values come out escaped; the exposition stays valid.

Input: OTLP pushes (real receiver, protobuf and JSON) and proxied requests whose label
material holds quotes, backslashes, newlines, braces, `# EOF` lines, lone surrogates
(JSON ``\\ud800``), bytes that are not UTF-8 (``bytesValue``) and odd attribute keys.
Expected: every value parses back exactly (prometheus_client's text and OpenMetrics
parsers), and the unified exposition passes ``promtool check metrics`` (design §6).
"""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.ingest.collector import OtlpCollector
from sidecar.unified import UnifiedCollector
from tests.support.otlp import counter, histogram, hpoint, number, request, summary
from tests.support.prometheus import check_metrics
from tests.support.proxy import ProxyFactory, raw_exchange, split_response

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
TEXT = "text/plain; version=0.0.4"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

POISON = [
    'quote"inside',
    "back\\slash\\",
    "new\nline",
    "carriage\rreturn",
    "} 1\nfake_metric 666",
    "\n# EOF\n",
    "tab\tand\x00nul",
    "unicode \u2028 sep \ufeff bom",
    '\\"\\n',
]


def _render(store_collector, accept: str) -> str:
    return UnifiedCollector([store_collector]).render(accept, "").body.decode()


def _label_values(text: str, openmetrics: bool) -> set[str]:
    parse = parse_openmetrics if openmetrics else parse_text
    return {v for f in parse(text) for s in f.samples for v in s.labels.values()}


async def _push(ingest, body: bytes, headers: dict[str, str]) -> int:
    response = await ingest.client.post("/v1/metrics", data=body, headers=headers)
    await response.read()
    return response.status


def _check_exposition(ingest, expected: set[str]) -> None:
    collector = OtlpCollector(ingest.state.store)
    for accept, openmetrics in ((TEXT, False), (OPENMETRICS, True)):
        text = _render(collector, accept)
        assert expected <= _label_values(text, openmetrics), accept
        assert "fake_metric" not in {f.name for f in parse_text(_render(collector, TEXT))}
    check = check_metrics(_render(collector, TEXT))
    assert check.passes, check.unexpected


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_label_values_are_escaped_and_round_trip(ingest_factory, encoding: str) -> None:
    ingest = await ingest_factory()
    metrics = [
        counter(
            "poisoned", [number(i, {"v": value}) for i, value in enumerate(POISON)], description="d"
        ),
        histogram("ph", [hpoint([1.0], [1, 1], 1.0, {"v": POISON[0]})], description="d"),
        summary("ps", [(0.5, 1.0)], 1.0, 1, {"v": POISON[1]}, description="d"),
    ]
    req = request(*metrics, resource={"service.name": POISON[2]})
    body = (
        req.SerializeToString()
        if encoding == "protobuf"
        else json_format.MessageToJson(req).encode()
    )
    assert await _push(ingest, body, PROTOBUF if encoding == "protobuf" else JSON) == 200
    _check_exposition(ingest, set(POISON))


async def test_lone_surrogates_and_non_utf8_bytes_never_break_the_exposition(
    ingest_factory,
) -> None:
    ingest = await ingest_factory()
    good = request(counter("good", [number(1)], description="d"))
    assert await _push(ingest, good.SerializeToString(), PROTOBUF) == 200
    doc = json.loads(
        json_format.MessageToJson(request(counter("sur", [number(1)], description="d")))
    )
    point = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]
    point["attributes"] = [
        {"key": "lone", "value": {"stringValue": "PLACEHOLDER"}},
        {"key": "raw", "value": {"bytesValue": "/+7/"}},  # bytes 0xff 0xee 0xff
    ]
    body = json.dumps(doc).replace("PLACEHOLDER", "\\ud800x").encode()
    status = await _push(ingest, body, JSON)
    assert status in (200, 400)
    collector = OtlpCollector(ingest.state.store)
    for accept, openmetrics in ((TEXT, False), (OPENMETRICS, True)):
        text = _render(collector, accept)  # must not raise UnicodeEncodeError
        _label_values(text, openmetrics)
    check = check_metrics(_render(collector, TEXT))
    assert check.passes, check.unexpected


ODD_KEYS = {
    "empty-key": "",
    "le-on-histogram": "le",
    "quantile-on-summary": "quantile",
    "only-symbols": "!!!",
    "leading-digit": "1abc",
    "reserved-prefix": "__name__",
}


@pytest.mark.parametrize("key", list(ODD_KEYS.values()), ids=list(ODD_KEYS))
async def test_odd_attribute_keys_keep_the_exposition_valid(ingest_factory, key: str) -> None:
    """Found by the fuzzer: an empty key wrote ``{="v"}``; ``le``/``quantile`` doubled."""
    ingest = await ingest_factory()
    req = request(
        counter("c", [number(1, {key: "v1"})], description="d"),
        histogram("h", [hpoint([1.0], [1, 1], 1.0, {key: "v2"})], description="d"),
        summary("s", [(0.5, 1.0)], 1.0, 1, {key: "v3"}, description="d"),
    )
    assert await _push(ingest, req.SerializeToString(), PROTOBUF) in (200, 400)
    collector = OtlpCollector(ingest.state.store)
    for accept, openmetrics in ((TEXT, False), (OPENMETRICS, True)):
        _label_values(_render(collector, accept), openmetrics)  # parses: no scrape is lost
    check = check_metrics(_render(collector, TEXT))
    assert check.passes, check.unexpected


RAW_PATHS = [
    b'/a"b',
    b"/a%22b%0Ac%5C",
    b"/%7D%20fake_metric%20666",
    b"/\xff\xfe/bytes",
    b"/" + "\u00e9t\u00e9".encode(),
]


async def test_proxy_path_labels_are_escaped(make_proxy: ProxyFactory, counting_app) -> None:
    app = await counting_app()
    proxy = await make_proxy(upstream=app.url, unmatched_routes="raw")
    for path in RAW_PATHS:
        raw = b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        status = split_response(await raw_exchange(proxy.url, raw))[0]
        assert status < 500  # the app's answer (200, or its router's 404) or the proxy's 400
    weird = b'FOO"BAR /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'
    split_response(await raw_exchange(proxy.url, weird))
    text = proxy.metrics_text()
    list(parse_text(text))
    assert "fake_metric" not in {f.name for f in parse_text(text)}
    check = check_metrics(text)
    assert check.passes, check.unexpected
