"""``sidecar.config.admin.tls`` in the app+sidecar chart: the admin port over HTTPS.

The render (real Helm engine, scenario ``ci/admin-tls``): the Secret named by
``sidecar.adminTlsSecret`` mounted at the directory of ``admin.tls.cert_file``, HTTPS probes,
``prometheus.io/scheme: https``, monitors with ``scheme: https`` and the given ``tlsConfig``,
a ``helm test`` pod trusting the Secret's ``ca.crt``; the same failures as the injector's
(sidecar/inject/baseconfig.py) for a missing Secret or badly placed files.

End to end, every part real: certificates from a throwaway CA (trustme) in a directory
written the way the kubelet writes a Secret volume; the sidecar started with the ConfigMap
config the chart rendered (the mounted directory moved to that one, listeners to loopback);
the probes fetched as the kubelet does (scheme HTTPS, no verification); a real Prometheus
scraping /metrics with the ``tls_config`` the PodMonitor's ``tlsConfig`` becomes (what the
prometheus-operator writes: the Secret's keys as files, ``serverName``); and the ``helm
test`` pod's own script run by ``sh`` with the system curl, the Service's DNS name resolved
to 127.0.0.1 through a ``.curlrc``.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.support.chart import (
    CHART_DIR,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    Render,
    deep_merge,
    kubernetes_sd_targets,
    lint_problems,
    port_of,
    render,
    scenario_values,
    validated_kinds,
)
from tests.support.kubernetes import kubernetes_config_with_file_sd
from tests.support.process import SidecarProcess, free_port, run_sidecar, wait_until
from tests.support.prometheus import PrometheusServer, start_prometheus, static_scrape_config
from tests.support.tls import Pki, SecretVolume

SCENARIO = "admin-tls"
SECRET = "causality-sidecar-admin-tls"
TLS_DIR = "/etc/causality-sidecar-tls"
# The name the helm test verifies (the headless metrics Service) and the monitors' serverName.
SERVICE_DNS = f"{RELEASE}-causality-sidecar-metrics.{NAMESPACE}.svc"
POD_NAME = "demo-causality-sidecar-5f7c9d8b4-tls01"
CRD_KINDS = frozenset({"PodMonitor", "ServiceMonitor", "PrometheusRule"})
_PROBES = {"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}
_MONITORS = (("PodMonitor", "podMetricsEndpoints"), ("ServiceMonitor", "endpoints"))


def _tls_values(**tls: str | None) -> dict[str, Any]:
    """The scenario with ``admin.tls`` replaced by ``tls`` (None drops a file)."""
    values = copy.deepcopy(scenario_values(SCENARIO))
    admin = values["sidecar"]["config"]["admin"]
    admin["tls"] = {k: v for k, v in {**admin["tls"], **tls}.items() if v is not None}
    return values


def _without_tls_config(monitor: str) -> dict[str, Any]:
    """The scenario with ``metrics.MONITOR.tlsConfig`` empty."""
    values = copy.deepcopy(scenario_values(SCENARIO))
    values["metrics"][monitor]["tlsConfig"] = {}
    return values


def _mount(container: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in container["volumeMounts"] if m["name"] == name)


def _volume(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in pod_spec["volumes"] if v["name"] == name)


def _test_pod(rendered: Render) -> dict[str, Any]:
    [pod] = rendered.of_kind("Pod")
    return pod


# --------------------------------------------------------------------------- the render


def test_secret_is_mounted_where_the_config_reads_the_files() -> None:
    rendered = render(scenario_values(SCENARIO))
    tls = rendered.sidecar_config["admin"]["tls"]
    mount = _mount(rendered.sidecar, "admin-tls")
    assert mount == {"name": "admin-tls", "mountPath": TLS_DIR, "readOnly": True}
    for key in ("cert_file", "key_file", "client_ca_file"):
        assert tls[key].rpartition("/")[0] == mount["mountPath"], key
    assert _volume(rendered.pod_spec, "admin-tls") == {
        "name": "admin-tls",
        "secret": {"secretName": SECRET, "defaultMode": 0o440},  # the key: fsGroup only
    }


def test_probes_annotations_and_monitors_speak_https() -> None:
    values = scenario_values(SCENARIO)
    rendered = render(deep_merge(values, {"metrics": {"podAnnotations": True}}))
    for kind, path in _PROBES.items():
        assert rendered.sidecar[f"{kind}Probe"]["httpGet"] == {
            "path": path,
            "port": "metrics",
            "scheme": "HTTPS",
        }, kind
    annotations = rendered.deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https"
    for kind, endpoints in _MONITORS:
        [endpoint] = rendered.one(kind)["spec"][endpoints]
        key = kind[0].lower() + kind[1:]
        assert endpoint["scheme"] == "https", kind
        assert endpoint["tlsConfig"] == values["metrics"][key]["tlsConfig"], kind
    assert "/scheme (https)" in rendered.notes


def test_without_admin_tls_nothing_says_https() -> None:
    """The default render keeps plain HTTP: no scheme, no Secret, tlsConfig ignored."""
    tls_config = scenario_values(SCENARIO)["metrics"]
    rendered = render({"metrics": tls_config})
    assert (
        "prometheus.io/scheme"
        not in rendered.deployment["spec"]["template"]["metadata"]["annotations"]
    )
    for kind in _PROBES:
        assert "scheme" not in rendered.sidecar[f"{kind}Probe"]["httpGet"], kind
    for kind, endpoints in _MONITORS:
        [endpoint] = rendered.one(kind)["spec"][endpoints]
        assert "scheme" not in endpoint
        assert "tlsConfig" not in endpoint
    assert "admin-tls" not in json.dumps(rendered.pod_spec)
    assert "admin-tls" not in json.dumps(_test_pod(rendered))
    assert 'url="http://' in _test_pod(rendered)["spec"]["containers"][0]["args"][0]


@pytest.mark.parametrize("mutual", [True, False], ids=["mutual-tls", "server-tls"])
def test_helm_test_pod_trusts_the_secret_ca(mutual: bool) -> None:
    values = _tls_values() if mutual else _tls_values(client_ca_file=None)
    rendered = render(values)
    pod = _test_pod(rendered)
    [container] = pod["spec"]["containers"]
    assert _mount(container, "admin-tls") == {
        "name": "admin-tls",
        "mountPath": TLS_DIR,
        "readOnly": True,
    }
    assert _volume(pod["spec"], "admin-tls")["secret"] == {
        "secretName": SECRET,
        "defaultMode": 0o440,
    }
    script = container["args"][0]
    assert f'url="https://{SERVICE_DNS}:9464/metrics"' in script
    assert f"--cacert {TLS_DIR}/ca.crt" in script
    client_cert = f"--cert {TLS_DIR}/tls.crt --key {TLS_DIR}/tls.key"
    assert (client_cert in script) is mutual
    assert ("--cert tls.crt --key tls.key" in rendered.notes) is mutual
    assert "curl -sk https://127.0.0.1:9464/readyz" in rendered.notes


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("native", [False, True], ids=["classic", "native"])
def test_https_render_validates_against_kubernetes(kube_version: str, native: bool) -> None:
    values = deep_merge(scenario_values(SCENARIO), {"sidecar": {"native": native}})
    kinds = validated_kinds(render(values), kube_version, skip=CRD_KINDS)
    assert {"Deployment", "ConfigMap", "Pod"} <= set(kinds)


def test_https_render_lints_clean() -> None:
    values = deep_merge(scenario_values(SCENARIO), {"sidecar": {"native": True}})
    assert lint_problems(CHART_DIR, values) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            deep_merge(_tls_values(), {"sidecar": {"adminTlsSecret": ""}}),
            r"sidecar\.config\.admin\.tls is on, but no Secret holds the certificate: set "
            r"sidecar\.adminTlsSecret .* mounted read-only at /etc/causality-sidecar-tls",
        ),
        (
            _tls_values(cert_file="tls/tls.crt"),
            r"sidecar\.config\.admin\.tls\.cert_file: must be an absolute path in the pod",
        ),
        (
            _tls_values(cert_file=None),
            r"sidecar\.config\.admin\.tls\.cert_file is required with admin\.tls",
        ),
        (
            _tls_values(key_file="/etc/other/tls.key"),
            r"sidecar\.config\.admin\.tls\.key_file: must be in the directory of "
            r"admin\.tls\.cert_file \(/etc/causality-sidecar-tls\)",
        ),
        (
            _tls_values(client_ca_file="ca.crt"),
            r"sidecar\.config\.admin\.tls\.client_ca_file: must be in the directory of "
            r"admin\.tls\.cert_file",
        ),
        (
            _tls_values(
                cert_file="/etc/causality-sidecar/tls.crt",
                key_file="/etc/causality-sidecar/tls.key",
                client_ca_file="/etc/causality-sidecar/ca.crt",
            ),
            r"sidecar\.config\.admin\.tls\.cert_file: is in /etc/causality-sidecar, where the "
            r"chart mounts something else",
        ),
        (
            _without_tls_config("podMonitor"),
            r"metrics\.podMonitor\.tlsConfig is empty, but sidecar\.config\.admin\.tls is on",
        ),
        (
            _without_tls_config("serviceMonitor"),
            r"metrics\.serviceMonitor\.tlsConfig is empty, but sidecar\.config\.admin\.tls is on",
        ),
    ],
    ids=[
        "no-secret",
        "relative-cert",
        "no-cert-file",
        "key-elsewhere",
        "client-ca-relative",
        "config-mount-dir",
        "podmonitor-without-tls-config",
        "servicemonitor-without-tls-config",
    ],
)
def test_bad_admin_tls_values_fail_the_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(values)


# ------------------------------------------------------------------------- end to end


@dataclass
class HttpsPod:
    """The rendered sidecar serving HTTPS on loopback, its Secret volume and Prometheus."""

    rendered: Render
    sidecar: SidecarProcess
    admin_port: int
    secret_dir: Path
    workdir: Path
    prometheus: PrometheusServer


def _kubelet_get(port: int, path: str) -> int:
    """An HTTPS probe as the kubelet sends it: no certificate check, no client certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = f"https://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _probe_ready(pod_port: int, sidecar: SidecarProcess) -> bool:
    if sidecar.proc.poll() is not None:
        raise AssertionError(f"sidecar exited: {sidecar.logs()}")
    try:
        return _kubelet_get(pod_port, "/readyz") == 200
    except OSError:
        return False


