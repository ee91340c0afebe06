"""``ingest.translation_strategy``: golden tables per strategy and per scraper escaping.

Names and label names kept UTF-8 (``NoUTF8EscapingWithSuffixes``, ``NoTranslation``)
reach only a scraper that asked ``escaping=allow-utf-8``; every other scraper gets them
escaped by the scheme it asked for, and its text answer passes promtool.
"""

from __future__ import annotations

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar.config import ConfigError, load_config
from sidecar.ingest.collector import OtlpCollector
from sidecar.ingest.naming import TranslationStrategy
from sidecar.ingest.store import MetricStore, StoreLimits
from sidecar.ingest.translate import TranslationRules, Translator
from sidecar.negotiation import negotiate
from sidecar.unified import UnifiedCollector
from tests.support.otlp import counter, gauge, histogram, hpoint, number, request
from tests.support.prometheus import check_metrics

S = TranslationStrategy
TEXT = "text/plain;version=0.0.4"
UTF8 = "text/plain;version=1.0.0;escaping=allow-utf-8"
DOTS = "text/plain;version=1.0.0;escaping=dots"
VALUES = "application/openmetrics-text;version=1.0.0;escaping=values"
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


def _collector(strategy: TranslationStrategy) -> OtlpCollector:
    store = MetricStore(StoreLimits(), clock=lambda: 0.0)
    translator = Translator(
        TranslationRules((), scope_labels=False, target_info=False, strategy=strategy)
    )
    req = request(
        counter(
            "http.server.requests",
            [number(3, {"http.method": "GET"})],
            unit="{request}",
            description="requests",
        ),
        gauge(
            "process.memory.usage", [number(5, {"net/peer": "a"})], unit="By", description="memory"
        ),
        histogram(
            "rpc.duration",
            [hpoint([1.0], [1, 1], 2.5, {"ok": "x"})],
            unit="s",
            description="duration",
        ),
        resource={},
    )
    store.apply(translator.translate(req))
    return OtlpCollector(store, utf8_labels=not strategy.escapes)


def _samples(strategy: TranslationStrategy, accept: str) -> list[str]:
    body = UnifiedCollector([_collector(strategy)]).render(accept, "").body.decode()
    return [
        line
        for line in body.splitlines()
        if line and not line.startswith("#") and "_created" not in line and 'le="+Inf"' not in line
    ]


