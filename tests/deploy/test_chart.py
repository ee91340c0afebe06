"""The Helm chart, checked like code: rendered by the real Helm engine, validated against
the Kubernetes 1.29+ schemas, its config accepted by the sidecar itself."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from sidecar.config import Config, config_from_dict, parse_duration
from sidecar.instance import NAMESPACE
from sidecar.observability import own_resource
from tests.support.chart import (
    CHART_DIR,
    CONFIG_MOUNT,
    KUBE_VERSIONS,
    RELEASE,
    Render,
    containers,
    deep_merge,
    documented_values,
    leaf_paths,
    lint_problems,
    port_of,
    render,
    scenario_values,
    scenarios,
    schema_at,
    validated_kinds,
)
from tests.support.prometheus import check_rules
from tests.support.tls import Pki

SCENARIOS = scenarios()
# prometheus-operator kinds: kubernetes-validate ships no schema for CRDs; they are checked
# by test_operator_objects (structure) and test_prometheus_rule_passes_promtool (rules).
CRD_KINDS = frozenset({"PodMonitor", "ServiceMonitor", "PrometheusRule"})


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> tuple[str, Render]:
    """Each ci/ scenario, rendered once per module."""
    name: str = request.param
    return name, render(scenario_values(name))


def test_every_required_scenario_exists() -> None:
    assert set(SCENARIOS) >= {
        "defaults",
        "native-sidecar",
        "podmonitor",
        "events-merge",
        "custom-ports",
    }


# ------------------------------------------------------------------------------ lint


@pytest.mark.parametrize("name", SCENARIOS)
def test_lint_is_clean(name: str) -> None:
    assert lint_problems(CHART_DIR, scenario_values(name)) == []


# ----------------------------------------------------------------- kubernetes schemas


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates_against_kubernetes(
    scenario: tuple[str, Render], kube_version: str
) -> None:
    name, rendered = scenario
    kinds = validated_kinds(rendered, kube_version, skip=CRD_KINDS)
    assert len(kinds) >= 4, name  # ConfigMap, Deployment, two Services at least


def test_validation_catches_a_broken_manifest() -> None:
    """The validator is strict: an unknown container field is an error (guards the test)."""
    deployment = copy.deepcopy(render().deployment)
    deployment["spec"]["template"]["spec"]["containers"][0]["bogus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


# --------------------------------------------------------------- the sidecar's config


def test_configmap_config_passes_config_from_dict(scenario: tuple[str, Render]) -> None:
    _, rendered = scenario
    config = config_from_dict(rendered.sidecar_config)
    assert isinstance(config, Config)


def test_configmap_config_passes_check_config(scenario: tuple[str, Render], tmp_path: Path) -> None:
    name, rendered = scenario
    config = copy.deepcopy(rendered.sidecar_config)
    if "bearer_token_file" in config["admin"]:  # the mounted Secret's file, here
        token = tmp_path / "token"
        token.write_text("s3cret\n")
        config["admin"]["bearer_token_file"] = str(token)
    if "tls" in config["admin"]:  # the mounted Secret's files, here
        pki = Pki(tmp_path / "tls")
        issued = pki.server("tls")
        files = {"cert_file": issued.cert, "key_file": issued.key, "client_ca_file": pki.ca_file}
        for key in config["admin"]["tls"]:
            config["admin"]["tls"][key] = str(files[key])
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{name}: {done.stderr}"
    effective = yaml.safe_load(done.stdout)
    assert effective["admin"]["listen"] == rendered.sidecar_config["admin"]["listen"]


def test_sidecar_runs_the_mounted_config(scenario: tuple[str, Render]) -> None:
    _, rendered = scenario
    sidecar = rendered.sidecar
    assert sidecar["args"] == ["run", "--config", CONFIG_MOUNT]
    mount = next(m for m in sidecar["volumeMounts"] if CONFIG_MOUNT.startswith(m["mountPath"]))
    volume = next(v for v in rendered.pod_spec["volumes"] if v["name"] == mount["name"])
    config_map = rendered.one("ConfigMap", volume["configMap"]["name"])
    assert "config.yaml" in config_map["data"]


def test_sidecar_env_pins_the_malloc_thresholds(scenario: tuple[str, Render]) -> None:
    _, rendered = scenario
    env = {e["name"]: e.get("value") for e in rendered.sidecar.get("env", [])}
    assert env["MALLOC_MMAP_THRESHOLD_"] == "4194304"
    assert env["MALLOC_TRIM_THRESHOLD_"] == "67108864"


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of an env value (variables defined before it)."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), value)


def test_sidecar_env_gives_a_stable_instance_id(
    scenario: tuple[str, Render], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15 (8): pod name and namespace through the downward API, as OTel resource
    attributes; the sidecar turns them into the same service.instance.id at every restart."""
    _, rendered = scenario
    env = rendered.sidecar["env"]
    refs = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in env if "valueFrom" in e}
    assert refs["POD_NAME"] == "metadata.name"
    assert refs["POD_NAMESPACE"] == "metadata.namespace"
    names = [e["name"] for e in env]
    assert names.index("OTEL_RESOURCE_ATTRIBUTES") > names.index("POD_NAME")  # $(..) needs it first
    template = next(e["value"] for e in env if e["name"] == "OTEL_RESOURCE_ATTRIBUTES")
    ids = []
    for pod in ("shop-7d9f-abcde", "shop-7d9f-abcde", "shop-7d9f-fghij"):
        value = _expand(template, {"POD_NAME": pod, "POD_NAMESPACE": "shop"})
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", value)
        attributes = own_resource("causality-sidecar").attributes
        assert attributes["k8s.pod.name"] == pod
        assert attributes["k8s.container.name"] == rendered.sidecar["name"]
        ids.append(attributes["service.instance.id"])
    name = f"shop.shop-7d9f-abcde.{rendered.sidecar['name']}"
    assert ids[0] == ids[1] == str(uuid.uuid5(NAMESPACE, name))
    assert ids[2] != ids[0]


