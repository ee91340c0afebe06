"""The mutation over a corpus of realistic workloads (tests/inject/corpus/*.yaml).

Every input and every output is validated with kubernetes-validate against the oldest
Kubernetes supported (1.29: native sidecars) and the newest schema it ships; every pod
that met the restricted Pod Security Standard still meets it after injection; injecting
twice is injecting once; and each corpus file has its own table of expectations.
The whole output of each file is also compared with its golden text
(corpus/NAME.injected.yaml, reviewed by hand; `python -m tests.inject.corpus_golden`
rewrites them after a deliberate change).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sidecar.config import Address, load_config
from sidecar.inject.documents import TEMPLATE_PATHS, inject_documents, inject_text
from sidecar.inject.mutate import inject_pod
from sidecar.inject.settings import InjectSettings
from tests.support.chart import KUBE_VERSIONS
from tests.support.kubernetes import (
    CORPUS,
    IMAGE,
    SETTINGS,
    containers,
    corpus_names,
    sidecar_config,
)
from tests.support.pss import violations

SIDECAR = "causality-sidecar"


@dataclass(frozen=True, slots=True)
class Case:
    """One corpus file: its documents in and out, and the CLI's notes."""

    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]
    text: str
    notes: tuple[str, ...]

    def output(self, kind: str, name: str) -> dict[str, Any]:
        """The output object ``kind/name`` (the items of a List included)."""
        return _find(self.outputs, kind, name)

    def input(self, kind: str, name: str) -> dict[str, Any]:
        """The input object ``kind/name``."""
        return _find(self.inputs, kind, name)


