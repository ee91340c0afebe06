"""The injection webhook's Helm chart (helm/causality-sidecar-injector), checked like code:
rendered by the real Helm engine, validated against the Kubernetes 1.29+ schemas, and its
chart-generated certificate served by the real webhook, verified with the caBundle alone."""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonpatch
import kubernetes_validate
import pytest
import yaml

from sidecar import __version__
from sidecar.config import config_from_dict
from sidecar.inject.settings import (
    CONFIG_YAML_ENV,
    CONTAINER_NAME,
    INJECT_ANNOTATION,
    NAMESPACE_LABEL,
)
from sidecar.inject.webhook import NAMESPACE_PATH, OPT_IN_PATH
from tests.support.chart import (
    CHART_DIR,
    INJECTOR_CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    SIDECAR_IMAGE_REPOSITORY,
    Render,
    containers,
    deep_merge,
    documented_values,
    kubernetes_sd_targets,
    leaf_paths,
    lint_problems,
    schema_at,
    validated_kinds,
)
from tests.support.kubernetes import kubernetes_config_with_file_sd
from tests.support.process import SidecarProcess, free_port, run_sidecar
from tests.support.prometheus import start_prometheus
from tests.support.pss import violations

CHART = INJECTOR_CHART
SCENARIOS = CHART.scenarios()
FULLNAME = f"{RELEASE}-causality-sidecar-injector"
WEBHOOK_POD = f"{FULLNAME}-6c8d9f7b5-q7x2m"
# cert-manager kinds: kubernetes-validate has no CRD schemas; test_cert_manager_* check them.
CERT_MANAGER_KINDS = frozenset({"Certificate", "Issuer", "ClusterIssuer"})
WEBHOOK_NAMES = {NAMESPACE_PATH: "namespace.sidecar.causality.dev", OPT_IN_PATH: "pod.sidecar.causality.dev"}  # fmt: skip


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> tuple[str, Render]:
    """Each ci/ scenario, rendered once per module."""
    name: str = request.param
    return name, CHART.render(CHART.scenario_values(name))


def webhook_configuration(rendered: Render) -> dict[str, Any]:
    return rendered.one("MutatingWebhookConfiguration")


def webhook_container(rendered: Render) -> dict[str, Any]:
    [container] = rendered.pod_spec["containers"]
    return container


def flag(container: Mapping[str, Any], name: str) -> str | None:
    """The value after ``name`` in the container's args (None when absent)."""
    args: list[str] = container["args"]
    return args[args.index(name) + 1] if name in args else None


def test_every_required_scenario_exists() -> None:
    assert set(SCENARIOS) >= {
        "defaults",
        "cert-manager",
        "cert-manager-issuer",
        "native-sidecar",
        "strict",
    }


def test_every_scenario_sets_the_image() -> None:
    for name in SCENARIOS:
        assert CHART.scenario_values(name)["image"]["repository"], name


# ------------------------------------------------------------------------------ lint


@pytest.mark.parametrize("name", SCENARIOS)
def test_lint_is_clean(name: str) -> None:
    assert lint_problems(CHART.directory, CHART.scenario_values(name)) == []


# ----------------------------------------------------------------- kubernetes schemas


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates_against_kubernetes(
    scenario: tuple[str, Render], kube_version: str
) -> None:
    name, rendered = scenario
    kinds = validated_kinds(rendered, kube_version, skip=CERT_MANAGER_KINDS)
    assert set(kinds) >= {"Deployment", "Service", "MutatingWebhookConfiguration", "Pod"}, name