def _local(path: str, secret_dir: Path) -> str:
    """A path under the mounted Secret's directory, moved to ``secret_dir``."""
    assert path.startswith(TLS_DIR + "/"), path
    return str(secret_dir / path.removeprefix(TLS_DIR + "/"))


def _scrape_config(
    job: str, endpoint: dict[str, Any], port: int, secret_dir: Path
) -> dict[str, Any]:
    """The scrape job the prometheus-operator writes for a monitor endpoint: its SafeTLSConfig
    Secret keys become files (here: the Secret volume's), serverName the name checked."""
    tls_config = endpoint["tlsConfig"]
    prom_tls: dict[str, Any] = {}
    for field, ref in (
        ("ca_file", tls_config.get("ca", {}).get("secret")),
        ("cert_file", tls_config.get("cert", {}).get("secret")),
        ("key_file", tls_config.get("keySecret")),
    ):
        if ref is not None:
            assert ref["name"] == SECRET, ref  # the Secret the chart mounts in the pod
            prom_tls[field] = str(secret_dir / ref["key"])
    if "serverName" in tls_config:
        prom_tls["server_name"] = tls_config["serverName"]
    return static_scrape_config(
        job,
        f"127.0.0.1:{port}",
        metrics_path=endpoint["path"],
        scheme=endpoint["scheme"],
        tls_config=prom_tls,
    )


