"""Kubernetes test data shared by the deploy and inject suites: Prometheus's Kubernetes
scrape config run on file-based discovery, and the injection corpus with its readers."""

from __future__ import annotations

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
