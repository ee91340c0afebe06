"""tests/support/prometheus.py: the real Prometheus and promtool helpers do what they say."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import prometheus
from tests.support.prometheus import (
    PromQLError,
    check_metrics,
    running_prometheus,
    static_scrape_config,
)

EXPOSITION = b"""\
# HELP demo_requests_total Requests.
# TYPE demo_requests_total counter
demo_requests_total{path="/a"} 7
# HELP demo_temperature_celsius A gauge.
# TYPE demo_temperature_celsius gauge
demo_temperature_celsius 21.5
"""

MILLISECONDS_HISTOGRAM = """\
# HELP http_request_duration_milliseconds Duration.
# TYPE http_request_duration_milliseconds histogram
http_request_duration_milliseconds_bucket{le="1"} 1
http_request_duration_milliseconds_bucket{le="+Inf"} 1
http_request_duration_milliseconds_sum 0.5
http_request_duration_milliseconds_count 1
"""


@pytest.mark.parametrize(
    ("text", "returncode", "passes"),
    [
        pytest.param(EXPOSITION.decode(), 0, True, id="clean"),
        pytest.param(MILLISECONDS_HISTOGRAM, 3, True, id="milliseconds-allowed"),
        pytest.param(
            "# HELP jobs Jobs.\n# TYPE jobs counter\njobs 1\n", 3, False, id="counter-no-total"
        ),
        pytest.param("# TYPE jobs_total counter\njobs_total 1\n", 3, False, id="no-help"),
        pytest.param('garbage{{"\n', 1, False, id="parse-error"),
    ],
)
def test_check_metrics_implements_design_rule(text: str, returncode: int, passes: bool) -> None:
    result = check_metrics(text)
    assert result.returncode == returncode, result
    assert result.passes is passes, result


def test_check_metrics_reports_the_unexpected_finding_only() -> None:
    text = MILLISECONDS_HISTOGRAM + "# HELP jobs Jobs.\n# TYPE jobs counter\njobs 1\n"
    result = check_metrics(text)
    assert not result.passes
    assert result.unexpected == ('jobs counter metrics should have "_total" suffix',)


@pytest.fixture
def exposition_target() -> Iterator[str]:
    """A plain HTTP server on loopback that serves EXPOSITION at /metrics; yields host:port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(EXPOSITION)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_server_scrapes_queries_and_stops(tmp_path: Path, exposition_target: str) -> None:
    scrape = static_scrape_config("demo", exposition_target, labels={"namespace": "ns"})
    with running_prometheus(tmp_path, [scrape]) as prom:
        assert prom.url.startswith("http://127.0.0.1:")
        [target] = prom.wait_for_targets_up()
        assert target["labels"]["job"] == "demo"
        assert target["scrapeUrl"] == f"http://{exposition_target}/metrics"

        answer = prom.wait_for_result('demo_requests_total{namespace="ns"}')
        assert answer.result_type == "vector"
        assert answer.values() == [7.0]
        assert answer.series[0]["path"] == "/a"
        assert prom.query("demo_temperature_celsius").values() == [21.5]
        assert prom.query("no_such_metric").is_empty

        prom.wait_for_scrapes(2)
        now = time.time()
        span = prom.query_range("demo_temperature_celsius", now - 30, now, step=1)
        assert span.result_type == "matrix"
        assert len(span.result[0]["values"]) >= 2

        with pytest.raises(PromQLError, match="parse error"):
            prom.query("sum(rate(demo_requests_total[1m])")
        with pytest.raises(PromQLError):
            prom.query("rate(demo_temperature_celsius)")  # a range vector is required
    assert prom.process.poll() is not None, "the server must be stopped at the end"


def test_factory_fixture_reports_a_down_target(
    prometheus_factory: prometheus.PrometheusFactory,
) -> None:
    dead = f"127.0.0.1:{prometheus.free_port()}"
    prom = prometheus_factory([static_scrape_config("dead", dead)])

    def down() -> list[dict[str, object]] | None:
        targets = prom.targets()
        return targets if targets and targets[0]["health"] == "down" else None

    [target] = prometheus.poll(down, 30, lambda: "the dead target reported down")
    assert target["lastError"]
    assert prom.wait_for_result("up == 0").values() == [0.0]


def test_a_bad_config_is_reported_with_the_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="prometheus did not start"):
        prometheus.start_prometheus(tmp_path, [{"job_name": "x", "no_such_key": 1}])


@pytest.mark.parametrize(("ci", "outcome"), [("true", "fail"), ("", "skip")])
def test_missing_tool_fails_in_ci_and_skips_locally(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr("os.geteuid", lambda: 1000)  # not root: no apt-get
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected, match="no-such-tool-xyz not found"):
        prometheus.require_tool("no-such-tool-xyz", package="no-such-package")