@pytest.fixture(scope="module")
def https_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsPod]:
    workdir = tmp_path_factory.mktemp("https-pod")
    admin_port, proxy_port, ingest_port = free_port(), free_port(), free_port()
    listeners = {
        "proxy": {"listen": f"0.0.0.0:{proxy_port}"},
        "admin": {"listen": f"0.0.0.0:{admin_port}"},
        "ingest": {"listen": f"127.0.0.1:{ingest_port}"},
        "shutdown": {"drain_delay": "0s", "drain_timeout": "5s"},
    }
    rendered = render(deep_merge(scenario_values(SCENARIO), {"sidecar": {"config": listeners}}))
    # the Secret: a certificate for the Service's DNS name only (not 127.0.0.1), so every
    # verifying client below has to check the name the chart and the docs give
    pki = Pki(workdir / "pki")
    issued = pki.server("admin", SERVICE_DNS)
    secret_dir = workdir / "admin-tls"
    SecretVolume(secret_dir).write(
        {
            "tls.crt": issued.cert.read_bytes(),
            "tls.key": issued.key.read_bytes(),
            "ca.crt": pki.ca_file.read_bytes(),
        }
    )
    config = json.loads(json.dumps(rendered.sidecar_config))
    for section in ("proxy", "admin"):
        config[section]["listen"] = f"127.0.0.1:{port_of(config[section]['listen'])}"
    config["admin"]["tls"] = {k: _local(v, secret_dir) for k, v in config["admin"]["tls"].items()}
    config_file = workdir / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    ports = {p["name"]: p["containerPort"] for p in rendered.sidecar["ports"]}
    with run_sidecar(["run", "--config", str(config_file)], wait_ready=False) as sidecar:
        wait_until(lambda: _probe_ready(ports["metrics"], sidecar), 20, "readyz over HTTPS")
        [endpoint] = rendered.one("PodMonitor")["spec"]["podMetricsEndpoints"]
        with_cert = _scrape_config("podmonitor", endpoint, admin_port, secret_dir)
        only_ca = json.loads(json.dumps(with_cert))
        only_ca["job_name"] = "no-client-cert"
        del only_ca["tls_config"]["cert_file"], only_ca["tls_config"]["key_file"]
        # the annotations, as deploy/prometheus/scrape-kubernetes.yaml reads them (file SD
        # standing in for Kubernetes SD), given the same tls_config
        sd_file = workdir / "pods.json"
        sd_file.write_text(json.dumps(kubernetes_sd_targets(rendered, POD_NAME)))
        [annotations] = kubernetes_config_with_file_sd(sd_file)["scrape_configs"]
        annotations["tls_config"] = with_cert["tls_config"]
        jobs = [with_cert, only_ca, annotations]
        prometheus = start_prometheus(workdir / "prometheus", jobs)
        try:
            yield HttpsPod(rendered, sidecar, admin_port, secret_dir, workdir, prometheus)
        finally:
            prometheus.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.xdist_group("chart-admin-tls")  # one module fixture: one sidecar, one Prometheus