def test_validation_catches_a_broken_webhook_configuration() -> None:
    """The validator is strict: an unknown webhook field is an error (guards the test)."""
    config = copy.deepcopy(webhook_configuration(CHART.render()))
    config["webhooks"][0]["bogus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(config, KUBE_VERSIONS[0], strict=True)


# ------------------------------------------------------ the MutatingWebhookConfiguration


def test_webhook_configuration_points_at_the_service(scenario: tuple[str, Render]) -> None:
    """Each entry calls the chart's Service on its port, whose targetPort is the webhook's
    HTTPS container port, on a path the webhook serves."""
    name, rendered = scenario
    [service] = rendered.of_kind("Service")
    [service_port] = service["spec"]["ports"]
    container = webhook_container(rendered)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service_port["targetPort"] == "https"
    assert flag(container, "--listen") == f"0.0.0.0:{ports['https']}"
    assert flag(container, "--health-listen") == f"0.0.0.0:{ports['health']}"
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    for entry in webhook_configuration(rendered)["webhooks"]:
        target = entry["clientConfig"]["service"]
        assert target["name"] == service["metadata"]["name"], name
        assert target["namespace"] == NAMESPACE
        assert target["port"] == service_port["port"]
        assert entry["name"] == WEBHOOK_NAMES[target["path"]]


def test_webhook_entries_follow_the_issue(scenario: tuple[str, Render]) -> None:
    name, rendered = scenario
    values = CHART.scenario_values(name).get("webhook", {})
    entries = webhook_configuration(rendered)["webhooks"]
    assert len(entries) == (2 if values.get("annotationOptIn", True) else 1), name
    for entry in entries:
        assert entry["admissionReviewVersions"] == ["v1"]
        assert entry["sideEffects"] == "None"
        assert entry["failurePolicy"] == values.get("failurePolicy", "Ignore")
        assert entry["reinvocationPolicy"] == "IfNeeded"
        assert 1 <= entry["timeoutSeconds"] <= 30
        assert entry["rules"] == [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ]


def _expression_matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector requirement (Kubernetes semantics: NotIn matches an absent key)."""
    key, operator = expression["key"], expression["operator"]
    values = expression.get("values", [])
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    assert operator == "DoesNotExist", operator
    return key not in labels


def _selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    selector = selector or {}
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) and all(
        _expression_matches(e, labels) for e in selector.get("matchExpressions", [])
    )


def _paths_for(rendered: Render, name: str, labels: Mapping[str, str]) -> list[str]:
    """The webhook paths the API server calls for a pod created in namespace ``name``."""
    namespace_labels = {"kubernetes.io/metadata.name": name, **labels}
    return [
        entry["clientConfig"]["service"]["path"]
        for entry in webhook_configuration(rendered)["webhooks"]
        if _selector_matches(entry["namespaceSelector"], namespace_labels)
    ]


ENABLED = {NAMESPACE_LABEL: "enabled"}


@pytest.mark.parametrize(
    ("namespace", "labels", "default_paths", "strict_paths"),
    [
        ("shop", ENABLED, [NAMESPACE_PATH], [NAMESPACE_PATH]),
        ("shop", {}, [OPT_IN_PATH], []),
        ("shop", {NAMESPACE_LABEL: "disabled"}, [OPT_IN_PATH], []),
        ("kube-system", ENABLED, [], []),
        ("kube-system", {}, [], []),
        (NAMESPACE, ENABLED, [], []),
        (NAMESPACE, {}, [], []),
        ("kube-public", ENABLED, [NAMESPACE_PATH], []),
        ("shop", {**ENABLED, "environment": "production-frozen"}, [NAMESPACE_PATH], []),
    ],
    ids=[
        "labelled", "unlabelled", "label-disabled", "kube-system-labelled", "kube-system",
        "own-namespace-labelled", "own-namespace", "strict-excludes-more", "strict-extra-selector",
    ],
)  # fmt: skip
def test_namespace_selectors_send_each_pod_to_one_path_at_most(
    namespace: str, labels: dict[str, str], default_paths: list[str], strict_paths: list[str]
) -> None:
    """Evaluated as the API server does: a labelled namespace's pods go to /mutate (inject
    unless opted out), other namespaces' pods to /mutate/opt-in (the annotation decides),
    kube-system and the release's namespace nowhere; never both paths."""
    assert _paths_for(CHART.render(), namespace, labels) == default_paths
    strict = CHART.render(CHART.scenario_values("strict"))
    assert _paths_for(strict, namespace, labels) == strict_paths


def test_object_selector_is_passed_through() -> None:
    values = CHART.scenario_values("strict")
    for entry in webhook_configuration(CHART.render(values))["webhooks"]:
        assert entry["objectSelector"] == values["webhook"]["objectSelector"]
    for entry in webhook_configuration(CHART.render())["webhooks"]:
        assert "objectSelector" not in entry


# ----------------------------------------------------------------------------- TLS


def _pem(b64: str) -> bytes:
    return base64.b64decode(b64)


def _generated_tls(rendered: Render) -> tuple[bytes, bytes, bytes]:
    """(certificate, key, caBundle) of a render with the chart-generated CA."""
    secret = rendered.one("Secret", "-tls")
    [bundle] = {e["clientConfig"]["caBundle"] for e in webhook_configuration(rendered)["webhooks"]}
    return _pem(secret["data"]["tls.crt"]), _pem(secret["data"]["tls.key"]), _pem(bundle)


