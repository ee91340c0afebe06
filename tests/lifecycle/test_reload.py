"""Issue 15 item 5: SIGHUP applies everything that needs no new socket, against a real
``causality-sidecar run`` process with a config file.

The file is rewritten, SIGHUP sent, the reload log line polled for; then the effect is
checked from outside: new routes label requests, a new merge target shows in /metrics,
a new export pushes, /debug/config and the status page show the running config, the
log names the keys applied and those that wait for a restart, and a bad file keeps
the running config.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import signal
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.demo.samples import batch_body, envelopes
from tests.support.process import SidecarProcess, http_get, local_ports, run_sidecar, wait_until

APP_METRICS = b"# TYPE app_queue_depth gauge\napp_queue_depth 42\n"


class _AppMetrics(http.server.BaseHTTPRequestHandler):
    """An app's own /metrics: the merge target the reload adds."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(APP_METRICS)))
        self.end_headers()
        self.wfile.write(APP_METRICS)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def collector() -> Iterator[tuple[SidecarProcess, str]]:
    """A second real sidecar whose OTLP receiver the reloaded export pushes to."""
    ports = local_ports("proxy", "admin", "otlp")
    args = [
        "run", "--listen", f"127.0.0.1:{ports['proxy']}",
        "--admin-listen", f"127.0.0.1:{ports['admin']}",
        "--otlp-listen", f"127.0.0.1:{ports['otlp']}",
    ]  # fmt: skip
    with run_sidecar(args, admin=f"127.0.0.1:{ports['admin']}") as car:
        yield car, f"http://127.0.0.1:{ports['otlp']}"


@pytest.fixture
def app_metrics() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AppMetrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def _samples(car: SidecarProcess, name: str) -> list[dict[str, str]]:
    text = http_get(car.url("/metrics"))[2].decode()
    return [
        {**s.labels, "__value__": str(s.value)}
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def _reloads(car: SidecarProcess) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in car.logs().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") in ("reloaded", "reload_failed")]


def _sighup(car: SidecarProcess) -> dict[str, object]:
    """Send SIGHUP; the reload's log record, once it is written."""
    before = len(_reloads(car))
    car.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(_reloads(car)) > before, 10, "the reload logged")
    return _reloads(car)[-1]


def _debug_config(car: SidecarProcess) -> dict[str, object]:
    status, _, body = http_get(car.url("/debug/config"))
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


@contextlib.contextmanager
def _sidecar(
    app: str, config_path: Path, config: str
) -> Iterator[tuple[SidecarProcess, dict[str, int]]]:
    ports = local_ports("proxy", "admin", "otlp")
    config_path.write_text(config)
    args = [
        "run", "--config", str(config_path), "--upstream", f"http://{app}",
        "--listen", f"127.0.0.1:{ports['proxy']}",
        "--admin-listen", f"127.0.0.1:{ports['admin']}",
        "--otlp-listen", f"127.0.0.1:{ports['otlp']}",
    ]  # fmt: skip
    with run_sidecar(args, admin=f"127.0.0.1:{ports['admin']}") as car:
        yield car, ports


V1 = """
proxy: {unmatched_routes: raw}
shutdown: {drain_delay: 0}
"""


