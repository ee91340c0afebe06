"""deploy/prometheus/scrape-*.yaml pass `promtool check config`; compose.yaml agrees with them
and with the Dockerfile.

Debian's ``prometheus`` package is built without Kubernetes service discovery (its promtool
answers ``field kubernetes_sd_configs not found``). For that file the test accepts exactly
that one finding, then checks the same file with the ``kubernetes_sd_configs`` block
swapped for ``file_sd_configs``, so every relabelling rule is still parsed by promtool; the
end-to-end test (test_e2e_pod.py) runs those rules in a real Prometheus on pod metadata
taken from the chart's render.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.support.chart import ROOT
from tests.support.kubernetes import KUBERNETES_CONFIG, kubernetes_config_with_file_sd
from tests.support.prometheus import promtool

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
LOCAL_CONFIG = PROMETHEUS_DIR / "scrape-local.yaml"
COMPOSE = ROOT / "deploy" / "compose.yaml"
DEBIAN_NO_KUBERNETES_SD = "field kubernetes_sd_configs not found"


def _check(path: Path) -> tuple[int, str]:
    done = promtool("check", "config", str(path))
    return done.returncode, done.stdout + done.stderr


def test_local_config_passes_promtool() -> None:
    code, output = _check(LOCAL_CONFIG)
    assert code == 0, output
    assert "rules found" in output  # rule_files resolve to deploy/prometheus/rules.yaml


def test_kubernetes_config_passes_promtool(tmp_path: Path) -> None:
    code, output = _check(KUBERNETES_CONFIG)
    if code != 0:  # only Debian's missing Kubernetes SD may fail it
        findings = [line for line in output.splitlines() if "FAILED" in line or "line " in line]
        assert all(DEBIAN_NO_KUBERNETES_SD in line or "unmarshal" in line for line in findings), (
            output
        )
        assert DEBIAN_NO_KUBERNETES_SD in output, output
    shutil.copy(PROMETHEUS_DIR / "rules.yaml", tmp_path / "rules.yaml")
    swapped = tmp_path / "scrape-kubernetes.yaml"
    swapped.write_text(yaml.safe_dump(kubernetes_config_with_file_sd(tmp_path / "pods.json")))
    code, output = _check(swapped)
    assert code == 0, output


def test_promtool_catches_a_broken_relabel_rule(tmp_path: Path) -> None:
    """Guards the test above: a bad regex in a relabel rule fails promtool."""
    config = kubernetes_config_with_file_sd(tmp_path / "pods.json")
    config["rule_files"] = []
    config["scrape_configs"][0]["relabel_configs"][0]["regex"] = "(unclosed"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    assert _check(path)[0] != 0


def test_kubernetes_config_reads_the_chart_annotations() -> None:
    text = KUBERNETES_CONFIG.read_text()
    for annotation in ("scrape", "port", "path"):
        assert f"__meta_kubernetes_pod_annotation_prometheus_io_{annotation}" in text
    labels = {
        rule.get("target_label")
        for job in yaml.safe_load(text)["scrape_configs"]
        for rule in job["relabel_configs"]
    }
    assert {"namespace", "pod", "__address__", "__metrics_path__"} <= labels


# ------------------------------------------------------------------------------ compose


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return compose


def test_compose_builds_the_dockerfile_and_runs_it_like_the_image() -> None:
    sidecar = _compose()["services"]["sidecar"]
    context = (COMPOSE.parent / sidecar["build"]["context"]).resolve()
    dockerfile = (context / sidecar["build"]["dockerfile"]).read_text()
    user = re.search(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert user is not None
    assert sidecar["user"] == user.group(1)
    assert sidecar["read_only"] is True
    assert sidecar["tmpfs"] == ["/tmp"]
    assert sidecar["command"][0] == "run"
    env = sidecar["environment"]
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        assert f"{name}={env[name]}" in dockerfile


def test_compose_shares_one_network_namespace_like_a_pod() -> None:
    services = _compose()["services"]
    assert services["sidecar"]["network_mode"] == "service:app"
    assert services["prometheus"]["network_mode"] == "service:app"
    published = {int(p.split(":")[0]) for p in services["app"]["ports"]}
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert exposed is not None
    assert {int(p) for p in exposed.group(1).split()} <= published
    assert 9090 in published


def test_compose_prometheus_uses_the_local_config() -> None:
    prometheus = _compose()["services"]["prometheus"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prometheus["volumes"] if "/" in m}
    assert (COMPOSE.parent / mounts["/etc/prometheus/prometheus.yml"]).resolve() == LOCAL_CONFIG
    assert (COMPOSE.parent / mounts["/etc/prometheus/rules.yaml"]).resolve().is_file()
    local = yaml.safe_load(LOCAL_CONFIG.read_text())
    [target] = local["scrape_configs"][0]["static_configs"][0]["targets"]
    assert target == "127.0.0.1:9464"  # the image's default admin.listen port, same netns
    assert re.search(r"^EXPOSE .*\b9464\b", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
