"""``causality-sidecar inject``, run as a real process: formats, flags, notes, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.chart import KUBE_VERSIONS, ROOT
from tests.support.kubernetes import CORPUS, IMAGE, containers, sidecar_config
from tests.support.pss import violations

SIDECAR = [sys.executable, "-m", "sidecar"]
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web"},
    "spec": {
        "containers": [
            {"name": "web", "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}]}
        ]
    },
}


def inject(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIDECAR, "inject", "--image", IMAGE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_yaml_file_in_yaml_out_in_the_same_order() -> None:
    done = inject(str(CORPUS / "numeric-port.yaml"))
    assert done.returncode == 0, done.stderr
    kinds = [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(done.stdout)]
    assert kinds == [("Service", "api"), ("Service", "other"), ("Deployment", "api")]
    assert done.stdout == (CORPUS / "numeric-port.injected.yaml").read_text(encoding="utf-8")
    assert done.stderr.splitlines() == [
        "causality-sidecar inject: Deployment/api: warning: port 3000 of container api has no "
        "name, so no Service can be redirected to the sidecar by name: a Service with "
        "targetPort 3000 still reaches the app directly; set its targetPort to 8000 (or 'proxy')",
        "causality-sidecar inject: Deployment/api: injected",
        "causality-sidecar inject: Service/api: targetPort 3000 -> 8000 (the sidecar's proxy port)",
        "causality-sidecar inject: Service/other: unchanged: no numeric targetPort of an "
        "injected pod",
    ]


def test_json_from_stdin_gives_json() -> None:
    done = inject("-", stdin=json.dumps(POD))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [c["name"] for c in out["spec"]["containers"]] == ["causality-sidecar", "web"]
    assert done.stderr == "causality-sidecar inject: Pod/web: injected\n"


def test_a_json_list_is_walked() -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": [POD, {**POD, "kind": "Pod"}]}
    done = inject(stdin=json.dumps(listing))  # no FILE: stdin
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["kind"] == "List"
    assert all("causality-sidecar" in containers(item) for item in out["items"])


def test_injecting_the_output_again_changes_nothing() -> None:
    once = inject(str(CORPUS / "named-port.yaml"))
    twice = inject("-", stdin=once.stdout)
    assert twice.returncode == 0
    assert twice.stdout == once.stdout
    assert "Deployment/web: unchanged: already injected" in twice.stderr


def test_flags_native_config_map_upstream_port() -> None:
    done = inject(
        "--native", "--config-map", "shared", "--upstream-port", "9000", stdin=json.dumps(POD)
    )
    assert done.returncode == 0, done.stderr
    pod: dict[str, Any] = json.loads(done.stdout)
    [sidecar] = pod["spec"]["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"] == ["run", "--config", "/etc/causality-sidecar/config.yaml"]
    assert {"name": "causality-sidecar-config", "configMap": {"name": "shared"}} in pod["spec"][
        "volumes"
    ]
    assert sidecar_config(sidecar)["proxy"]["upstream"] == "http://127.0.0.1:9000"
    assert sidecar["ports"][0]["name"] == "proxy"  # 9000 is no declared port: nothing to swap


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("kind: [", "not valid YAML"),
        ("{nope", "not valid JSON"),
        ("just text", "expected a Kubernetes object (a mapping), got 'just text'"),
        ("name: x\n", "document[0]: not a Kubernetes object: no apiVersion"),
        ("apiVersion: v1\nkind: List\nitems: [{kind: Pod}]\n", "document[0].items[0]: not a"),
        ("", "no Kubernetes object in the input"),
        ("apiVersion: v1\nkind: Pod\nmetadata: [1]\n", "document[0]: metadata is not a mapping"),
    ],
    ids=["yaml", "json", "scalar", "no-kind", "list-item", "empty", "metadata"],
)
def test_input_that_is_not_kubernetes_exits_2(stdin: str, message: str) -> None:
    done = inject(stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    done = inject(str(tmp_path / "absent.yaml"))
    assert done.returncode == 2
    assert "cannot read" in done.stderr


def test_a_bad_upstream_port_flag_exits_2() -> None:
    done = inject("--upstream-port", "70000", stdin=json.dumps(POD))
    assert done.returncode == 2
    assert "--upstream-port" in done.stderr


def test_the_image_is_required() -> None:
    done = subprocess.run(
        [*SIDECAR, "inject", "-"], input="", capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "--image" in done.stderr


def test_the_docs_example_injects_into_valid_restricted_manifests() -> None:
    done = inject(str(ROOT / "docs" / "examples" / "shop.yaml"))
    assert done.returncode == 0, done.stderr
    [deployment, service] = yaml.safe_load_all(done.stdout)
    for doc in (deployment, service):
        kubernetes_validate.validate(doc, KUBE_VERSIONS[0], strict=True)
    pod = deployment["spec"]["template"]
    assert violations(pod["spec"]) == []
    assert sidecar_config(containers(pod)["causality-sidecar"])["proxy"]["routes"] == [
        "/users/{id}",
        "/orders/{id}",
    ]


def test_odd_objects_pass_through_without_a_traceback() -> None:
    odd = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: [1]\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: t}\nspec: {selector: [a], ports: x}\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: [x]}\n"
        "spec: {containers: [{name: a, ports: [{containerPort: 80}]}]}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: [1]}\n"
    )
    done = inject(stdin=odd)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Deployment/d: unchanged: no pod template" in done.stderr
    assert "Pod/p: injected" in done.stderr
