"""Properties of the mutation on generated pods (hypothesis): whatever the ports, names,
probes and annotation values, `inject_pod` never raises, never touches its input, gives a
pod the Kubernetes 1.29 schema accepts with unique port names and numbers and a config the
sidecar loads, and injecting that again changes nothing."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.config import load_config
from sidecar.inject.mutate import inject_pod
from sidecar.inject.settings import InjectSettings
from tests.support.chart import KUBE_VERSIONS
from tests.support.kubernetes import IMAGE, containers

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Port names as Kubernetes allows them, biased towards the ones injection cares about.
PORT_NAMES = st.one_of(
    st.sampled_from(["http", "metrics", "proxy", "app-http", "web", "grpc", "a" * 15]),
    st.from_regex(r"\A[a-z][a-z0-9]{0,6}\Z"),
)
NUMBERS = st.one_of(st.sampled_from([8000, 8001, 9464, 9465, 4318, 8080]), st.integers(1, 65535))
ANNOTATION_VALUES = st.one_of(
    st.sampled_from(["true", "false", "yes", "", "8080", "http", "/a,/b/{id}", "nope", "x y"]),
    st.text(max_size=12),
)
ANNOTATIONS = st.dictionaries(
    st.sampled_from(
        [
            f"sidecar.causality.dev/{k}"
            for k in ("upstream-port", "native", "image", "routes", "events", "config")
        ]
        + [
            "prometheus.io/scrape",
            "prometheus.io/port",
            "prometheus.io/path",
            "prometheus.io/scheme",
        ]
    ),
    ANNOTATION_VALUES,
    max_size=5,
)


@st.composite
def container_ports(draw: st.DrawFn) -> list[dict[str, Any]]:
    ports = []
    for _ in range(draw(st.integers(0, 3))):
        port: dict[str, Any] = {"containerPort": draw(NUMBERS)}
        if draw(st.booleans()):
            port["name"] = draw(PORT_NAMES)
        if draw(st.integers(0, 5)) == 0:
            port["protocol"] = "UDP"
        ports.append(port)
    return ports


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    """Pods whose port names and numbers are unique, as the API server requires."""
    used_names: set[str] = set()
    used_numbers: set[tuple[int, str]] = set()
    spec_containers = []
    for index in range(draw(st.integers(1, 3))):
        ports = []
        for port in draw(container_ports()):
            key = (port["containerPort"], port.get("protocol", "TCP"))
            if port.get("name") in used_names or key in used_numbers:
                continue
            used_names.add(port.get("name", ""))
            used_numbers.add(key)
            ports.append(port)
        container: dict[str, Any] = {"name": f"c{index}", "image": "app:1", "ports": ports}
        named = [p["name"] for p in ports if "name" in p]
        if named and draw(st.booleans()):
            container["readinessProbe"] = {
                "httpGet": {"path": "/", "port": draw(st.sampled_from(named))}
            }
        if named and draw(st.booleans()):
            container["livenessProbe"] = {"tcpSocket": {"port": draw(st.sampled_from(named))}}
        spec_containers.append(container)
    spec: dict[str, Any] = {"containers": spec_containers}
    if draw(st.booleans()):
        spec["restartPolicy"] = draw(st.sampled_from(["Always", "OnFailure", "Never"]))
    if draw(st.booleans()):
        spec["terminationGracePeriodSeconds"] = draw(st.integers(0, 120))
    annotations = draw(ANNOTATIONS)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": annotations},
        "spec": spec,
    }


@SETTINGS
@given(pod=pods(), native=st.booleans())
def test_any_pod(pod: dict[str, Any], native: bool) -> None:
    before = copy.deepcopy(pod)
    injection = inject_pod(pod, InjectSettings(image=IMAGE, native=native))
    assert pod == before  # the input is never touched
    if not injection.injected:
        assert injection.pod == pod
        assert injection.reason.startswith("no TCP container port")
        return
    out = injection.pod
    kubernetes_validate.validate(out, KUBE_VERSIONS[0], strict=True)
    every = list(containers(out).values())
    names = [p["name"] for c in every for p in c.get("ports", []) if "name" in p]
    assert len(names) == len(set(names)), names
    numbers = [(p["containerPort"], p.get("protocol", "TCP")) for c in every
               for p in c.get("ports", [])]  # fmt: skip
    assert len(numbers) == len(set(numbers)), numbers
    sidecar = containers(out)["causality-sidecar"]
    env = {e["name"]: e["value"] for e in sidecar["env"] if "value" in e}
    config = load_config(None, env=env)
    assert config.proxy.listen.port == injection.proxy_port
    assert config.proxy.upstream == f"http://127.0.0.1:{injection.upstream_port}"
    assert out["metadata"]["annotations"]["prometheus.io/port"] == str(config.admin.listen.port)
    assert out["spec"]["terminationGracePeriodSeconds"] >= 45
    again = inject_pod(out, InjectSettings(image=IMAGE, native=native))
    assert (again.injected, again.reason, again.pod) == (False, "already injected", out)