def test_config_is_rendered_from_the_values_tree() -> None:
    """sidecar.config is structured data rendered with toYaml: a value with YAML-special
    characters comes back as the same string, not a broken template."""
    name = 'odd: "name" # not a comment'
    rendered = render({"sidecar": {"config": {"service": {"name": name}}}})
    assert rendered.sidecar_config["service"]["name"] == name


# ------------------------------------------------------------- ports and probes agree


def test_ports_and_probes_agree_with_the_config(scenario: tuple[str, Render]) -> None:
    name, rendered = scenario
    config = rendered.sidecar_config
    ports = {p["name"]: p["containerPort"] for p in rendered.sidecar["ports"]}
    assert ports["proxy"] == port_of(config["proxy"]["listen"]), name
    assert ports["metrics"] == port_of(config["admin"]["listen"]), name
    assert port_of(config["ingest"]["listen"]) not in ports.values()  # loopback only
    probes = {kind: rendered.sidecar[f"{kind}Probe"]["httpGet"] for kind in _PROBES}
    scheme = {"scheme": "HTTPS"} if config["admin"].get("tls") else {}  # test_chart_admin_tls
    for kind, path in _PROBES.items():
        assert probes[kind] == {"path": path, "port": "metrics", **scheme}, kind


_PROBES = {"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}


def test_scrape_annotations_follow_the_admin_listener(scenario: tuple[str, Render]) -> None:
    name, rendered = scenario
    annotations = rendered.deployment["spec"]["template"]["metadata"]["annotations"]
    if not scenario_values(name).get("metrics", {}).get("podAnnotations", True):
        assert not any(k.startswith("prometheus.io/") for k in annotations)
        return
    config = rendered.sidecar_config
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port_of(config["admin"]["listen"]))
    assert annotations["prometheus.io/path"] == config["admin"]["metrics_path"]


def test_services_target_the_proxy_and_metrics_ports(scenario: tuple[str, Render]) -> None:
    _, rendered = scenario
    service = rendered.one("Service", RELEASE + "-causality-sidecar")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["proxy"]
    metrics = rendered.one("Service", "-metrics")
    assert metrics["spec"]["clusterIP"] == "None"  # headless: DNS answers pod IPs
    assert [p["targetPort"] for p in metrics["spec"]["ports"]] == ["metrics"]
    selector = rendered.deployment["spec"]["selector"]["matchLabels"]
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    for svc in (service, metrics):
        assert svc["spec"]["selector"] == selector
        assert selector.items() <= pod_labels.items()