def test_generated_tls_secret_is_what_the_webhook_mounts(scenario: tuple[str, Render]) -> None:
    name, rendered = scenario
    if CHART.scenario_values(name).get("certManager", {}).get("enabled"):
        assert not rendered.of_kind("Secret")  # cert-manager writes it
        return
    secret = rendered.one("Secret", "-tls")
    assert secret["type"] == "kubernetes.io/tls"
    cert, key, bundle = _generated_tls(rendered)
    assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY-----" in key
    assert _pem(secret["data"]["ca.crt"]) == bundle
    volume = next(v for v in rendered.pod_spec["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"]["defaultMode"] == 0o440  # the key is not world-readable
    assert (
        rendered.pod_spec["securityContext"]["fsGroup"]
        == rendered.pod_spec["securityContext"]["runAsGroup"]
    )
    container = webhook_container(rendered)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
    assert "subPath" not in mount  # a subPath mount would never see a renewed certificate
    assert flag(container, "--tls-cert") == f"{mount['mountPath']}/tls.crt"
    assert flag(container, "--tls-key") == f"{mount['mountPath']}/tls.key"


class _TlsServer:
    """A stdlib TLS server on loopback serving one certificate (accepts, handshakes, closes)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def __enter__(self) -> _TlsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def handshake(self, client: ssl.SSLContext, server_hostname: str) -> None:
        """One handshake; raises the client's ssl error when it does not verify."""
        import threading

        def serve() -> None:
            conn, _ = self.sock.accept()
            try:
                with self.context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the client refused the certificate

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw,
                client.wrap_socket(raw, server_hostname=server_hostname),
            ):
                pass
        finally:
            thread.join(10)


def _trusting(bundle: bytes) -> ssl.SSLContext:
    """A client context whose only trust anchor is ``bundle`` (PEM)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
    context.load_verify_locations(cadata=bundle.decode("ascii"))
    return context


def _write_tls(tmp_path: Path, cert: bytes, key: bytes) -> tuple[Path, Path]:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(cert)
    key_file.write_bytes(key)
    return cert_file, key_file


def test_ca_bundle_verifies_the_certificate_for_every_service_name(tmp_path: Path) -> None:
    """The caBundle is the CA that signed the served certificate, which holds the Service's
    DNS names (the API server connects to ``<service>.<namespace>.svc``)."""
    rendered = CHART.render()
    cert, key, bundle = _generated_tls(rendered)
    service = rendered.one("Service")["metadata"]["name"]
    _, _, other_bundle = _generated_tls(CHART.render())  # every render makes a new CA
    with _TlsServer(*_write_tls(tmp_path, cert, key)) as server:
        for name in (service, f"{service}.{NAMESPACE}", f"{service}.{NAMESPACE}.svc"):
            server.handshake(_trusting(bundle), name)
        with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch"):
            server.handshake(_trusting(bundle), f"{service}.elsewhere.svc")
        with pytest.raises(ssl.SSLCertVerificationError, match=r"unable to get local issuer"):
            server.handshake(_trusting(other_bundle), f"{service}.{NAMESPACE}.svc")


def _free_ports(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """``values`` with the webhook's two container ports on ports free here."""
    return deep_merge(values or {}, {"webhook": {"port": free_port(), "healthPort": free_port()}})


def _run_rendered_webhook(
    rendered: Render, tmp_path: Path
) -> tuple[int, AbstractContextManager[SidecarProcess]]:
    """The Deployment's webhook container as the pod would run it: its own args, the
    Secret's files and the base config's ConfigMap (`_write_sidecar_config`) written to
    ``tmp_path``, listeners moved from 0.0.0.0 to 127.0.0.1 (same ports; render with
    `_free_ports`). Returns the HTTPS port and the running process."""
    cert, key, _ = _generated_tls(rendered)
    cert_file, key_file = _write_tls(tmp_path, cert, key)
    args = list(webhook_container(rendered)["args"])
    args[args.index("--sidecar-config") + 1] = str(_write_sidecar_config(rendered, tmp_path))
    for name in ("--listen", "--health-listen"):
        index = args.index(name) + 1
        assert args[index].startswith("0.0.0.0:"), args[index]
        args[index] = args[index].replace("0.0.0.0:", "127.0.0.1:", 1)
    args[args.index("--tls-cert") + 1] = str(cert_file)
    args[args.index("--tls-key") + 1] = str(key_file)
    port = int(args[args.index("--listen") + 1].rpartition(":")[2])
    health = args[args.index("--health-listen") + 1]
    return port, run_sidecar([*args, "--drain-delay", "0s"], admin=health)


