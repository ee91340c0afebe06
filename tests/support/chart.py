"""Render the Helm charts with the real Helm engine (PyPI ``helm-python-sdk``) for tests.

``helm-python-sdk`` binds Helm's Go SDK (``libhelm_c``) with ctypes: no helm binary, no
cluster. Rendering validates the values against ``values.schema.json`` exactly as
``helm install`` does. Two charts: the app+sidecar chart (`SIDECAR_CHART`; the module-level
`render`, `scenarios` and `scenario_values` are its) and the injection webhook's
(`INJECTOR_CHART`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "causality-sidecar"
CI_DIR = CHART_DIR / "ci"
RELEASE = "demo"
NAMESPACE = "observability"
CONFIG_MOUNT = "/etc/causality-sidecar/config.yaml"
# The oldest Kubernetes the chart supports (native sidecars) and the newest schema shipped.
KUBE_VERSIONS = ("1.29", "1.37")
# sidecar.image.repository is a required value (the image is published nowhere); every ci/
# scenario sets this one, and render() adds it unless told otherwise.
SIDECAR_IMAGE_REPOSITORY = "registry.example.com/causality-sidecar"
SIDECAR_IMAGE = {"sidecar": {"image": {"repository": SIDECAR_IMAGE_REPOSITORY}}}
INJECTOR_CHART_DIR = ROOT / "helm" / "causality-sidecar-injector"
# The injector chart's one required value: the same image serves the webhook.
INJECTOR_IMAGE = {"image": {"repository": SIDECAR_IMAGE_REPOSITORY}}


@dataclass(frozen=True, slots=True)
class Render:
    """One render of the chart: every manifest document, and NOTES.txt."""

    docs: tuple[dict[str, Any], ...]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Every document of ``kind``."""
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        """The single document of ``kind`` whose name ends with ``name_suffix``."""
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        """The Deployment."""
        return self.one("Deployment")

    @property
    def pod_spec(self) -> dict[str, Any]:
        """The Deployment's pod spec."""
        spec: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        return spec

    @property
    def sidecar_config(self) -> dict[str, Any]:
        """The sidecar config from the ConfigMap, parsed."""
        config_map = next(
            d for d in self.of_kind("ConfigMap") if "config.yaml" in d.get("data", {})
        )
        parsed: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
        return parsed

    @property
    def sidecar(self) -> dict[str, Any]:
        """The sidecar container (regular or native init container)."""
        for container in self.pod_spec.get("initContainers", []) + self.pod_spec["containers"]:
            if "--config" in container.get("args", []):
                return container
        raise AssertionError("no sidecar container in the Deployment")


@dataclass(frozen=True, slots=True, eq=False)
class HelmChart:
    """A chart under test: its directory and the values every install must set."""

    directory: Path
    required_values: Mapping[str, Any]

    @property
    def ci_dir(self) -> Path:
        """The chart's ci/ scenarios."""
        return self.directory / "ci"

    def scenarios(self) -> list[str]:
        """The scenario values files under ci/, by stem."""
        return sorted(
            p.name.removesuffix("-values.yaml") for p in self.ci_dir.glob("*-values.yaml")
        )

    def scenario_values(self, name: str) -> dict[str, Any]:
        """The values of scenario ``name`` (ci/NAME-values.yaml)."""
        return _values_file(self.ci_dir / f"{name}-values.yaml")

    def render(
        self,
        values: dict[str, Any] | None = None,
        *,
        with_required: bool = True,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
    ) -> Render:
        """Render the chart with ``values`` over its defaults (schema-checked, like an install).

        ``with_required`` puts `required_values` under ``values``; False renders ``values``
        exactly as given.

        Raises:
            helm_python.HelmError: the values break the schema or a template fails.
        """
        given = values or {}
        if with_required:
            given = deep_merge(dict(self.required_values), given)
        with helm.Chart.load(self.directory) as chart:
            rendered = chart.render(given, name=release, namespace=namespace, is_install=True)
        docs: list[dict[str, Any]] = []
        notes = ""
        for template, text in sorted(rendered.items()):
            if template.endswith("NOTES.txt"):
                notes = text
                continue
            docs.extend(d for d in yaml.safe_load_all(text) if d)
        return Render(tuple(docs), notes)


