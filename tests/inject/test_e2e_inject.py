"""End to end: a plain nginx Deployment injected by ``causality-sidecar inject``, the pod run
on loopback, found and scraped by a real Prometheus through the injected annotations.

The harness is the chart pod test's (tests/deploy/chart.py, ``kubernetes_sd_targets``):
Debian's Prometheus has no Kubernetes service discovery, so its Kubernetes scrape job
(deploy/prometheus/scrape-kubernetes.yaml) reads ``file_sd_configs`` holding what
Kubernetes SD would report for the injected pod (one target per container port, with the
pod's annotations); Prometheus's own relabelling then has to find the sidecar's admin
port and path from the ``prometheus.io/*`` annotations the injection wrote.

Every part is real and started as the pod would start it:
- nginx (Debian's) on the Deployment's ports: ``http`` answering requests, and its own
  metrics (a Prometheus text file it serves) on the port its ``prometheus.io/*``
  annotations named before injection;
- the sidecar: ``causality-sidecar`` with the injected container's args and env (its whole
  config is the ``SIDECAR_CONFIG_YAML`` the injection wrote); only the two listeners the
  kubelet reaches move from 0.0.0.0 to 127.0.0.1, same ports, through ``SIDECAR_LISTEN``
  and ``SIDECAR_ADMIN_LISTEN`` (this sandbox is loopback-only);
- Prometheus, scraping every second.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import NAMESPACE, Render, kubernetes_sd_targets
from tests.support.kubernetes import (
    IMAGE,
    POD_NAME,
    containers,
    kubelet_env,
    kubernetes_config_with_file_sd,
    port_named,
)
from tests.support.nginx import running_nginx
from tests.support.process import SidecarProcess, free_port, http_get, run_sidecar
from tests.support.prometheus import PrometheusServer, poll, start_prometheus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.xdist_group("e2e-inject")]

REQUESTS = 20
APP_METRICS = (
    "# HELP nginx_app_connections_accepted_total Connections the app accepted.\n"
    "# TYPE nginx_app_connections_accepted_total counter\n"
    "nginx_app_connections_accepted_total 1234\n"
)

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: observability
spec:
  replicas: 1
  selector:
    matchLabels: {{app.kubernetes.io/name: web}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: web}}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "{metrics}"
        prometheus.io/path: /app-metrics
        sidecar.causality.dev/routes: "/users/{{id}}"
    spec:
      containers:
        - name: nginx
          image: docker.io/library/nginx:1.27
          ports:
            - {{name: http, containerPort: {http}}}
            - {{name: app-metrics, containerPort: {metrics}}}
          readinessProbe:
            httpGet: {{path: /, port: http}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: observability
spec:
  selector: {{app.kubernetes.io/name: web}}
  ports:
    - {{name: http, port: 80, targetPort: http}}
"""

NGINX_CONF = """\
user root;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{http};
    location / {{ default_type text/plain; return 200 "hello from nginx\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{metrics};
    location = /app-metrics {{ default_type text/plain; alias {dir}/metrics.txt; }}
  }}
}}
"""


@dataclass
class InjectedPod:
    """The injected pod running on loopback."""

    before: dict[str, Any]
    after: dict[str, Any]
    service: dict[str, Any]
    sidecar: SidecarProcess
    prometheus: PrometheusServer
    ports: dict[str, int]