def test_sighup_applies_routes_merge_export_and_shows_the_running_config(
    demo_app: str,
    app_metrics: str,
    collector: tuple[SidecarProcess, str],
    tmp_path: Path,
) -> None:
    receiver, otlp = collector
    path = tmp_path / "config.yaml"
    with _sidecar(demo_app, path, V1) as (car, ports):
        proxy = f"http://127.0.0.1:{ports['proxy']}"
        assert http_get(f"{proxy}/users/7")[0] == 200
        assert {s["path"] for s in _samples(car, "http_request_total")} == {"/users/7"}
        assert _samples(car, "app_queue_depth") == []

        path.write_text(f"""
proxy:
  routes: ['/users/{{uid}}']
  unmatched_routes: raw
  connect_timeout: 1s          # waits: the upstream pool is built with it
ingest: {{max_series: 500}}    # waits: the store is built with it
merge:
  targets: [{{name: app, url: '{app_metrics}', labels: {{source: app}}}}]
export:
  otlp: {{endpoint: '{otlp}', interval: 200ms}}
logging: {{level: debug}}
shutdown: {{drain_delay: 0}}
""")
        record = _sighup(car)
        assert record["event"] == "reloaded"
        assert record["applied"] == [
            "proxy.routes", "merge.targets", "export.otlp.endpoint", "export.otlp.interval",
            "logging.level",
        ]  # fmt: skip
        assert record["restart"] == ["proxy.connect_timeout", "ingest.max_series"]
        msg = str(record["msg"])
        assert "waiting for a restart: proxy.connect_timeout, ingest.max_series" in msg

        # the new routes label requests at once
        assert http_get(f"{proxy}/users/8")[0] == 200
        paths = {s["path"] for s in _samples(car, "http_request_total")}
        assert "/users/{uid}" in paths
        # the new merge target is in /metrics
        [depth] = _samples(car, "app_queue_depth")
        assert (depth["source"], float(depth["__value__"])) == ("app", 42)
        # the new export pushes what /metrics serves, merge target included
        wait_until(
            lambda: _samples(receiver, "app_queue_depth"), 10, "a push of the reloaded export"
        )
        assert any(s["result"] == "success" for s in _samples(car, "sidecar_export_total"))
        # the running config: applied keys new, waiting keys still the old values
        running = _debug_config(car)
        assert running["proxy"]["routes"] == ["/users/{uid}"]  # type: ignore[index]
        assert running["merge"]["targets"][0]["name"] == "app"  # type: ignore[index]
        assert running["logging"]["level"] == "debug"  # type: ignore[index]
        assert running["proxy"]["connect_timeout"] == "2s"  # type: ignore[index]
        assert running["ingest"]["max_series"] == 100000  # type: ignore[index]
        page = http_get(car.url("/?refresh=0"))[2].decode()
        assert "/users/{uid}" in page
        assert app_metrics in page

        # a bad file: logged, the running config stays and keeps working
        path.write_text("proxy: {routes: [nope]}\n")
        record = _sighup(car)
        assert record["event"] == "reload_failed"
        assert "proxy.routes: expected a route template" in str(record["msg"])
        assert _debug_config(car) == running
        assert http_get(f"{proxy}/users/9")[0] == 200
        assert len(_samples(car, "app_queue_depth")) == 1

        # removing the target and the export applies too
        path.write_text(V1)
        record = _sighup(car)
        assert "merge.targets" in record["applied"]  # type: ignore[operator]
        assert "export.otlp.endpoint" in record["applied"]  # type: ignore[operator]
        assert record["restart"] == []  # back to what runs: nothing waits
        assert _samples(car, "app_queue_depth") == []
        assert car.stop() == 0


def _post_batch(proxy: str) -> int:
    body = batch_body(list(envelopes(3)))
    request = urllib.request.Request(
        f"{proxy}/v1/events/batch", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_sighup_switches_logging_format_and_turns_events_on(
    demo_app: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.yaml"
    with _sidecar(demo_app, path, V1) as (car, ports):
        proxy = f"http://127.0.0.1:{ports['proxy']}"
        assert _post_batch(proxy) == 200
        assert _samples(car, "causality_events_total") == []  # events are off
        path.write_text("proxy: {unmatched_routes: raw}\nevents: {enabled: true}\n"
                        "logging: {format: text, access_log: true}\nshutdown: {drain_delay: 0}\n")  # fmt: skip
        car.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP: config reloaded" in car.logs(), 10, "the reload logged")
        last = car.logs().splitlines()[-1]
        assert not last.startswith("{")  # text now
        assert (
            "applied: events.enabled, logging.format, logging.access_log; "
            "waiting for a restart: nothing" in last
        )
        assert "GET /users/5 200" not in car.logs()
        assert http_get(f"{proxy}/users/5")[0] == 200
        wait_until(lambda: "GET /users/5 200" in car.logs(), 10, "the access log line")
        assert _post_batch(proxy) == 200

        def counted() -> float:
            return sum(float(s["__value__"]) for s in _samples(car, "causality_events_total"))

        wait_until(lambda: counted() >= 3, 10, "the batch's events counted")
        assert counted() == 3
        assert car.stop() == 0
