"""Codec and shadow schema: shadow parse == real parse (decompression: tests/foundation/test_inflate.py)."""

from __future__ import annotations

from google.protobuf import json_format

from sidecar.ingest import translate
from sidecar.ingest.codec import (
    Encoding,
    decode_request,
)
from sidecar.ingest.shadow import ShadowExportRequest
from sidecar.ingest.translate import TranslationRules, Translator
from tests.support.otlp import (
    PROMOTE,
    counter,
    epoint,
    exponential,
    gauge,
    histogram,
    hpoint,
    number,
    request,
    summary,
)


def _rich_request():
    return request(
        counter(
            "c",
            [number(1, {"s": "x", "b": True, "arr": [1, "a"], "d": 1.5}), number(2, {"s": "y"})],
            unit="By",
        ),
        gauge("g", [number(3.5, {"q": 'a"b'})]),
        histogram("h", [hpoint([1.0, 2.0], [1, 2, 3], 4.0, {"k": "v"})]),
        exponential("e", [epoint(1, (-2, [1, 2]), labels={"k": "v"})]),
        summary("s", [(0.5, 1.0)], 2.0, 3, {"k": "v"}),
        resource={"service.name": "a", "host.name": "h"},
    )


def test_shadow_parse_translates_like_the_real_class():
    body = _rich_request().SerializeToString()
    rules = TranslationRules(PROMOTE)
    real = Translator(rules).translate(
        decode_request(json_format.MessageToJson(_rich_request()).encode(), Encoding.JSON)
    )
    translator = Translator(rules)
    shadow = decode_request(body, Encoding.PROTOBUF)
    assert isinstance(shadow, ShadowExportRequest)
    first = translator.translate(shadow)
    second = translator.translate(
        decode_request(body, Encoding.PROTOBUF)
    )  # label sets from the cache
    assert first == real
    assert second == real


def test_label_set_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(translate, "LABEL_SET_CACHE_MAX", 10)
    translator = Translator(TranslationRules(PROMOTE, scope_labels=False))
    for i in range(25):
        req = request(
            gauge("g", [number(1, {"k": i})]), resource={"service.instance.id": f"pod-{i}"}
        )
        batch = translator.translate(decode_request(req.SerializeToString(), Encoding.PROTOBUF))
        assert batch.metrics[0].points[0].labels == f'k="{i}",service_instance_id="pod-{i}"'
    assert 0 < translator.cached_label_sets <= 10