def test_app_otlp_env_points_at_the_ingest_port(scenario: tuple[str, Render]) -> None:
    _, rendered = scenario
    app = next(c for c in rendered.pod_spec["containers"] if c["name"] == "app")
    env = {e["name"]: e.get("value") for e in app.get("env", [])}
    port = port_of(rendered.sidecar_config["ingest"]["listen"])
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == f"http://127.0.0.1:{port}/v1/metrics"


def test_upstream_is_the_app_port(scenario: tuple[str, Render]) -> None:
    name, rendered = scenario
    app = next(c for c in rendered.pod_spec["containers"] if c["name"] == "app")
    upstream = rendered.sidecar_config["proxy"]["upstream"]
    assert upstream == f"http://127.0.0.1:{app['ports'][0]['containerPort']}", name


def test_grace_period_outlasts_the_drain(scenario: tuple[str, Render]) -> None:
    name, rendered = scenario
    shutdown = config_from_dict(rendered.sidecar_config).shutdown
    grace = rendered.pod_spec["terminationGracePeriodSeconds"]
    assert grace > shutdown.drain_delay + shutdown.drain_timeout, name


def test_config_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        annotations = render(values).deployment["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    base = checksum({})
    assert re.fullmatch("[0-9a-f]{64}", base)
    assert checksum({}) == base
    assert checksum({"sidecar": {"config": {"logging": {"level": "debug"}}}}) != base


@pytest.mark.parametrize(
    ("section", "address"),
    [("admin", "127.0.0.1:9464"), ("proxy", "[::1]:8000"), ("admin", "localhost:9464")],
    ids=["admin-v4", "proxy-v6", "admin-name"],
)
def test_loopback_listener_that_kubelet_must_reach_fails_the_render(
    section: str, address: str
) -> None:
    with pytest.raises(helm.HelmError, match="binds loopback"):
        render({"sidecar": {"config": {section: {"listen": address}}}})


# --------------------------------------------------------------- security and modes


def test_pods_meet_the_restricted_profile(scenario: tuple[str, Render]) -> None:
    name, rendered = scenario
    pods = [rendered.pod_spec] + [p["spec"] for p in rendered.of_kind("Pod")]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in containers(pod):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert not container.get("privileged")
            assert "resources" in container, container["name"]


def test_native_sidecar_is_an_always_restarting_init_container() -> None:
    rendered = render(scenario_values("native-sidecar"))
    init = rendered.pod_spec["initContainers"]
    assert [c["restartPolicy"] for c in init] == ["Always"]
    assert init[0] is rendered.sidecar
    assert [c["name"] for c in rendered.pod_spec["containers"]] == ["app"]
    plain = render()
    assert "initContainers" not in plain.pod_spec
    assert "restartPolicy" not in plain.sidecar


def test_network_policy_never_opens_the_ingest_port() -> None:
    rendered = render(scenario_values("custom-ports"))
    policy = rendered.one("NetworkPolicy")
    rules = policy["spec"]["ingress"]
    opened = [p["port"] for rule in rules for p in rule["ports"]]
    assert sorted(opened) == ["metrics", "proxy"]
    metrics_rule = next(r for r in rules if r["ports"][0]["port"] == "metrics")
    peer = metrics_rule["from"][0]
    assert peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    proxy_rule = next(r for r in rules if r["ports"][0]["port"] == "proxy")
    assert proxy_rule["from"] == scenario_values("custom-ports")["networkPolicy"]["proxyFrom"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_optional_objects_are_off_by_default() -> None:
    kinds = {d["kind"] for d in render().docs}
    assert kinds == {"ConfigMap", "Deployment", "Service", "Pod"}
    custom = {d["kind"] for d in render(scenario_values("custom-ports")).docs}
    assert {"PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"} <= custom
    assert "ServiceAccount" in custom


def test_hpa_owns_the_replica_count() -> None:
    rendered = render(scenario_values("custom-ports"))
    assert "replicas" not in rendered.deployment["spec"]
    hpa = rendered.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == rendered.deployment["metadata"]["name"]


# ------------------------------------------------------------ prometheus-operator objects


def test_operator_objects(tmp_path: Path) -> None:
    """PodMonitor and ServiceMonitor carry the extra labels and point at the metrics port.

    kubernetes-validate has no CRD schemas, so the fields are checked here by hand
    against the monitoring.coreos.com/v1 API (selector, port name, path, interval).
    """
    values = scenario_values("podmonitor")
    rendered = render(values)
    selector = rendered.deployment["spec"]["selector"]["matchLabels"]
    path = rendered.sidecar_config["admin"]["metrics_path"]
    for kind, endpoints in (("PodMonitor", "podMetricsEndpoints"), ("ServiceMonitor", "endpoints")):
        monitor = rendered.one(kind)
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert selector.items() <= monitor["spec"]["selector"]["matchLabels"].items()
        [endpoint] = monitor["spec"][endpoints]
        assert endpoint["port"] == "metrics"
        assert endpoint["path"] == path
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "authorization"}
        parse_duration(endpoint["interval"])
    assert rendered.one("PodMonitor")["spec"]["podMetricsEndpoints"][0]["interval"] == "15s"
    service_monitor = rendered.one("ServiceMonitor")
    metrics_service = rendered.one("Service", "-metrics")
    assert (
        service_monitor["spec"]["selector"]["matchLabels"].items()
        <= metrics_service["metadata"]["labels"].items()
    )


def test_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    rendered = render(scenario_values("podmonitor"))
    rule = rendered.one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    source = yaml.safe_load((CHART_DIR / "files" / "rules.yaml").read_text())
    assert rule["spec"]["groups"] == source["groups"]
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = check_rules(rules_file)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("values", "label", "value"),
    [
        ({}, "grafana_dashboard", "1"),
        ({"label": "dashboards", "labelValue": "causality"}, "dashboards", "causality"),
    ],
    ids=["default-label", "custom-label"],
)
def test_grafana_dashboard_configmap(values: dict[str, Any], label: str, value: str) -> None:
    rendered = render({"grafanaDashboard": {"enabled": True, **values}})
    config_map = rendered.one("ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"][label] == value
    [(key, text)] = config_map["data"].items()
    assert key.endswith(".json")
    source = (CHART_DIR / "files" / "causality-sidecar.json").read_text()
    assert json.loads(text) == json.loads(source)
    kubernetes_validate.validate(config_map, KUBE_VERSIONS[0], strict=True)


