"""Issue 15 (8): ``service.instance.id`` is the same at every restart of one instance.

The rule (`sidecar.instance`) as a table, then the real process started twice: the id in
``target_info`` and in the resource it pushes over OTLP is the same for one pod (or one
host and admin address) and differs between pods.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from prometheus_client.parser import text_string_to_metric_families

from sidecar.instance import NAMESPACE, Host, stable_instance_id
from sidecar.observability import own_resource
from tests.support.process import http_get, local_ports, run_sidecar, wait_until

POD = {"k8s.namespace.name": "shop", "k8s.pod.name": "app-0", "k8s.container.name": "sidecar"}
HOST = Host(machine_id="0123456789abcdef", hostname="node-1")


def v5(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


@pytest.mark.parametrize(
    ("attributes", "discriminator", "host", "expected"),
    [
        (POD, "", HOST, v5("shop.app-0.sidecar")),
        (POD, "0.0.0.0:9464", Host("other", "other"), v5("shop.app-0.sidecar")),  # pod wins
        ({**POD, "k8s.pod.name": "app-1"}, "", HOST, v5("shop.app-1.sidecar")),
        ({"k8s.pod.name": "app-0"}, "", HOST, v5(".app-0.")),
        ({}, "0.0.0.0:9464", HOST, v5("0123456789abcdef.node-1.0.0.0.0:9464")),
        ({}, "0.0.0.0:9465", HOST, v5("0123456789abcdef.node-1.0.0.0.0:9465")),
        ({"k8s.pod.name": ""}, "", Host("", "node-2"), v5(".node-2.")),
    ],
)
def test_the_instance_id_rule(
    attributes: dict[str, str], discriminator: str, host: Host, expected: str
) -> None:
    assert stable_instance_id(attributes, discriminator=discriminator, host=host) == expected


def test_an_explicit_instance_id_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=mine,k8s.pod.name=p")
    assert own_resource("svc").attributes["service.instance.id"] == "mine"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=p,k8s.namespace.name=n")
    resource = own_resource("svc")
    assert resource.attributes["service.instance.id"] == v5("n.p.")
    assert resource.attributes["k8s.pod.name"] == "p"


class _Collector(http.server.BaseHTTPRequestHandler):
    """A stand-in OTLP/HTTP receiver: keeps each request's resource ``service.instance.id``."""

    seen: list[str]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportMetricsServiceRequest.FromString(body)
        for rm in request.resource_metrics:
            for kv in rm.resource.attributes:
                if kv.key == "service.instance.id":
                    self.seen.append(kv.value.string_value)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def collector() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Collector,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/metrics", seen
    finally:
        server.shutdown()
        server.server_close()


def start_once(tmp_path: Path, endpoint: str, admin_port: int, resource: str | None) -> str:
    """Run the real sidecar once; its ``target_info`` instance id (after its final push)."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "proxy: {enabled: false}\n"
        "shutdown: {drain_delay: 0s, drain_timeout: 5s}\n"
        f"export: {{otlp: {{endpoint: {endpoint}, interval: 1h}}}}\n"
    )
    ports = local_ports("otlp")
    admin = f"127.0.0.1:{admin_port}"
    args = ["run", "--config", str(config), "--admin-listen", admin,
            "--otlp-listen", f"127.0.0.1:{ports['otlp']}"]  # fmt: skip
    env = {"OTEL_RESOURCE_ATTRIBUTES": resource or ""}
    with run_sidecar(args, admin=admin, env=env) as car:
        text = http_get(car.url("/metrics"))[2].decode()
        assert car.stop(signal.SIGTERM) == 0, car.logs()
    (info,) = [
        s
        for f in text_string_to_metric_families(text)
        if f.name in ("target", "target_info")
        for s in f.samples
    ]
    return info.labels["service_instance_id"]


def test_restarts_keep_the_id_and_pods_differ(tmp_path: Path) -> None:
    pod = "k8s.namespace.name=shop,k8s.pod.name={},k8s.container.name=causality-sidecar"
    port = local_ports("admin")["admin"]
    with collector() as (endpoint, pushed):
        first = start_once(tmp_path, endpoint, port, pod.format("app-0"))
        again = start_once(tmp_path, endpoint, port, pod.format("app-0"))
        other = start_once(tmp_path, endpoint, port, pod.format("app-1"))
        host = start_once(tmp_path, endpoint, port, None)
        host_again = start_once(tmp_path, endpoint, port, None)
        wait_until(lambda: len(pushed) >= 5, 10, "the five final pushes")
    assert first == again == v5("shop.app-0.causality-sidecar")
    assert other == v5("shop.app-1.causality-sidecar")
    assert host == host_again
    assert len({first, other, host}) == 3
    assert pushed == [first, again, other, host, host_again]