def _write_sidecar_config(rendered: Render, tmp_path: Path) -> Path:
    """The base config ConfigMap's files where the Deployment mounts it, moved under
    ``tmp_path``; returns the file the webhook's ``--sidecar-config`` names there."""
    container = webhook_container(rendered)
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "sidecar-config"]
    [volume] = [v for v in rendered.pod_spec["volumes"] if v["name"] == mount["name"]]
    config_map = rendered.one("ConfigMap", volume["configMap"]["name"])
    directory = tmp_path / "sidecar-config"
    directory.mkdir(exist_ok=True)
    for key, text in config_map["data"].items():
        (directory / key).write_text(text)
    wanted = flag(container, "--sidecar-config")
    assert wanted is not None
    assert wanted.startswith(mount["mountPath"] + "/")
    return directory / wanted.removeprefix(mount["mountPath"] + "/")


def _post(port: int, context: ssl.SSLContext, hostname: str, path: str, body: str) -> Any:
    connection = http.client.HTTPSConnection(hostname, port, context=context, timeout=10)
    # connect to loopback, but verify the Service's DNS name as the API server does
    connection.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=hostname
    )
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        connection.close()


def _helm_test(rendered: Render) -> tuple[str, str, str]:
    """(url, AdmissionReview JSON, script) of the helm test pod."""
    [pod] = rendered.of_kind("Pod")
    [container] = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    script: str = container["args"][0]
    url = script.split('url="', 1)[1].split('"', 1)[0]
    return url, env["ADMISSION_REVIEW"], script


@pytest.mark.parametrize("name", ["defaults", "native-sidecar", "strict"])
def test_the_rendered_webhook_serves_the_helm_test_review_verified_by_the_ca_bundle(
    name: str, tmp_path: Path
) -> None:
    """End to end on loopback: the real webhook, started with the Deployment's own args and
    the chart-generated certificate, answers the helm test's AdmissionReview on the helm
    test's URL path; the client trusts only the caBundle and checks the Service's name."""
    values = CHART.scenario_values(name)
    rendered = CHART.render(_free_ports(values))
    _, _, bundle = _generated_tls(rendered)
    url, review, _ = _helm_test(rendered)
    hostname, _, rest = url.removeprefix("https://").partition(":")
    path = "/" + rest.partition("/")[2]
    assert hostname == f"{rendered.one('Service')['metadata']['name']}.{NAMESPACE}.svc"
    port, running = _run_rendered_webhook(rendered, tmp_path)
    with running:
        answer = _post(port, _trusting(bundle), hostname, path, review)
        other_ca = _trusting(_generated_tls(CHART.render(values))[2])
        with pytest.raises(ssl.SSLCertVerificationError):
            _post(port, other_ca, hostname, path, review)
    response = answer["response"]
    assert response["allowed"] is True
    assert response["uid"] == json.loads(review)["request"]["uid"]
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    pod = jsonpatch.apply_patch(json.loads(review)["request"]["object"], patch)
    [sidecar] = [c for c in containers(pod["spec"]) if c["name"] == CONTAINER_NAME]
    assert sidecar["image"] == flag(webhook_container(rendered), "--image")  # the chart's
    native = values.get("sidecar", {}).get("native", False)
    assert (sidecar in pod["spec"].get("initContainers", [])) is native
    # the review's app container is not restricted; the injected one is
    assert [v for v in violations(pod["spec"]) if CONTAINER_NAME in v] == []


def test_helm_test_script_passes_against_the_real_webhook(tmp_path: Path) -> None:
    """The helm test pod's own script, run by sh with the real curl against the webhook
    started from the Deployment's args: only the CA file and scratch paths are moved, and
    curl's --connect-to sends the Service's name and port to loopback (the name is still the
    one verified). It fails with another CA, and for a review the webhook does not patch."""
    rendered = CHART.render(_free_ports())
    url, review, script = _helm_test(rendered)
    host_port = url.removeprefix("https://").partition("/")[0]
    _, _, bundle = _generated_tls(rendered)
    port, running = _run_rendered_webhook(rendered, tmp_path)

    def run_script(ca: bytes, admission_review: str) -> subprocess.CompletedProcess[str]:
        ca_file = tmp_path / "ca.crt"
        ca_file.write_bytes(ca)
        local = (
            script.replace("/etc/webhook-ca/ca.crt", str(ca_file))
            .replace("/tmp/answer", str(tmp_path / "answer"))
            .replace("curl ", f"curl --connect-to {host_port}:127.0.0.1:{port} ", 1)
        )
        env = {"PATH": os.environ["PATH"], "ADMISSION_REVIEW": admission_review}
        return subprocess.run(
            ["sh", "-ec", local], capture_output=True, text=True, timeout=60, check=False, env=env
        )

    opted_out = json.loads(review)
    opted_out["request"]["object"]["metadata"]["annotations"][INJECT_ANNOTATION] = "false"
    with running:
        passed = run_script(bundle, review)
        wrong_ca = run_script(_generated_tls(CHART.render())[2], review)
        not_patched = run_script(bundle, json.dumps(opted_out))
    assert passed.returncode == 0, passed.stderr
    assert "answered an allowed review with a JSONPatch" in passed.stdout
    assert wrong_ca.returncode == 60, wrong_ca.stderr  # curl: peer certificate not verified
    assert not_patched.returncode != 0
    assert '"allowed":true' in (tmp_path / "answer").read_text()  # allowed, but no patch