# ------------------------------------------------------------------- helm test, NOTES


def test_helm_test_pod_reads_metrics_through_the_pod_ips() -> None:
    rendered = render(scenario_values("custom-ports"))
    [pod] = rendered.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+", container["image"])  # pinned
    script = container["args"][0]
    metrics = rendered.one("Service", "-metrics")
    url = f"http://{metrics['metadata']['name']}:9100/internal/metrics"
    assert url in script
    assert "sidecar_build_info" in script


def test_upstream_tls_and_access_log_pass_the_chart() -> None:
    config = {
        "proxy": {
            "upstream": "https://127.0.0.1:8443",
            "upstream_tls": {"server_name": "app.internal", "insecure_skip_verify": False},
        },
        "logging": {"access_log": True},
    }
    rendered = render({"app": {"port": 8443}, "sidecar": {"config": config}})
    parsed = config_from_dict(rendered.sidecar_config)
    assert parsed.proxy.upstream_tls.server_name == "app.internal"
    assert parsed.logging.access_log is True


def test_sidecar_image_repository_is_required() -> None:
    """The image is published nowhere: an install without sidecar.image.repository fails with
    a message naming the value (not an ImagePullBackOff later); with it, the image is used."""
    for values in ({}, {"sidecar": {"image": {"repository": ""}}}):
        with pytest.raises(helm.HelmError, match=r"sidecar\.image\.repository is required"):
            render(values, with_image=False)
    image = {"repository": "registry.example.com/team/causality-sidecar", "tag": "1.2.3"}
    rendered = render({"sidecar": {"image": image}}, with_image=False)
    assert rendered.sidecar["image"] == "registry.example.com/team/causality-sidecar:1.2.3"
    assert "(image registry.example.com/team/causality-sidecar:1.2.3)" in rendered.notes
    default_tag = render({"sidecar": {"image": {"repository": "r.example/cs"}}}, with_image=False)
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert default_tag.sidecar["image"] == f"r.example/cs:{chart['appVersion']}"


