"""The injected sidecar is the one the Helm chart renders (helm/causality-sidecar): one
container style, not two. Rendered by Helm's own engine (tests/deploy/chart.py) with the
chart's defaults, compared field by field with the injection of a plain pod; what differs
is only what injection must do differently, and each difference is named here."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sidecar.inject.mutate import inject_pod
from sidecar.inject.settings import InjectSettings
from tests.support.chart import Render, render, scenario_values

CHART_IMAGE = "registry.example.com/causality-sidecar:0.1.0"  # the repository + appVersion
POD = {
    "metadata": {},
    "spec": {"containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}]},
}
# Only in the injected container: its config travels in the spec, not in a ConfigMap file.
INJECTED_ONLY_ENV = "SIDECAR_CONFIG_YAML"


def _injected(native: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    injection = inject_pod(POD, InjectSettings(image=CHART_IMAGE, native=native))
    spec = injection.pod["spec"]
    [sidecar] = [c for c in spec.get("initContainers", []) + spec["containers"]
                 if c["name"] == "causality-sidecar"]  # fmt: skip
    return injection.pod, sidecar


@pytest.fixture(scope="module", params=[False, True], ids=["classic", "native"])
def pair(request: pytest.FixtureRequest) -> tuple[Render, dict[str, Any], dict[str, Any]]:
    native: bool = request.param
    rendered = render(scenario_values("native-sidecar") if native else None)
    pod, sidecar = _injected(native)
    return rendered, pod, sidecar


def test_same_container_fields(pair: tuple[Render, dict[str, Any], dict[str, Any]]) -> None:
    rendered, _, sidecar = pair
    chart = rendered.sidecar
    for key in ("name", "image", "imagePullPolicy", "restartPolicy", "ports", "resources",
                "startupProbe", "livenessProbe", "readinessProbe"):  # fmt: skip
        assert sidecar.get(key) == chart.get(key), key


def test_same_environment_plus_the_config(
    pair: tuple[Render, dict[str, Any], dict[str, Any]],
) -> None:
    rendered, _, sidecar = pair
    injected = [e for e in sidecar["env"] if e["name"] != INJECTED_ONLY_ENV]
    assert injected == rendered.sidecar["env"]


def test_security_context_is_the_charts_container_and_pod_contexts(
    pair: tuple[Render, dict[str, Any], dict[str, Any]],
) -> None:
    """The chart sets the user and seccomp at pod level; an injected container cannot rely
    on the pod's, so it carries them itself."""
    rendered, _, sidecar = pair
    pod_context = rendered.pod_spec["securityContext"]
    wanted = {
        **rendered.sidecar["securityContext"],
        "runAsUser": pod_context["runAsUser"],
        "runAsGroup": pod_context["runAsGroup"],
        "seccompProfile": pod_context["seccompProfile"],
    }
    assert sidecar["securityContext"] == wanted


def test_same_tmp_volume_and_grace_period(
    pair: tuple[Render, dict[str, Any], dict[str, Any]],
) -> None:
    rendered, pod, sidecar = pair
    chart_tmp = next(v for v in rendered.pod_spec["volumes"] if v["name"] == "sidecar-tmp")
    [injected_tmp] = [v for v in pod["spec"]["volumes"] if "emptyDir" in v]
    assert injected_tmp["emptyDir"] == chart_tmp["emptyDir"]
    mounts = {m["mountPath"] for m in sidecar["volumeMounts"]}
    assert mounts == {"/tmp"}  # no ConfigMap without the config annotation
    grace = rendered.pod_spec["terminationGracePeriodSeconds"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == grace


def test_same_listeners_and_scrape_annotations(
    pair: tuple[Render, dict[str, Any], dict[str, Any]],
) -> None:
    rendered, pod, sidecar = pair
    [inline] = [e["value"] for e in sidecar["env"] if e["name"] == INJECTED_ONLY_ENV]
    config = yaml.safe_load(inline)
    chart_config = rendered.sidecar_config
    for section in ("proxy", "admin", "ingest"):
        assert config[section]["listen"] == chart_config[section]["listen"], section
    assert config["admin"]["metrics_path"] == chart_config["admin"]["metrics_path"]
    annotations = rendered.deployment["spec"]["template"]["metadata"]["annotations"]
    for key in ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"):
        assert pod["metadata"]["annotations"][key] == annotations[key], key