@pytest.mark.timeout(120)
def test_prometheus_scrapes_the_webhook_through_its_pod_annotations(tmp_path: Path) -> None:
    """A real Prometheus with deploy/prometheus/scrape-kubernetes.yaml (Kubernetes SD swapped
    for the file SD of the rendered pod, as test_e2e_pod does) finds the webhook's /metrics
    through the pod's prometheus.io annotations and counts the answers exactly."""
    rendered = CHART.render(_free_ports())
    sd_file = tmp_path / "pods.json"
    sd_file.write_text(json.dumps(kubernetes_sd_targets(rendered, WEBHOOK_POD)))
    scrape = kubernetes_config_with_file_sd(sd_file)["scrape_configs"]
    _, review, _ = _helm_test(rendered)
    opted_out = json.loads(review)
    opted_out["request"]["object"]["metadata"]["annotations"][INJECT_ANNOTATION] = "false"
    hostname = f"{rendered.one('Service')['metadata']['name']}.{NAMESPACE}.svc"
    trusted = _trusting(_generated_tls(rendered)[2])
    port, running = _run_rendered_webhook(rendered, tmp_path)
    with running:
        for body in (review, review, json.dumps(opted_out)):
            _post(port, trusted, hostname, OPT_IN_PATH, body)
        prometheus = start_prometheus(tmp_path / "prometheus", scrape, scrape_interval="1s")
        try:
            injected = prometheus.wait_for_result(
                'sidecar_injector_requests_total{result="injected"} == 2', timeout=60
            )
            skipped = prometheus.wait_for_result(
                'sidecar_injector_requests_total{result="skipped"} == 1', timeout=60
            )
            [target] = prometheus.targets()
        finally:
            prometheus.stop()
    health = webhook_container(rendered)["ports"][1]["containerPort"]
    assert target["health"] == "up"
    assert target["scrapeUrl"] == f"http://127.0.0.1:{health}/metrics"
    [series] = injected.series
    assert series["pod"] == WEBHOOK_POD
    assert series["namespace"] == NAMESPACE
    assert series["app"] == "causality-sidecar-injector"
    assert skipped.values() == [1.0]