def _objects(docs: tuple[dict[str, Any], ...]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if doc["kind"] == "List":
            yield from doc["items"]
        else:
            yield doc


def _find(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in _objects(docs) if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


@cache
def case(name: str) -> Case:
    """Inject corpus file ``name`` once (the CLI's code path: text in, text out)."""
    text = (CORPUS / f"{name}.yaml").read_text(encoding="utf-8")
    inputs = tuple(d for d in yaml.safe_load_all(text) if d)
    output, notes = inject_text(text, SETTINGS)
    outputs = tuple(yaml.safe_load_all(output))
    return Case(inputs, outputs, output, tuple(notes))


def template(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The pod template (or the Pod) of a workload object."""
    node: Any = obj
    for key in TEMPLATE_PATHS[obj["kind"]]:
        node = node[key]
    return dict(node)


# ------------------------------------------------------------------ the whole corpus


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", corpus_names())
def test_every_input_and_output_is_valid_kubernetes(name: str, version: str) -> None:
    for doc in _objects(case(name).inputs + case(name).outputs):  # a List has no schema
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_corpus_has_restricted_pods_of_every_form() -> None:
    """Not vacuous: classic, native by annotation and a Job's pod start restricted."""
    restricted = {
        name
        for name in corpus_names()
        for obj in _objects(case(name).inputs)
        if obj["kind"] in TEMPLATE_PATHS and not violations(template(obj)["spec"])
    }
    assert {"named-port", "statefulset", "init-containers", "cronjob"} <= restricted


@pytest.mark.parametrize("name", corpus_names())
def test_a_restricted_pod_stays_restricted(name: str) -> None:
    for before, after in zip(
        _objects(case(name).inputs), _objects(case(name).outputs), strict=True
    ):
        if before["kind"] not in TEMPLATE_PATHS:
            continue
        if violations(template(before)["spec"]):
            continue  # not restricted to begin with; the sidecar itself is checked below
        assert violations(template(after)["spec"]) == [], before["metadata"]["name"]


@pytest.mark.parametrize("name", corpus_names())
def test_the_sidecar_container_meets_the_restricted_profile_alone(name: str) -> None:
    for obj in _objects(case(name).outputs):
        if obj["kind"] not in TEMPLATE_PATHS:
            continue
        pod = template(obj)
        sidecars = [c for c in containers(pod).values() if c["name"] == SIDECAR]
        if not sidecars or obj["metadata"]["name"] == "done":
            continue
        alone = {"containers": sidecars, "volumes": pod["spec"]["volumes"]}
        assert violations(alone) == []


@pytest.mark.parametrize("name", corpus_names())
def test_injecting_twice_is_injecting_once(name: str) -> None:
    again, _ = inject_text(case(name).text, SETTINGS)
    assert again == case(name).text


@pytest.mark.parametrize("name", corpus_names())
def test_the_input_is_never_modified(name: str) -> None:
    inputs = [copy.deepcopy(d) for d in case(name).inputs]
    inject_documents(inputs, SETTINGS)
    assert tuple(inputs) == case(name).inputs


@pytest.mark.parametrize("name", corpus_names())
def test_golden_output(name: str) -> None:
    golden = CORPUS / f"{name}.injected.yaml"
    assert case(name).text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", corpus_names())
def test_the_injected_config_loads_and_matches_the_container(name: str) -> None:
    for obj in _objects(case(name).outputs):
        if obj["kind"] not in TEMPLATE_PATHS or obj["metadata"]["name"] == "done":
            continue
        pod = template(obj)
        sidecar = containers(pod).get(SIDECAR)
        if sidecar is None:
            continue
        env = {e["name"]: e["value"] for e in sidecar["env"] if "value" in e}
        assert env["OTEL_RESOURCE_ATTRIBUTES"].endswith(",k8s.container.name=causality-sidecar")
        config = load_config(None, env=env)  # what `run` in the container reads
        ports = {p["containerPort"] for p in sidecar["ports"]}
        assert ports == {config.proxy.listen.port, config.admin.listen.port}
        assert config.ingest.listen.host == "127.0.0.1"
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(config.admin.listen.port)
        assert annotations["prometheus.io/path"] == config.admin.metrics_path
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = sidecar[probe]["httpGet"]["port"]
            [number] = [p["containerPort"] for p in sidecar["ports"] if p["name"] == port]
            assert number == config.admin.listen.port
        ports_of = [p for c in containers(pod).values() for p in c.get("ports", [])]
        names = [p["name"] for p in ports_of if "name" in p]
        assert len(names) == len(set(names)), names  # port names unique in the pod


# ------------------------------------------------------------------- file by file


def test_named_port_swaps_names_and_numbers_the_probes() -> None:
    pod = template(case("named-port").output("Deployment", "web"))
    [first, web] = pod["spec"]["containers"]
    assert first["name"] == SIDECAR  # first, so it starts first
    assert first["ports"][0] == {"name": "http", "containerPort": 8000, "protocol": "TCP"}
    assert web["ports"] == [{"name": "app-http", "containerPort": 8080}]
    assert web["readinessProbe"]["httpGet"]["port"] == 8080
    assert web["livenessProbe"]["tcpSocket"]["port"] == 8080
    assert web["startupProbe"]["httpGet"]["port"] == 8080
    assert sidecar_config(first)["proxy"]["upstream"] == "http://127.0.0.1:8080"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 45
    # the Service by name needs no change: `http` is the sidecar's now
    assert case("named-port").output("Service", "web") == case("named-port").input("Service", "web")
    assert "restartPolicy" not in first


def test_numeric_port_rewrites_the_service_that_selects_the_pod() -> None:
    c = case("numeric-port")
    pod = template(c.output("Deployment", "api"))
    sidecar = containers(pod)[SIDECAR]
    assert sidecar["ports"][0] == {"name": "proxy", "containerPort": 8000, "protocol": "TCP"}
    assert [p["targetPort"] for p in c.output("Service", "api")["spec"]["ports"]] == [8000, 9000]
    assert c.output("Service", "other") == c.input("Service", "other")  # selects other pods
    assert pod["spec"]["terminationGracePeriodSeconds"] == 60  # longer already: kept
    assert any("port 3000 of container api has no name" in n for n in c.notes)
    assert "causality-sidecar inject" not in c.text
    assert "Service/api: targetPort 3000 -> 8000 (the sidecar's proxy port)" in c.notes


def test_taken_ports_and_names_move_and_the_annotation_picks_the_upstream() -> None:
    c = case("several-containers")
    pod = template(c.output("Deployment", "worker"))
    sidecar = containers(pod)[SIDECAR]
    assert sidecar["ports"] == [
        {"name": "web", "containerPort": 8001, "protocol": "TCP"},
        {"name": "metrics-2", "containerPort": 9465, "protocol": "TCP"},
    ]
    assert containers(pod)["app"]["ports"][1] == {"name": "app-web", "containerPort": 8081}
    assert (
        containers(pod)["log-shipper"]
        == containers(template(c.input("Deployment", "worker")))["log-shipper"]
    )
    config = sidecar_config(sidecar)
    assert config["proxy"]["upstream"] == "http://127.0.0.1:8081"
    assert config["proxy"]["routes"] == ["/jobs/{id}", "/jobs/{id}/retry"]
    assert config["events"] == {"enabled": True}
    assert any(
        "port 8000 is taken in the pod; the sidecar's proxy port is 8001" in n for n in c.notes
    )


def test_native_sidecar_goes_first_among_init_containers_with_its_config_map() -> None:
    pod = template(case("init-containers").output("Deployment", "billing"))
    [sidecar, migrate] = pod["spec"]["initContainers"]
    assert (sidecar["name"], sidecar["restartPolicy"], migrate["name"]) == (
        SIDECAR,
        "Always",
        "migrate",
    )
    assert [c["name"] for c in pod["spec"]["containers"]] == ["billing"]
    assert sidecar["args"] == ["run", "--config", "/etc/causality-sidecar/config.yaml"]
    assert {"name": "causality-sidecar-config", "configMap": {"name": "billing-sidecar"}} in pod[
        "spec"
    ]["volumes"]
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    assert mounts == {
        "causality-sidecar-config": "/etc/causality-sidecar",
        "causality-sidecar-tmp": "/tmp",
    }


def test_existing_scrape_annotations_become_a_merge_target() -> None:
    pod = template(case("prometheus-annotations").output("Deployment", "envoyish"))
    sidecar = containers(pod)[SIDECAR]
    assert sidecar_config(sidecar)["merge"] == {
        "targets": [{"name": "app", "url": "http://127.0.0.1:9901/stats/prometheus"}]
    }
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9464"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_host_network_passes_through_with_the_reason() -> None:
    c = case("host-network")
    assert c.outputs == c.inputs
    assert c.notes == (
        "DaemonSet/node-agent: unchanged: hostNetwork: true (the sidecar's ports would be the "
        "node's)",
    )


def test_cronjob_gets_a_native_sidecar_so_its_pods_complete() -> None:
    c = case("cronjob")
    pod = template(c.output("CronJob", "report"))
    [sidecar] = pod["spec"]["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar_config(sidecar)["proxy"]["upstream"] == "http://127.0.0.1:8080"
    assert any("restartPolicy OnFailure" in n for n in c.notes)


def test_statefulset_keeps_its_claims_and_swaps_the_port() -> None:
    c = case("statefulset")
    out = c.output("StatefulSet", "ledger")
    assert (
        out["spec"]["volumeClaimTemplates"]
        == c.input("StatefulSet", "ledger")["spec"]["volumeClaimTemplates"]
    )
    pod = template(out)
    assert containers(pod)["ledger"]["ports"][0] == {"name": "app-http", "containerPort": 8443}
    assert containers(pod)["ledger"]["readinessProbe"]["httpGet"]["port"] == 8443


def test_pass_through_says_why_and_a_list_item_is_injected() -> None:
    c = case("pass-through")
    assert c.output("Pod", "debug") == c.input("Pod", "debug")
    assert c.output("Pod", "coredns-probe") == c.input("Pod", "coredns-probe")
    assert c.output("ConfigMap", "settings") == c.input("ConfigMap", "settings")
    assert c.output("Pod", "done") == c.input("Pod", "done")
    assert SIDECAR in containers(template(c.output("Job", "backfill")))
    assert c.notes == (
        'Pod/debug: unchanged: opted out (sidecar.causality.dev/inject: "false")',
        "Pod/coredns-probe: unchanged: namespace kube-system is never injected",
        "ConfigMap/settings: unchanged: not a workload kind",
        "Job/backfill: warning: restartPolicy Never (a Job's pod): the sidecar is a native "
        "sidecar so the pod can complete (Kubernetes >= 1.29)",
        "Job/backfill: injected",
        "Pod/done: unchanged: already injected",
    )


# ------------------------------------------------------------- rules, as tables


def _pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "containers": [
            {"name": "app", "image": "app:1", "ports": [{"name": "http", "containerPort": 8080}]}
        ]
    }
    return {"metadata": {"annotations": annotations or {}}, "spec": {**base, **spec}}


@pytest.mark.parametrize(
    ("pod", "namespace", "labels", "wanted", "reason"),
    [
        (_pod(), "shop", {"sidecar.causality.dev/injection": "enabled"}, True, "namespace label"),
        (_pod({"sidecar.causality.dev/inject": "true"}), "shop", {}, True, "inject: \"true\""),
        (_pod(), "shop", {}, False, "not selected"),
        (_pod(), "shop", None, True, "requested"),
        (
            _pod({"sidecar.causality.dev/inject": "false"}),
            "shop",
            {"sidecar.causality.dev/injection": "enabled"},
            False,
            "opted out",
        ),
        (
            _pod({"sidecar.causality.dev/inject": "true"}),
            "kube-system",
            {"sidecar.causality.dev/injection": "enabled"},
            False,
            "never injected",
        ),
        (_pod({"sidecar.causality.dev/inject": "true"}), "injector", {}, False, "injector's own"),
        (_pod({"sidecar.causality.dev/inject": "true"}, hostNetwork=True), "shop", {}, False, "hostNetwork"),
        (_pod({"sidecar.causality.dev/inject": "yes"}), "shop", {}, False, "not selected"),
        (_pod({"sidecar.causality.dev/status": "injected"}), "shop", {}, False, "already injected"),
    ],
    ids=[
        "ns-label", "annotation", "neither", "cli", "opt-out-wins", "kube-system", "own-ns",
        "host-network", "bad-value", "already",
    ],
)  # fmt: skip
def test_which_pods(
    pod: dict[str, Any], namespace: str, labels: dict[str, str] | None, wanted: bool, reason: str
) -> None:
    settings = InjectSettings(image=IMAGE, injector_namespace="injector")
    injection = inject_pod(pod, settings, namespace=namespace, namespace_labels=labels)
    assert (injection.injected, reason in injection.reason) == (wanted, True), injection.reason
    if not wanted:
        assert injection.pod == pod


@pytest.mark.parametrize(
    ("annotation", "value", "warning"),
    [
        ("native", "yes", 'sidecar.causality.dev/native: expected "true" or "false", got \'yes\'; using false'),
        ("events", "1", 'sidecar.causality.dev/events: expected "true" or "false", got \'1\'; using false'),
        ("upstream-port", "99999", "sidecar.causality.dev/upstream-port: '99999' is neither"),
        ("upstream-port", "grpc", "sidecar.causality.dev/upstream-port: 'grpc' is neither"),
        ("image", "has space", "sidecar.causality.dev/image: not an image reference 'has space'"),
        ("config", "Not_A_Name", "sidecar.causality.dev/config: not a ConfigMap name 'Not_A_Name'"),
        ("routes", "/ok, nope", "sidecar.causality.dev/routes: expected a route template starting with '/', got 'nope'; route left out"),
    ],
    ids=["native", "events", "port-range", "port-name", "image", "config", "route"],
)  # fmt: skip
def test_a_bad_annotation_is_a_warning_and_the_default(
    annotation: str, value: str, warning: str
) -> None:
    injection = inject_pod(_pod({f"sidecar.causality.dev/{annotation}": value}), SETTINGS)
    assert injection.injected
    assert any(w.startswith(warning) for w in injection.warnings), injection.warnings
    sidecar = containers(injection.pod)[SIDECAR]
    assert sidecar["image"] == IMAGE
    assert "restartPolicy" not in sidecar
    assert sidecar["args"] == ["run"]
    config = sidecar_config(sidecar)
    assert config["proxy"]["upstream"] == "http://127.0.0.1:8080"
    assert config.get("events", {}).get("enabled", False) is False
    assert config["proxy"].get("routes", ["/ok"]) == ["/ok"]


@pytest.mark.parametrize(
    ("ports", "settings_port", "annotation", "upstream", "proxy_name"),
    [
        ([{"name": "http", "containerPort": 8080}], None, None, 8080, "http"),
        ([{"name": "grpc", "containerPort": 9090}, {"name": "http", "containerPort": 8080}], None, None, 8080, "http"),
        ([{"name": "grpc", "containerPort": 9090}, {"name": "web", "containerPort": 8080}], None, None, 9090, "grpc"),
        ([{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 8080}], None, None, 8080, "proxy"),
        ([{"name": "http", "containerPort": 8080}], 7000, None, 7000, "proxy"),
        ([{"name": "http", "containerPort": 8080}], 7000, "8080", 8080, "http"),
        ([], None, "5000", 5000, "proxy"),
    ],
    ids=["http", "named-http-wins", "first-tcp", "skip-udp", "settings", "annotation-wins", "undeclared"],
)  # fmt: skip
def test_the_upstream_port(
    ports: list[dict[str, Any]],
    settings_port: int | None,
    annotation: str | None,
    upstream: int,
    proxy_name: str,
) -> None:
    pod = _pod({"sidecar.causality.dev/upstream-port": annotation} if annotation else None)
    pod["spec"]["containers"][0]["ports"] = ports
    settings = InjectSettings(image=IMAGE, upstream_port=settings_port)
    injection = inject_pod(pod, settings)
    assert injection.upstream_port == upstream
    sidecar = containers(injection.pod)[SIDECAR]
    assert sidecar["ports"][0]["name"] == proxy_name
    assert Address.parse(sidecar_config(sidecar)["proxy"]["listen"]).port == injection.proxy_port


def test_a_pod_without_any_port_is_not_injected() -> None:
    pod = _pod()
    del pod["spec"]["containers"][0]["ports"]
    injection = inject_pod(pod, SETTINGS)
    assert not injection.injected
    assert injection.reason.startswith("no TCP container port to proxy")
    assert injection.pod == pod


@pytest.mark.parametrize(
    ("annotations", "merged", "warning"),
    [
        ({"prometheus.io/scrape": "true"}, "http://127.0.0.1:8080/metrics", None),
        ({"prometheus.io/scrape": "true", "prometheus.io/port": "9102", "prometheus.io/path": "stats"},
         "http://127.0.0.1:9102/stats", None),
        ({"prometheus.io/scrape": "false", "prometheus.io/port": "9102"}, None, None),
        ({"prometheus.io/scrape": "true", "prometheus.io/scheme": "https"}, None, "prometheus.io/scheme: 'https'"),
        ({"prometheus.io/scrape": "true", "prometheus.io/port": "x"}, None, "prometheus.io/port: 'x'"),
        ({"prometheus.io/scrape": "true", "prometheus.io/port": "9464"}, "http://127.0.0.1:9464/metrics",
         "port 9464 is taken in the pod; the sidecar's admin port is 9465"),
    ],
    ids=["same-port", "port-and-path", "scrape-false", "https", "bad-port", "undeclared-9464"],
)  # fmt: skip
def test_the_apps_own_metrics_endpoint(
    annotations: dict[str, str], merged: str | None, warning: str | None
) -> None:
    injection = inject_pod(_pod(annotations), SETTINGS)
    config = sidecar_config(containers(injection.pod)[SIDECAR])
    targets = config.get("merge", {}).get("targets", [])
    assert [t["url"] for t in targets] == ([merged] if merged else [])
    if warning:
        assert any(w.startswith(warning) for w in injection.warnings), injection.warnings
    assert "prometheus.io/scheme" not in injection.pod["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("service_namespace", "rewritten"),
    [("shop", True), (None, True), ("other", False)],
    ids=["same", "unset", "other"],
)
def test_a_service_is_rewritten_only_in_the_workloads_namespace(
    service_namespace: str | None, rewritten: bool
) -> None:
    deployment = copy.deepcopy(case("numeric-port").input("Deployment", "api"))
    deployment["metadata"]["namespace"] = "shop"
    service = copy.deepcopy(case("numeric-port").input("Service", "api"))
    if service_namespace:
        service["metadata"]["namespace"] = service_namespace
    result = inject_documents([deployment, service], SETTINGS)
    target = result.documents[1]["spec"]["ports"][0]["targetPort"]
    assert target == (8000 if rewritten else 3000)


@pytest.mark.parametrize("name", ["named-port", "statefulset"])
def test_a_native_sidecar_keeps_a_restricted_pod_restricted(name: str) -> None:
    [workload] = [d for d in case(name).inputs if d["kind"] in TEMPLATE_PATHS]
    assert violations(template(workload)["spec"]) == []
    injection = inject_pod(template(workload), InjectSettings(image=IMAGE, native=True))
    assert injection.pod["spec"]["initContainers"][0]["restartPolicy"] == "Always"
    assert violations(injection.pod["spec"]) == []


@pytest.mark.parametrize(
    ("pod", "injected"),
    [
        ({}, False),
        ({"spec": []}, False),
        ({"metadata": [1], "spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}, True),
        ({"metadata": {"annotations": "x"}, "spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}, True),
        ({"spec": {"containers": [1, "x", {"name": "a"}]}}, False),
        ({"spec": {"containers": [{"name": "a", "ports": "x"}]}}, False),
        ({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]}}, False),
        ({"spec": {"containers": [{"name": "a", "ports": [{"name": "http", "containerPort": 80}],
                                   "readinessProbe": [1], "lifecycle": "x"}]}}, True),
    ],
    ids=["empty", "spec-list", "metadata-list", "annotations-str", "odd-containers", "ports-str",
         "port-str", "odd-probes"],
)  # fmt: skip
def test_malformed_pods_never_raise(pod: dict[str, Any], injected: bool) -> None:
    """The webhook must answer whatever the API server sends: odd shapes are not injected or
    are injected around, never an exception."""
    assert inject_pod(pod, SETTINGS).injected is injected