def _inject(text: str, ports: dict[str, int]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sidecar", "inject", "--image", IMAGE]
    command += ["--proxy-port", str(ports["proxy"]), "--admin-port", str(ports["admin"])]
    command += ["--ingest-port", str(ports["ingest"]), "-"]
    return subprocess.run(command, input=text, capture_output=True, text=True, timeout=60)


def _nginx(directory: Path, ports: dict[str, int]) -> contextlib.AbstractContextManager[None]:
    (directory / "metrics.txt").write_text(APP_METRICS)
    conf = NGINX_CONF.format(dir=directory, **ports)
    return running_nginx(directory, conf, (ports["http"], ports["metrics"]))


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InjectedPod]:
    """Inject, then start nginx, the sidecar and Prometheus, once for the module."""
    workdir = tmp_path_factory.mktemp("injected")
    ports = {name: free_port() for name in ("http", "metrics", "proxy", "admin", "ingest")}
    text = MANIFESTS.format(http=ports["http"], metrics=ports["metrics"])
    done = _inject(text, ports)
    assert done.returncode == 0, done.stderr
    [before, _] = yaml.safe_load_all(text)
    [after, service] = yaml.safe_load_all(done.stdout)
    sidecar = containers(after["spec"]["template"])["causality-sidecar"]
    env = kubelet_env(sidecar["env"], {"metadata.name": POD_NAME, "metadata.namespace": NAMESPACE})
    env["SIDECAR_LISTEN"] = f"127.0.0.1:{ports['proxy']}"  # 0.0.0.0 -> loopback, same port
    env["SIDECAR_ADMIN_LISTEN"] = f"127.0.0.1:{ports['admin']}"
    sd_file = workdir / "pods.json"
    sd_file.write_text(json.dumps(kubernetes_sd_targets(Render((after,), ""), POD_NAME)))
    scrape = kubernetes_config_with_file_sd(sd_file)["scrape_configs"]
    nginx_dir = workdir / "nginx"
    nginx_dir.mkdir()
    with (
        _nginx(nginx_dir, ports),
        run_sidecar(sidecar["args"], admin=f"127.0.0.1:{ports['admin']}", env=env) as process,
    ):
        prometheus = start_prometheus(workdir / "prometheus", scrape, scrape_interval="1s")
        try:
            yield InjectedPod(before, after, service, process, prometheus, ports)
        finally:
            prometheus.stop()


def _value(prom: PrometheusServer, expr: str) -> float | None:
    values = prom.query(expr).values()
    return values[0] if values else None


def test_prometheus_finds_the_sidecar_through_the_injected_annotations(pod: InjectedPod) -> None:
    annotations = pod.before["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(pod.ports["metrics"])  # the app's, before
    [target] = pod.prometheus.wait_for_targets_up(1, timeout=30)
    assert target["scrapeUrl"] == f"http://127.0.0.1:{pod.ports['admin']}/metrics"
    assert target["labels"]["pod"] == POD_NAME
    assert len(pod.prometheus.targets()) == 1  # the app's own port is no target any more


def test_the_service_reaches_the_sidecar_and_requests_are_counted_exactly(
    pod: InjectedPod,
) -> None:
    target_port = pod.service["spec"]["ports"][0]["targetPort"]
    assert target_port == "http"  # the Service was not changed...
    template = pod.after["spec"]["template"]
    assert port_named(template, target_port) == pod.ports["proxy"]  # ...and reaches the sidecar
    prom = pod.prometheus
    route = 'sum(http_request_total{path="/users/{id}", status="200"}) or vector(0)'
    every = "sum(http_request_total) or vector(0)"
    prom.wait_for_scrapes(1)
    before = {expr: _value(prom, expr) or 0.0 for expr in (route, every)}
    for user in range(REQUESTS):
        status, _, body = http_get(f"http://127.0.0.1:{pod.ports['proxy']}/users/{user}")
        assert (status, body) == (200, b"hello from nginx\n"), pod.sidecar.logs()
    poll(
        lambda: True if _value(prom, route) == before[route] + REQUESTS else None,
        30,
        lambda: f"{route} == {before[route] + REQUESTS}; now {_value(prom, route)}",
    )
    prom.wait_for_scrapes(2)  # and it stays exact
    for expr, was in before.items():
        assert _value(prom, expr) == was + REQUESTS, expr


def test_the_apps_own_metrics_appear_merged(pod: InjectedPod) -> None:
    prom = pod.prometheus
    result = prom.wait_for_result("nginx_app_connections_accepted_total", timeout=30)
    assert result.values() == [1234.0]
    assert result.series[0]["instance"] == f"127.0.0.1:{pod.ports['admin']}"  # via the sidecar
    merged = prom.wait_for_result(
        'sidecar_merge_scrapes_total{target="app", result="success"} > 0', timeout=30
    )
    assert merged.values()[0] >= 1


def test_the_apps_probe_on_the_swapped_name_now_uses_the_number(pod: InjectedPod) -> None:
    nginx = containers(pod.after["spec"]["template"])["nginx"]
    probe = nginx["readinessProbe"]["httpGet"]
    assert probe["port"] == pod.ports["http"]
    assert http_get(f"http://127.0.0.1:{probe['port']}{probe['path']}")[0] == 200