SIDECAR_CHART = HelmChart(CHART_DIR, SIDECAR_IMAGE)
INJECTOR_CHART = HelmChart(INJECTOR_CHART_DIR, INJECTOR_IMAGE)


@cache
def _values_file(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    return values or {}


def scenarios() -> list[str]:
    """The app+sidecar chart's scenario values files under ci/, by stem."""
    return SIDECAR_CHART.scenarios()


def scenario_values(name: str) -> dict[str, Any]:
    """The values of the app+sidecar chart's scenario ``name`` (ci/NAME-values.yaml)."""
    return SIDECAR_CHART.scenario_values(name)


def render(values: dict[str, Any] | None = None, *, with_image: bool = True) -> Render:
    """Render the app+sidecar chart with ``values`` over its defaults (schema-checked).

    ``with_image`` puts `SIDECAR_IMAGE` under ``values`` (the one required value); False
    renders ``values`` exactly as given.

    Raises:
        helm_python.HelmError: the values break the schema or a template fails.
    """
    return SIDECAR_CHART.render(values, with_required=with_image)


def containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container and init container of a pod spec."""
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def port_of(address: str) -> int:
    """The port of a ``host:port`` / ``[v6]:port`` listen address."""
    return int(address.rpartition(":")[2])


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, recursively for mappings (like Helm's value coalescing)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def leaf_paths(tree: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The dotted paths of a values tree's leaves (an empty mapping is a leaf)."""
    paths: set[str] = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths |= leaf_paths(value, path + ".")
        else:
            paths.add(path)
    return paths


def documented_values(values_text: str) -> set[str]:
    """The value paths a values.yaml documents with ``## @param PATH``."""
    return set(re.findall(r"^\s*## @param (\S+)", values_text, re.MULTILINE))


def schema_at(schema: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    """The values.schema.json node of a dotted value path, or None."""
    node: Mapping[str, Any] | None = schema
    for part in path.split("."):
        node = (node or {}).get("properties", {}).get(part)
        if node is None:
            return None
    return dict(node) if node is not None else None


def _meta_name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def kubernetes_sd_targets(rendered: Render, pod_name: str) -> list[dict[str, Any]]:
    """What Prometheus's Kubernetes SD (role: pod) reports for the rendered Deployment's pod
    running on 127.0.0.1: one target per container port (``file_sd_configs`` content)."""
    template = rendered.deployment["spec"]["template"]
    pod_labels = {
        "__meta_kubernetes_namespace": NAMESPACE,
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_pod_ip": "127.0.0.1",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_node_name": "node-1",
    }
    for key, value in template["metadata"].get("annotations", {}).items():
        pod_labels[f"__meta_kubernetes_pod_annotation_{_meta_name(key)}"] = str(value)
    for key, value in template["metadata"]["labels"].items():
        pod_labels[f"__meta_kubernetes_pod_label_{_meta_name(key)}"] = str(value)
    targets = []
    for container in containers(template["spec"]):
        for port in container.get("ports", []):
            number = port["containerPort"]
            labels = {
                **pod_labels,
                "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_port_name": port["name"],
                "__meta_kubernetes_pod_container_port_number": str(number),
                "__meta_kubernetes_pod_container_init": str("restartPolicy" in container).lower(),
            }
            targets.append({"targets": [f"127.0.0.1:{number}"], "labels": labels})
    return targets


def lint_problems(directory: Path, values: dict[str, Any]) -> list[Any]:
    """``helm lint --strict`` errors and warnings (severity >= 2) for the chart in ``directory``.

    Severity 1 (info) is only "icon is recommended", so it is left out.
    """
    report = helm.lint(directory, values, strict=True, kube_version=f"v{KUBE_VERSIONS[0]}.0")
    return [*report["errors"], *(m for m in report["messages"] if m["severity"] >= 2)]


def validated_kinds(
    rendered: Render, kube_version: str, skip: frozenset[str] = frozenset()
) -> list[str]:
    """The kinds of ``rendered``'s documents, each validated strictly against Kubernetes
    ``kube_version`` (kinds in ``skip``, e.g. CRDs, are left out).

    Raises:
        AssertionError: a document breaks the schema; names it and the field path.
    """
    kinds = []
    for doc in rendered.docs:
        if doc["kind"] in skip:
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = ".".join(map(str, err.path))
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            raise AssertionError(f"{name} at {where}: {err}") from err
        kinds.append(doc["kind"])
    return kinds