def test_every_scenario_sets_the_sidecar_image(scenario: tuple[str, Render]) -> None:
    name, _ = scenario
    assert scenario_values(name)["sidecar"]["image"]["repository"], name


def test_notes_print_port_forward_and_curl() -> None:
    notes = render(scenario_values("custom-ports")).notes
    assert (
        f"kubectl --namespace observability port-forward deployment/{RELEASE}-causality-sidecar"
        " 9100:9100" in notes
    )
    assert "curl -s http://127.0.0.1:9100/internal/metrics" in notes


# --------------------------------------------------------------------- the schema


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "three"}, "replicaCount"),
        ({"bogus": 1}, "bogus"),
        ({"sidecar": {"native": "yes"}}, "native"),
        ({"sidecar": {"config": {"proxy": {"listen": 8000}}}}, "listen"),
        ({"sidecar": {"config": {"proxy": {"connect_timeout": "soon"}}}}, "connect_timeout"),
        ({"sidecar": {"config": {"ingest": {"max_series": 0}}}}, "max_series"),
        ({"sidecar": {"config": {"proxy": {"bogus": True}}}}, "bogus"),
        ({"sidecar": {"config": {"logging": {"level": "loud"}}}}, "level"),
        ({"containerSecurityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilege"),
        ({"metrics": {"podMonitor": {"enabled": True, "extra": 1}}}, "extra"),
    ],
    ids=[
        "wrong-type",
        "unknown-key",
        "bool-as-string",
        "port-as-int",
        "bad-duration",
        "zero-max-series",
        "unknown-config-key",
        "bad-enum",
        "privilege-escalation",
        "unknown-nested-key",
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)


def test_every_value_is_documented() -> None:
    text = (CHART_DIR / "values.yaml").read_text()
    documented = documented_values(text)
    values = yaml.safe_load(text)
    undocumented = {
        path
        for path in leaf_paths(values)
        if not any(path == d or path.startswith(d + ".") for d in documented)
    }
    assert undocumented == set()
    leaves = leaf_paths(values)
    stale = {d for d in documented if not any(p == d or p.startswith(d + ".") for p in leaves)}
    assert stale == set()


def test_every_value_has_a_described_schema_entry() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    for path in leaf_paths(values):
        parts = path.split(".")
        found = next(
            (
                schema_at(schema, ".".join(parts[:n]))
                for n in range(len(parts), 0, -1)
                if schema_at(schema, ".".join(parts[:n])) is not None
            ),
            None,
        )
        assert found is not None, f"{path} is not in values.schema.json"