def test_cert_manager_self_signed_chain() -> None:
    rendered = CHART.render(CHART.scenario_values("cert-manager"))
    issuers = {d["metadata"]["name"]: d for d in rendered.of_kind("Issuer")}
    certificates = {d["metadata"]["name"]: d for d in rendered.of_kind("Certificate")}
    serving = certificates[f"{FULLNAME}-tls"]
    ca_issuer = issuers[serving["spec"]["issuerRef"]["name"]]
    assert serving["spec"]["issuerRef"] == {
        "name": ca_issuer["metadata"]["name"], "kind": "Issuer", "group": "cert-manager.io",
    }  # fmt: skip
    ca_certificate = next(
        c for c in certificates.values() if c["spec"].get("isCA")
    )  # the CA the Issuer signs with is a Certificate of the self-signed Issuer
    assert ca_issuer["spec"]["ca"]["secretName"] == ca_certificate["spec"]["secretName"]
    root = issuers[ca_certificate["spec"]["issuerRef"]["name"]]
    assert root["spec"] == {"selfSigned": {}}
    for doc in (*issuers.values(), *certificates.values()):
        assert doc["apiVersion"] == "cert-manager.io/v1"
        assert doc["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("name", ["cert-manager", "cert-manager-issuer"])
def test_cert_manager_certificate_serves_the_service(name: str) -> None:
    """cert-manager mode: the Certificate holds the Service's names and writes the Secret the
    webhook mounts; the cainjector fills the caBundle from it (the chart sets none)."""
    values = CHART.scenario_values(name)
    rendered = CHART.render(values)
    certificate = rendered.one("Certificate", "-tls")
    spec = certificate["spec"]
    service = rendered.one("Service")["metadata"]["name"]
    assert spec["dnsNames"] == [service, f"{service}.{NAMESPACE}", f"{service}.{NAMESPACE}.svc"]
    assert "server auth" in spec["usages"]
    volume = next(v for v in rendered.pod_spec["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == spec["secretName"]
    config = webhook_configuration(rendered)
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{certificate['metadata']['name']}"
    )
    assert all("caBundle" not in e["clientConfig"] for e in config["webhooks"])
    wanted = values["certManager"]
    assert spec["duration"] == wanted.get("duration", "2160h")
    assert spec["renewBefore"] == wanted.get("renewBefore", "360h")
    if name == "cert-manager-issuer":
        assert spec["issuerRef"] == {**wanted["issuerRef"], "group": "cert-manager.io"}
        assert not rendered.of_kind("Issuer")


def test_helm_test_pod_mounts_only_the_ca() -> None:
    rendered = CHART.render(CHART.scenario_values("strict"))
    [pod] = rendered.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    assert container["image"] == "docker.io/curlimages/curl:8.11.1"  # pinned
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "webhook-ca")
    assert volume["secret"] == {
        "secretName": rendered.one("Secret", "-tls")["metadata"]["name"],
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    url, review, script = _helm_test(rendered)
    assert url == f"https://sidecar-injector.{NAMESPACE}.svc:8443{OPT_IN_PATH}"
    assert "--cacert /etc/webhook-ca/ca.crt" in script
    assert "--insecure" not in script
    assert " -k " not in script
    request = json.loads(review)["request"]
    assert request["object"]["metadata"]["annotations"] == {INJECT_ANNOTATION: "true"}
    assert request["dryRun"] is True
    # the test pod is not a webhook pod: the Service does not select it
    selector = rendered.one("Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()


# ----------------------------------------------------------------- the Deployment


def test_two_replicas_and_a_disruption_budget_by_default() -> None:
    rendered = CHART.render()
    assert rendered.deployment["spec"]["replicas"] == 2
    budget = rendered.one("PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    anti = rendered.pod_spec["affinity"]["podAntiAffinity"]
    [term] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    strict = CHART.render(CHART.scenario_values("strict"))
    assert strict.deployment["spec"]["replicas"] == 3
    assert strict.one("PodDisruptionBudget")["spec"]["minAvailable"] == 2


@pytest.mark.parametrize(
    ("values", "renders"),
    [
        ({"replicaCount": 1}, False),
        ({"replicaCount": 3, "podDisruptionBudget": {"minAvailable": 3}}, False),
        ({"replicaCount": 3, "podDisruptionBudget": {"minAvailable": 2}}, True),
        ({"replicaCount": 1, "podDisruptionBudget": {"minAvailable": "50%"}}, True),
        ({"replicaCount": 1, "podDisruptionBudget": {"enabled": False}}, True),
    ],
    ids=["one-replica", "min-equals-replicas", "min-below", "percentage", "no-budget"],
)
def test_a_budget_that_blocks_every_drain_fails_the_render(
    values: dict[str, Any], renders: bool
) -> None:
    if renders:
        CHART.render(values)
    else:
        with pytest.raises(
            helm.HelmError, match=r"minAvailable \(\d+\) must be below replicaCount"
        ):
            CHART.render(values)


def test_pods_meet_the_restricted_profile(scenario: tuple[str, Render]) -> None:
    name, rendered = scenario
    pods = [rendered.pod_spec] + [p["spec"] for p in rendered.of_kind("Pod")]
    for pod in pods:
        assert violations(pod) == [], name
        assert pod["automountServiceAccountToken"] is False
        for container in containers(pod):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert "resources" in container, container["name"]


def test_probes_use_the_plain_http_health_port(scenario: tuple[str, Render]) -> None:
    _, rendered = scenario
    container = webhook_container(rendered)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    annotations = rendered.deployment["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert annotations["prometheus.io/port"] == str(ports["health"])


def test_webhook_args_carry_the_injection_settings(scenario: tuple[str, Render]) -> None:
    name, rendered = scenario
    values = CHART.scenario_values(name)
    container = webhook_container(rendered)
    sidecar = values.get("sidecar", {})
    image = sidecar.get("image", {})
    repository = image.get("repository") or values["image"]["repository"]
    tag = image.get("tag") or values["image"].get("tag") or __version__
    assert flag(container, "--image") == f"{repository}:{tag}"
    assert flag(container, "--namespace") == NAMESPACE
    assert ("--native" in container["args"]) is sidecar.get("native", False)
    assert flag(container, "--upstream-port") == (
        str(sidecar["upstreamPort"]) if sidecar.get("upstreamPort") else None
    )
    assert flag(container, "--config-map") is None  # the base config needs no ConfigMap per pod
    assert flag(container, "--sidecar-config") == (
        "/etc/causality-sidecar-injector/sidecar-config/config.yaml"
    )
    assert flag(container, "--admin-tls-secret") == (sidecar.get("adminTlsSecret") or None)


def test_image_repository_is_required() -> None:
    """The image is published nowhere: an install without image.repository fails with a
    message naming the value; the sidecar image defaults to it."""
    for values in ({}, {"image": {"repository": ""}}):
        with pytest.raises(helm.HelmError, match=r"image\.repository is required"):
            CHART.render(values, with_required=False)
    rendered = CHART.render({"image": {"repository": "r.example/cs", "tag": "1.2.3"}})
    assert webhook_container(rendered)["image"] == "r.example/cs:1.2.3"
    assert flag(webhook_container(rendered), "--image") == "r.example/cs:1.2.3"
    assert "(image r.example/cs:1.2.3)" in rendered.notes
    chart = yaml.safe_load((CHART.directory / "Chart.yaml").read_text())
    default = CHART.render()
    assert (
        webhook_container(default)["image"] == f"{SIDECAR_IMAGE_REPOSITORY}:{chart['appVersion']}"
    )


# ---------------------------------------------------------- the default sidecar config


def test_the_base_config_is_one_config_map_mounted_into_the_webhook(
    scenario: tuple[str, Render],
) -> None:
    """sidecar.config is rendered once, in the release's namespace, and mounted as a
    directory (no subPath: an update reaches the file, and the webhook re-reads it)."""
    name, rendered = scenario
    [config_map] = rendered.of_kind("ConfigMap")
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert (
        config_map["metadata"]["name"]
        == f"{rendered.deployment['metadata']['name']}-sidecar-config"
    )
    values = deep_merge(yaml.safe_load((CHART.directory / "values.yaml").read_text()), CHART.scenario_values(name))  # fmt: skip
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == values["sidecar"]["config"]
    container = webhook_container(rendered)
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "sidecar-config"]
    assert "subPath" not in mount
    assert mount["readOnly"] is True
    [volume] = [v for v in rendered.pod_spec["volumes"] if v["name"] == "sidecar-config"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert flag(container, "--sidecar-config") == f"{mount['mountPath']}/config.yaml"


def test_the_rendered_webhook_injects_the_base_config(
    scenario: tuple[str, Render], tmp_path: Path
) -> None:
    """The webhook started from the Deployment's args with the ConfigMap's file puts the
    base config into the injected pod's SIDECAR_CONFIG_YAML, which `check-config` loads
    (for admin.tls, only the certificate files, mounted from the Secret in a cluster, are
    missing here); the drain fits in the injected pod's grace period."""
    name, _ = scenario
    values = CHART.scenario_values(
        name
    )  # certificates by the chart (cert-manager's: no Secret here)
    rendered = CHART.render(_free_ports(deep_merge(values, {"certManager": {"enabled": False}})))
    _, _, bundle = _generated_tls(rendered)
    url, review, _ = _helm_test(rendered)
    hostname, _, rest = url.removeprefix("https://").partition(":")
    port, running = _run_rendered_webhook(rendered, tmp_path)
    with running:
        answer = _post(port, _trusting(bundle), hostname, "/" + rest.partition("/")[2], review)
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    pod = jsonpatch.apply_patch(json.loads(review)["request"]["object"], patch)
    [sidecar] = [c for c in containers(pod["spec"]) if c["name"] == CONTAINER_NAME]
    inline = next(e["value"] for e in sidecar["env"] if e["name"] == CONFIG_YAML_ENV)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(empty)],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ["PATH"], CONFIG_YAML_ENV: inline},
    )  # fmt: skip
    base = yaml.safe_load(rendered.one("ConfigMap")["data"]["config.yaml"])
    tls = base.get("admin", {}).get("tls")
    if tls:
        assert done.returncode == 2
        assert f"admin.tls.cert_file (from {CONFIG_YAML_ENV}): cannot read file {tls['cert_file']!r}" in done.stderr  # fmt: skip
        assert pod["metadata"]["annotations"]["prometheus.io/scheme"] == "https"
        assert sidecar["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
        mount = next(m for m in sidecar["volumeMounts"] if m["mountPath"] == os.path.dirname(tls["cert_file"]))  # fmt: skip
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == values["sidecar"]["adminTlsSecret"]
        effective = config_from_dict(yaml.safe_load(inline))
    else:
        assert done.returncode == 0, f"{name}: {done.stderr}"
        effective = config_from_dict(yaml.safe_load(done.stdout))
    assert effective.proxy.upstream.startswith("http://127.0.0.1:")  # the injection's
    assert yaml.safe_load(inline)["logging"] == base["logging"]  # the base config's
    shutdown = effective.shutdown
    assert (
        shutdown.drain_delay + shutdown.drain_timeout < pod["spec"]["terminationGracePeriodSeconds"]
    )


# --------------------------------------------------------------------------- NOTES


def test_notes_name_the_label_and_the_annotation() -> None:
    notes = CHART.render().notes
    assert f"kubectl label namespace NAMESPACE {NAMESPACE_LABEL}=enabled" in notes
    assert f'"{INJECT_ANNOTATION}":"true"' in notes
    assert f"pods of the namespaces {NAMESPACE}, kube-system." in notes
    assert f"helm test {RELEASE} --namespace {NAMESPACE}" in notes
    strict = CHART.render(CHART.scenario_values("strict")).notes
    assert f"{NAMESPACE_LABEL}=enabled" in strict
    assert f'"{INJECT_ANNOTATION}":"true"' not in strict  # no opt-in webhook: no annotation
    assert "pods are created without the sidecar" not in strict  # failurePolicy Fail


# ---------------------------------------------------------------------- the schema


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 0}, "replicaCount"),
        ({"bogus": 1}, "bogus"),
        ({"webhook": {"failurePolicy": "Deny"}}, "failurePolicy"),
        ({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds"),
        ({"webhook": {"reinvocationPolicy": "Always"}}, "reinvocationPolicy"),
        ({"webhook": {"namespaceSelector": [{"key": "a", "operator": "Like"}]}}, "operator"),
        ({"certManager": {"issuerRef": {"kind": "Vault"}}}, "kind"),
        ({"certManager": {"duration": "90 days"}}, "duration"),
        ({"sidecar": {"native": "yes"}}, "native"),
        ({"sidecar": {"config": {"proxy": {"bogus": True}}}}, "bogus"),
        ({"sidecar": {"adminTlsSecret": "Not_A_Secret"}}, "adminTlsSecret"),
        ({"containerSecurityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilege"),
    ],
    ids=[
        "zero-replicas", "unknown-key", "bad-failure-policy", "timeout-over-30",
        "bad-reinvocation", "bad-selector-operator", "bad-issuer-kind", "bad-duration",
        "bool-as-string", "unknown-config-key", "bad-secret-name", "privilege-escalation",
    ],
)  # fmt: skip
def test_schema_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        CHART.render(values)


def test_every_value_is_documented() -> None:
    text = (CHART.directory / "values.yaml").read_text()
    documented = documented_values(text)
    leaves = leaf_paths(yaml.safe_load(text))
    undocumented = {
        p for p in leaves if not any(p == d or p.startswith(d + ".") for d in documented)
    }
    assert undocumented == set()
    stale = {d for d in documented if not any(p == d or p.startswith(d + ".") for p in leaves)}
    assert stale == set()


def test_every_value_has_a_schema_entry() -> None:
    schema = json.loads((CHART.directory / "values.schema.json").read_text())
    values = yaml.safe_load((CHART.directory / "values.yaml").read_text())
    for path in leaf_paths(values):
        parts = path.split(".")
        found = any(schema_at(schema, ".".join(parts[:n])) for n in range(len(parts), 0, -1))
        assert found, f"{path} is not in values.schema.json"


def test_sidecar_config_schema_is_the_app_charts() -> None:
    """One schema for the sidecar's config in both charts (the app chart's test holds it
    to sidecar/config.py's keys; scripts/sync-chart-files copies it here)."""
    ours = json.loads((CHART.directory / "values.schema.json").read_text())
    theirs = json.loads((CHART_DIR / "values.schema.json").read_text())
    config, app_config = schema_at(ours, "sidecar.config"), schema_at(theirs, "sidecar.config")
    assert config is not None
    assert app_config is not None
    config.pop("description")
    app_config.pop("description")
    assert config == app_config, "run scripts/sync-chart-files"
    assert ours["definitions"] | theirs["definitions"] == ours["definitions"]


def test_schema_is_valid_draft_7_and_accepts_the_defaults() -> None:
    """A second, independent validator (jsonschema) agrees with Helm's on the defaults."""
    import jsonschema

    schema = json.loads((CHART.directory / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    validator.validate(yaml.safe_load((CHART.directory / "values.yaml").read_text()))
    for name in SCENARIOS:
        validator.validate(CHART.scenario_values(name))