def test_kubelet_probes_pass_over_https_without_a_client_certificate(https_pod: HttpsPod) -> None:
    ports = {p["name"]: p["containerPort"] for p in https_pod.rendered.sidecar["ports"]}
    for kind, path in _PROBES.items():
        get = https_pod.rendered.sidecar[f"{kind}Probe"]["httpGet"]
        assert get["scheme"] == "HTTPS"
        assert _kubelet_get(ports[get["port"]], get["path"]) == 200, (kind, path)
    # /metrics wants the client certificate the kubelet does not have
    assert _kubelet_get(https_pod.admin_port, "/metrics") == 403


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.xdist_group("chart-admin-tls")  # one module fixture: one sidecar, one Prometheus
def test_prometheus_scrapes_with_the_documented_tls_config(https_pod: HttpsPod) -> None:
    prom = https_pod.prometheus
    build_info = prom.wait_for_result('sidecar_build_info{job="podmonitor"}', timeout=30)
    assert build_info.values() == [1.0]

    def refused() -> dict[str, Any] | None:
        found = [t for t in prom.targets() if t["labels"]["job"] == "no-client-cert"]
        return found[0] if found and found[0]["health"] == "down" else None

    wait_until(lambda: refused() is not None, 30, "the job without a client cert down")
    target = refused()
    assert target is not None
    assert "403" in target["lastError"], target
    [up] = [t for t in prom.targets() if t["labels"]["job"] == "podmonitor"]
    assert up["scrapeUrl"] == f"https://127.0.0.1:{https_pod.admin_port}/metrics"
    assert up["lastError"] == ""


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.xdist_group("chart-admin-tls")  # one module fixture: one sidecar, one Prometheus
def test_scrape_annotations_lead_prometheus_to_https(https_pod: HttpsPod) -> None:
    prom = https_pod.prometheus
    selector = f'sidecar_build_info{{job="kubernetes-pods", pod="{POD_NAME}"}}'
    assert prom.wait_for_result(selector, timeout=30).values() == [1.0]
    [target] = [t for t in prom.targets() if t["labels"]["job"] == "kubernetes-pods"]
    assert target["scrapeUrl"] == f"https://127.0.0.1:{https_pod.admin_port}/metrics"


def _helm_test_script(pod: HttpsPod) -> tuple[str, Path]:
    """The helm test pod's script with its volume mounts moved to local directories, and
    the HOME whose .curlrc resolves the Service's DNS name to 127.0.0.1."""
    [container] = _test_pod(pod.rendered)["spec"]["containers"]
    assert container["command"] == ["sh", "-ec"]
    script: str = container["args"][0]
    local = {"admin-tls": pod.secret_dir, "tmp": pod.workdir / "test-pod-tmp"}
    local["tmp"].mkdir(exist_ok=True)
    for mount in container["volumeMounts"]:
        pattern = re.escape(mount["mountPath"]) + r"(?=/)"
        script = re.sub(pattern, str(local[mount["name"]]), script)
    home = pod.workdir / "curl-home"
    home.mkdir(exist_ok=True)
    resolve = f"{SERVICE_DNS}:{pod.admin_port}:127.0.0.1"
    (home / ".curlrc").write_text(f'resolve = "{resolve}"\n')
    return script, home


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.xdist_group("chart-admin-tls")  # one module fixture: one sidecar, one Prometheus
def test_helm_test_script_reads_metrics_with_curl(https_pod: HttpsPod) -> None:
    script, home = _helm_test_script(https_pod)
    assert "--cert " in script  # mutual TLS: the Secret's certificate is the client's

    def run(text: str) -> subprocess.CompletedProcess[str]:
        env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
        return subprocess.run(
            ["sh", "-ec", text], capture_output=True, text=True, timeout=60, env=env, check=False
        )

    done = run(script)
    assert done.returncode == 0, done.stderr + https_pod.sidecar.logs()
    assert f"lines from https://{SERVICE_DNS}:{https_pod.admin_port}/metrics" in done.stdout
    # without the client certificate the same curl is refused (403): the test is not vacuous
    no_cert = re.sub(r" --cert \S+ --key \S+", "", script).replace("--retry 10", "--retry 0")
    refused = run(no_cert)
    assert refused.returncode == 22, refused.stderr
    assert "403" in refused.stderr