def _config_schema_keys(node: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, sub in node.get("properties", {}).items():
        keys.add(prefix + key)
        if sub.get("type") == "object" and "properties" in sub:
            keys |= _config_schema_keys(sub, f"{prefix}{key}.")
        items = sub.get("items", {})
        if isinstance(items, dict) and "properties" in items:
            keys |= _config_schema_keys(items, f"{prefix}{key}[].")
    return keys


def _config_dataclass_keys(cls: type, prefix: str = "") -> set[str]:
    import dataclasses
    import typing

    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        keys.add(prefix + field.name)
        hint = hints[field.name]
        if "parse" not in field.metadata and dataclasses.is_dataclass(hint):
            assert isinstance(hint, type)
            keys |= _config_dataclass_keys(hint, f"{prefix}{field.name}.")
        if "items" in field.metadata:
            keys |= _config_dataclass_keys(field.metadata["items"], f"{prefix}{field.name}[].")
    return keys


def test_config_schema_matches_the_sidecar_config_keys() -> None:
    """values.schema.json's sidecar.config knows exactly design §4's keys (sidecar/config.py)."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    config_schema = schema_at(schema, "sidecar.config")
    assert config_schema is not None
    assert _config_schema_keys(config_schema) == _config_dataclass_keys(Config)


def test_full_config_round_trips_through_the_chart() -> None:
    """Every design §4 key with a non-default value passes the schema and the sidecar."""
    full: dict[str, Any] = {
        "service": {"name": "svc"},
        "proxy": {
            "enabled": True, "listen": "0.0.0.0:8001", "upstream": "http://127.0.0.1:8081",
            "connect_timeout": "1s", "response_timeout": "30s", "idle_timeout": "2m",
            "upstream_keepalive": "2s", "max_connections": 10, "max_in_flight": 100,
            "max_request_body": "10MiB", "max_header_bytes": "32KiB", "header_timeout": "5s",
            "forwarded_headers": False, "routes": ["/users/{id}"], "unmatched_routes": "other",
            "max_route_labels": 50, "latency_buckets_ms": [1, 10, 100],
        },
        "admin": {"listen": "0.0.0.0:9465", "metrics_path": "/m", "bearer_token_file": "/t"},
        "ingest": {
            "enabled": True, "listen": "127.0.0.1:4319", "max_body_bytes": "1MiB",
            "series_ttl": "1m", "max_series": 10, "max_series_per_metric": 5,
            "promote_resource_attributes": ["service.name"], "target_info": False,
            "exponential_max_buckets": 20, "scope_labels": False,
            "workers": {"attributes": ["process.pid"], "gauges": "max", "idle": "30s"},
        },
        "events": {
            "enabled": True, "ingest_path": "/i", "batch_path": "/b", "max_body_bytes": "1MiB",
            "dedup_window": "1m", "dedup_max_keys": 10,
        },
        "merge": {"targets": [
            {"name": "app", "url": "http://127.0.0.1:8081/metrics", "timeout": "1s",
             "labels": {"a": "b"}},
        ]},
        "export": {"otlp": {
            "endpoint": "http://collector:4318", "interval": "10s", "headers": {"x": "y"},
        }},
        "logging": {"level": "debug", "format": "text"},
        "shutdown": {"drain_delay": "1s", "drain_timeout": "5s"},
    }  # fmt: skip
    rendered = render({"sidecar": {"config": full}, "app": {"port": 8081}})
    assert rendered.sidecar_config == deep_merge(rendered.sidecar_config, full)
    assert config_from_dict(rendered.sidecar_config).proxy.max_in_flight == 100


def test_schema_is_valid_draft_7_and_accepts_the_defaults() -> None:
    """A second, independent validator (jsonschema) agrees with Helm's on the defaults."""
    import jsonschema

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    validator.validate(yaml.safe_load((CHART_DIR / "values.yaml").read_text()))
    for name in SCENARIOS:
        validator.validate(scenario_values(name))


def test_metrics_auth_wires_the_token_everywhere(tmp_path: Path) -> None:
    """metricsAuth: the Secret is mounted, the config points at it, the scrapers send it."""
    rendered = render(scenario_values("podmonitor"))
    secret = "causality-sidecar-metrics-token"
    token_file = rendered.sidecar_config["admin"]["bearer_token_file"]
    mount = next(m for m in rendered.sidecar["volumeMounts"] if m["name"] == "metrics-auth")
    assert token_file == f"{mount['mountPath']}/token"
    volume = next(v for v in rendered.pod_spec["volumes"] if v["name"] == "metrics-auth")
    assert volume["secret"]["secretName"] == secret
    for kind, endpoints in (("PodMonitor", "podMetricsEndpoints"), ("ServiceMonitor", "endpoints")):
        [endpoint] = rendered.one(kind)["spec"][endpoints]
        assert endpoint["authorization"] == {
            "type": "Bearer",
            "credentials": {"name": secret, "key": "token"},
        }
    [pod] = rendered.of_kind("Pod")
    [container] = pod["spec"]["containers"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "token"}
    assert "Authorization: Bearer $TOKEN" in container["args"][0]
    assert "Authorization: Bearer $TOKEN" in rendered.notes
    assert "bearer_token_file" not in render().sidecar_config["admin"]
