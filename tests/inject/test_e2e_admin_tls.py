"""End to end: a base config with ``admin.tls``, injected by ``causality-sidecar inject``; the
sidecar run on loopback with exactly the injected args and environment, its certificate in
the directory the injection mounts the Secret at; the kubelet's view (the injected HTTPS
probes, no certificate check) and a real Prometheus (deploy/prometheus/scrape-kubernetes.yaml,
fed the injected pod's annotations through file SD as test_e2e_inject does, plus the
``tls_config`` a user adds) both reach the admin port over HTTPS.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.request
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
from tests.support.process import free_port, run_sidecar, wait_until
from tests.support.prometheus import start_prometheus
from tests.support.tls import Pki

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: observability}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels: {{app: web}}
      annotations: {{sidecar.causality.dev/admin-tls-secret: web-metrics-tls}}
    spec:
      containers:
        - name: web
          image: docker.io/library/nginx:1.27
          ports: [{{name: http, containerPort: {http}}}]
"""


def _kubelet_get(url: str) -> int:
    """An HTTPS probe as the kubelet makes it: the certificate is not verified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return int(response.status)
    except OSError:
        return 0


def test_an_injected_admin_tls_sidecar_is_probed_and_scraped_over_https(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pair = pki.server("admin", "127.0.0.1")
    secret_dir = tmp_path / "secret"  # where the kubelet would mount the Secret's keys
    secret_dir.mkdir()
    (secret_dir / "tls.crt").write_bytes(pair.cert.read_bytes())
    (secret_dir / "tls.key").write_bytes(pair.key.read_bytes())
    tls = {"cert_file": str(secret_dir / "tls.crt"), "key_file": str(secret_dir / "tls.key")}
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"admin": {"tls": tls}}))
    ports = {name: free_port() for name in ("http", "proxy", "admin", "ingest")}
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "inject", "--image", IMAGE, "--sidecar-config", str(base),
         "--proxy-port", str(ports["proxy"]), "--admin-port", str(ports["admin"]),
         "--ingest-port", str(ports["ingest"]), "-"],
        input=DEPLOYMENT.format(http=ports["http"]), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after: dict[str, Any] = yaml.safe_load(done.stdout)
    template = after["spec"]["template"]
    sidecar = containers(template)["causality-sidecar"]
    [mount] = [m for m in sidecar["volumeMounts"] if m["mountPath"] == str(secret_dir)]
    [volume] = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "web-metrics-tls"
    env = kubelet_env(sidecar["env"], {"metadata.name": POD_NAME, "metadata.namespace": NAMESPACE})
    env["SIDECAR_LISTEN"] = f"127.0.0.1:{ports['proxy']}"  # 0.0.0.0 -> loopback, same port
    env["SIDECAR_ADMIN_LISTEN"] = f"127.0.0.1:{ports['admin']}"
    with run_sidecar(sidecar["args"], env=env, wait_ready=False) as process:
        for name in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = sidecar[name]["httpGet"]
            assert probe["scheme"] == "HTTPS", name
            port = port_named(template, probe["port"])
            url = f"https://127.0.0.1:{port}{probe['path']}"
            wait_until(lambda u=url: _kubelet_get(u) == 200, 30, f"{name} {url}")
        sd_file = tmp_path / "pods.json"
        sd_file.write_text(json.dumps(kubernetes_sd_targets(Render((after,), ""), POD_NAME)))
        scrape = kubernetes_config_with_file_sd(sd_file)["scrape_configs"]
        for job in scrape:
            job["tls_config"] = {"ca_file": str(pki.ca_file)}  # what a user adds for https
        prometheus = start_prometheus(tmp_path / "prometheus", scrape, scrape_interval="1s")
        try:
            [target] = prometheus.wait_for_targets_up(1, timeout=30)
            assert target["scrapeUrl"] == f"https://127.0.0.1:{ports['admin']}/metrics"
            assert prometheus.wait_for_result("up == 1", timeout=30).values() == [1.0]
        finally:
            prometheus.stop()
        assert process.proc.poll() is None, process.logs()
