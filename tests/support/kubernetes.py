"""Kubernetes test data shared by the deploy and inject suites: Prometheus's Kubernetes
scrape config run on file-based discovery, and the injection corpus with its readers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sidecar.inject.settings import InjectSettings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_CONFIG = ROOT / "deploy" / "prometheus" / "scrape-kubernetes.yaml"

# The injection corpus (tests/inject/corpus/*.yaml) and the settings it is injected with.
CORPUS = ROOT / "tests" / "inject" / "corpus"
IMAGE = "registry.example.com/causality-sidecar:0.1.0"
SETTINGS = InjectSettings(image=IMAGE)
# The pod the end-to-end tests run as (its downward-API name).
POD_NAME = "web-6f7d9c8b5-q8x2z"


def kubernetes_config_with_file_sd(sd_file: Path) -> dict[str, Any]:
    """scrape-kubernetes.yaml with its pod discovery replaced by ``file_sd_configs``."""
    config: dict[str, Any] = yaml.safe_load(KUBERNETES_CONFIG.read_text())
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
        job["file_sd_configs"] = [{"files": [str(sd_file)], "refresh_interval": "1s"}]
    return config


def corpus_names() -> list[str]:
    """The corpus inputs, by stem (golden outputs end in .injected.yaml)."""
    return sorted(p.stem for p in CORPUS.glob("*.yaml") if not p.stem.endswith(".injected"))


def containers(pod: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every container and init container of a pod (template), by name."""
    spec = pod["spec"]
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def sidecar_config(container: Mapping[str, Any]) -> dict[str, Any]:
    """The sidecar's config from its SIDECAR_CONFIG_YAML, parsed."""
    [value] = [e["value"] for e in container["env"] if e["name"] == "SIDECAR_CONFIG_YAML"]
    parsed: dict[str, Any] = yaml.safe_load(value)
    return parsed


def pod_templates(doc: Any) -> list[dict[str, Any]]:
    """Every pod template (or Pod) in a corpus document."""
    if not isinstance(doc, dict):
        return []
    if doc.get("kind") == "Pod":
        return [doc]
    if doc.get("kind") == "List":
        return [t for item in doc.get("items", []) for t in pod_templates(item)]
    spec = doc.get("spec") or {}
    if "jobTemplate" in spec:
        return [spec["jobTemplate"]["spec"]["template"]]
    return [spec["template"]] if "template" in spec else []


def kubelet_env(entries: list[dict[str, Any]], fields: dict[str, str]) -> dict[str, str]:
    """A container's environment as the kubelet gives it: downward-API fields filled in,
    ``$(VAR)`` expanded from the variables defined before."""
    env: dict[str, str] = {}
    for entry in entries:
        if "valueFrom" in entry:
            env[entry["name"]] = fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[entry["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), entry["value"]
            )
    return env


def port_named(pod_template: dict[str, Any], name: str) -> int:
    """How a Service resolves a named targetPort: the container port of that name."""
    [number] = [
        p["containerPort"]
        for c in containers(pod_template).values()
        for p in c.get("ports", [])
        if p.get("name") == name
    ]
    return int(number)
