"""The whole-body scan of `sidecar.merge.rawtext` (`_runs.scan_text`) against the
block-by-block way and prometheus_client.

A text body without configured labels, laid out as client_golang and prometheus_client
write it, is cut into its families in one C pass; anything else is left to the
block-by-block way. Whatever the scan takes must read exactly as that way reads it
(families, HELP, types, the very text of every sample line) and as prometheus_client
reads it; the table says what it leaves alone. Real bodies of node_exporter and of
Prometheus's own /metrics must take it (before it, their one-line families went line
by line in Python: ~2.2 ms a scrape of node_exporter, against ~0.3 ms now).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from sidecar.merge import rawtext
from sidecar.merge._runs import scan_text
from sidecar.merge.rawtext import Unsupported, parse_fast
from tests.support.rawtext import (
    Outcome,
    assert_as_prometheus_client,
    bodies,
    mutated,
    rendered,
    use_c_paths,
)


@pytest.fixture(autouse=True, scope="module")
def _c_scan() -> Iterator[None]:
    """The scan is C code: tested whatever ``SIDECAR_NO_EXTENSIONS`` says."""
    with pytest.MonkeyPatch.context() as patch:
        use_c_paths(patch, True)
        yield


def outcome(body: str, whole_body: bool) -> Outcome:
    """What the fast path makes of ``body``, with or without the whole-body scan."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rawtext._Splitter, "whole_body", whole_body)
        try:
            return rendered(parse_fast(body, False, {}))
        except (Unsupported, ValueError) as exc:
            return type(exc).__name__


def assert_scanned_alike(body: str) -> None:
    assert outcome(body, True) == outcome(body, False)
    assert_as_prometheus_client(body, False, {})


GO_LIKE = """\
# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.4e-05
go_gc_duration_seconds{quantile="1"} 0.000102
go_gc_duration_seconds_sum 0.000512
go_gc_duration_seconds_count 9
# HELP go_memstats_alloc_bytes Number of bytes allocated and still in use.
# TYPE go_memstats_alloc_bytes gauge
go_memstats_alloc_bytes 857928
# HELP go_memstats_alloc_bytes_total Total number of bytes allocated, even if freed.
# TYPE go_memstats_alloc_bytes_total counter
go_memstats_alloc_bytes_total 857928
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 2718.05
node_cpu_seconds_total{cpu="0",mode="user"} 104.2
# HELP http_duration_seconds Latency.
# TYPE http_duration_seconds histogram
http_duration_seconds_bucket{le="0.1"} 1
http_duration_seconds_bucket{le="+Inf"} 2
http_duration_seconds_sum 0.3
http_duration_seconds_count 2
# TYPE no_help untyped
no_help{a="x\\"y"} 1
# HELP empty_family Nothing yet.
# TYPE empty_family gauge
"""


def test_a_go_like_body_is_scanned_whole() -> None:
    scanned = scan_text(GO_LIKE)
    assert scanned is not None
    assert [(name, kind, help_text) for name, kind, help_text, *_ in scanned] == [
        (
            "go_gc_duration_seconds",
            "summary",
            "A summary of the pause duration of garbage collection cycles.",
        ),
        ("go_memstats_alloc_bytes", "gauge", "Number of bytes allocated and still in use."),
        (
            "go_memstats_alloc_bytes_total",
            "counter",
            "Total number of bytes allocated, even if freed.",
        ),
        ("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode."),
        ("http_duration_seconds", "histogram", "Latency."),
        ("no_help", "untyped", None),
        ("empty_family", "gauge", "Nothing yet."),
    ]
    name, _, _, header, start, end, label_names = scanned[3]
    assert label_names == ("cpu", "mode")  # every line's, once each
    assert [family[6] for family in scanned] == [
        ("quantile",),
        (),
        (),
        ("cpu", "mode"),
        ("le",),
        ("a",),
        (),
    ]
    assert GO_LIKE[header:start].startswith(f"# HELP {name} ")
    assert GO_LIKE[start:end] == (
        'node_cpu_seconds_total{cpu="0",mode="idle"} 2718.05\n'
        'node_cpu_seconds_total{cpu="0",mode="user"} 104.2\n'
    )
    assert_scanned_alike(GO_LIKE)