GOLDEN = {
    (S.UNDERSCORE_ESCAPING_WITH_SUFFIXES, TEXT): [
        'http_server_requests_total{http_method="GET"} 3.0',
        'process_memory_usage_bytes{net_peer="a"} 5.0',
        'rpc_duration_seconds_bucket{le="1.0",ok="x"} 1.0',
        'rpc_duration_seconds_count{ok="x"} 2.0',
        'rpc_duration_seconds_sum{ok="x"} 2.5',
    ],
    (S.UNDERSCORE_ESCAPING_WITHOUT_SUFFIXES, TEXT): [
        'http_server_requests_total{http_method="GET"} 3.0',
        'process_memory_usage{net_peer="a"} 5.0',
        'rpc_duration_bucket{le="1.0",ok="x"} 1.0',
        'rpc_duration_count{ok="x"} 2.0',
        'rpc_duration_sum{ok="x"} 2.5',
    ],
    (S.NO_UTF8_ESCAPING_WITH_SUFFIXES, UTF8): [
        '{"http.server.requests_total","http.method"="GET"} 3.0',
        '{"process.memory.usage_bytes","net/peer"="a"} 5.0',
        '{"rpc.duration_seconds_bucket",le="1.0",ok="x"} 1.0',
        '{"rpc.duration_seconds_count",ok="x"} 2.0',
        '{"rpc.duration_seconds_sum",ok="x"} 2.5',
    ],
    (S.NO_UTF8_ESCAPING_WITH_SUFFIXES, TEXT): [
        'http_server_requests_total{http_method="GET"} 3.0',
        'process_memory_usage_bytes{net_peer="a"} 5.0',
        'rpc_duration_seconds_bucket{le="1.0",ok="x"} 1.0',
        'rpc_duration_seconds_count{ok="x"} 2.0',
        'rpc_duration_seconds_sum{ok="x"} 2.5',
    ],
    (S.NO_UTF8_ESCAPING_WITH_SUFFIXES, DOTS): [
        'http_dot_server_dot_requests_total{http_dot_method="GET"} 3.0',
        'process_dot_memory_dot_usage__bytes{net__peer="a"} 5.0',
        'rpc_dot_duration__seconds_bucket{le="1.0",ok="x"} 1.0',
        'rpc_dot_duration__seconds_count{ok="x"} 2.0',
        'rpc_dot_duration__seconds_sum{ok="x"} 2.5',
    ],
    (S.NO_TRANSLATION, UTF8): [
        '{"http.server.requests_total","http.method"="GET"} 3.0',
        '{"process.memory.usage","net/peer"="a"} 5.0',
        '{"rpc.duration_bucket",le="1.0",ok="x"} 1.0',
        '{"rpc.duration_count",ok="x"} 2.0',
        '{"rpc.duration_sum",ok="x"} 2.5',
    ],
    (S.NO_TRANSLATION, VALUES): [
        'U__http_2e_server_2e_requests_total{U__http_2e_method="GET"} 3.0',
        'U__process_2e_memory_2e_usage{U__net_2f_peer="a"} 5.0',
        'U__rpc_2e_duration_bucket{le="1.0",ok="x"} 1.0',
        'U__rpc_2e_duration_count{ok="x"} 2.0',
        'U__rpc_2e_duration_sum{ok="x"} 2.5',
    ],
}


@pytest.mark.parametrize(("strategy", "accept"), list(GOLDEN), ids=lambda v: str(v).split(";")[-1])
def test_golden(strategy, accept):
    assert _samples(strategy, accept) == GOLDEN[strategy, accept]


@pytest.mark.parametrize("strategy", list(S), ids=str)
@pytest.mark.parametrize(
    "accept", [TEXT, UTF8, DOTS, VALUES, PROMETHEUS_3, "application/openmetrics-text"]
)
def test_every_answer_parses_and_utf8_only_when_asked(strategy, accept):
    body = UnifiedCollector([_collector(strategy)]).render(accept, "").body
    negotiated = negotiate(accept)
    families = list((parse_om if negotiated.openmetrics else parse_text)(body.decode()))
    names = {f.name for f in families} | {k for f in families for s in f.samples for k in s.labels}
    utf8 = {n for n in names if "." in n or "/" in n}
    if accept in (UTF8, PROMETHEUS_3) and not strategy.escapes:
        assert utf8 == {
            "http.server.requests",
            "http.method",
            "process.memory.usage" + ("_bytes" if strategy.suffixes else ""),
            "net/peer",
            "rpc.duration" + ("_seconds" if strategy.suffixes else ""),
        }
    else:
        assert utf8 == set()
    if not negotiated.openmetrics and accept != UTF8:
        check = check_metrics(body)
        assert check.passes, check.findings


def test_the_fast_path_sends_quoted_labels_to_utf8_scrapers_only():
    """With ``allow-utf-8`` the families write themselves (quoted label names); otherwise
    they go through the escaping path, with the same values."""
    unified = UnifiedCollector([_collector(S.NO_UTF8_ESCAPING_WITH_SUFFIXES)])
    assert '"http.method"="GET"' in unified.render(UTF8, "").body.decode()


def test_the_config_key():
    config = load_config(env={}, overrides={"ingest.translation_strategy": "NoTranslation"})
    assert S(config.ingest.translation_strategy) is S.NO_TRANSLATION
    default = load_config(env={}).ingest.translation_strategy
    assert default == S.UNDERSCORE_ESCAPING_WITH_SUFFIXES
    with pytest.raises(ConfigError, match=r"^ingest\.translation_strategy"):
        load_config(env={}, overrides={"ingest.translation_strategy": "Underscores"})