# bodies the scan leaves to the block-by-block way (which reads them, or refuses them as
# prometheus_client does)
LEFT_ALONE = {
    "a-plain-comment": "# just a comment\n# TYPE a gauge\na 1\n",
    "type-before-help": "# TYPE a gauge\n# HELP a A.\na 1\n",
    "help-of-another-family": "# HELP b B.\n# TYPE a gauge\na 1\n",
    "help-only": "# HELP a A.\na 1\n",
    "no-type": "a 1\n",
    "empty-braces": "# TYPE a gauge\na{} 1\n",
    "label-twice": '# TYPE a gauge\na{x="1",x="2"} 1\n',
    "name-label": '# TYPE a gauge\na{__name__="b"} 1\n',
    "colon-in-a-label-name": '# TYPE a gauge\na{x:y="1"} 1\n',
    "blank-line": "# TYPE a gauge\na 1\n\n# TYPE b gauge\nb 1\n",
    "no-final-newline": "# TYPE a gauge\na 1",
    "empty-body": "",
    "help-with-a-backslash": "# HELP a A\\\\b.\n# TYPE a gauge\na 1\n",
    "help-with-trailing-space": "# HELP a A. \n# TYPE a gauge\na 1\n",
    "help-with-a-tab-first": "# HELP a \tA.\n# TYPE a gauge\na 1\n",
    "help-without-text-or-space": "# HELP a\n# TYPE a gauge\na 1\n",
    "counter-without-total": "# TYPE a counter\na 1\n",
    "unknown-kind": "# TYPE a info\na 1\n",
    "kind-with-more": "# TYPE a gauge x\na 1\n",
    "two-spaces-before-the-kind": "# TYPE a  gauge\na 1\n",
    "sample-of-another-family": "# TYPE a gauge\nb 1\n",
    "counter-sample-without-total": "# TYPE a_total counter\na 1\n",
    "gauge-with-a-suffix": "# TYPE a gauge\na_count 1\n",
    "summary-bucket": '# TYPE s summary\ns_bucket{le="1"} 1\n',
    "timestamp": "# TYPE a gauge\na 1 1700000000000\n",
    "exemplar-like": '# TYPE a gauge\na 1 # {t="1"} 1\n',
    "trailing-space": "# TYPE a gauge\na 1 \n",
    "space-in-labels": '# TYPE a gauge\na{x="1", y="2"} 1\n',
    "bad-escape": '# TYPE a gauge\na{x="\\t"} 1\n',
    "bad-value": "# TYPE a gauge\na 1e\n",
    "carriage-return": "# TYPE a gauge\na 1\r\n",
}


@pytest.mark.parametrize("body", LEFT_ALONE.values(), ids=LEFT_ALONE)
def test_what_the_scan_leaves_alone(body: str) -> None:
    assert scan_text(body) is None
    assert_scanned_alike(body)


def test_a_repeated_family_is_left_alone() -> None:
    body = "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\na 2\n"
    assert scan_text(body) is not None  # C cuts it; rawtext._scan_text sees "a" twice
    assert rawtext._scan_text(body) is None
    assert outcome(body, True) == "Unsupported"
    assert_scanned_alike(body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bodies())
def test_generated_text_bodies_are_scanned_and_read_alike(case: tuple[str, bool]) -> None:
    body, openmetrics = case
    if openmetrics or not body.isascii():  # (non-ASCII bodies: the block-by-block way)
        return
    assert scan_text(body) is not None  # written as client_golang writes: scanned
    assert_scanned_alike(body)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_mutated_text_bodies_read_alike_either_way(case: tuple[str, bool]) -> None:
    body, openmetrics = case
    if openmetrics or not body.isascii():
        return
    assert outcome(body, True) == outcome(body, False)


def test_a_real_exporters_body_is_scanned_whole(exporter_url: str) -> None:
    with urllib.request.urlopen(exporter_url, timeout=10) as response:
        body = response.read().decode()
    assert body.isascii()
    scanned = scan_text(body)
    assert scanned is not None, "a real Go exporter's body left the fast path"
    assert {kind for _, kind, *_ in scanned} >= {"counter", "gauge", "summary"}
    assert_scanned_alike(body)


def test_parse_small_reads_small_plain_text_bodies_on_the_spot() -> None:
    from sidecar.merge.rawtext import SMALL_BODY, SMALL_DELEGATED, parse_small

    small = parse_small(GO_LIKE, False, {})
    assert small is not None
    assert rendered(small) == outcome(GO_LIKE, True)
    assert parse_small(GO_LIKE, False, {"source": "app"}) is None  # labels: worker thread
    assert parse_small(GO_LIKE, True, {}) is None  # OpenMetrics: worker thread
    big = "# TYPE a gauge\n" + "".join(f'a{{i="{i}"}} 1\n' for i in range(SMALL_BODY // 8))
    assert len(big) > SMALL_BODY
    assert parse_small(big, False, {}) is None
    heavy = "# TYPE s summary\n" + "".join(
        f's{{quantile="0.5",i="{i}"}} 1\n' for i in range(SMALL_DELEGATED // 20)
    )
    assert parse_small(heavy, False, {}) is None  # prometheus_client's part too big
    assert parse_small("# TYPE a gauge\na{} 1\n", False, {}) is None  # not the scan's layout
