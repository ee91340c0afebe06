"""The webhook's JSON Patch (sidecar/inject/patch.py), applied by the `jsonpatch` library.

Property: for any two JSON documents, applying ``json_patch(a, b)`` to ``a`` gives ``b``.
Checked on every pod template of the injection corpus (before -> injected) and on
generated documents; plus the shape of the patch for a typical pod (what an operator
reads in the audit log).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.inject.mutate import inject_pod
from sidecar.inject.patch import json_patch
from sidecar.inject.settings import InjectSettings
from tests.support.kubernetes import CORPUS, pod_templates

REVIEW = Path(__file__).parent / "reviews" / "deployment-pod.json"


def apply(src: Any, ops: list[dict[str, Any]]) -> Any:
    return jsonpatch.apply_patch(copy.deepcopy(src), json.loads(json.dumps(ops)))


def _corpus_pods() -> list[Any]:
    pods = []
    for path in sorted(CORPUS.glob("*.yaml")):
        if path.name.endswith(".injected.yaml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            for template in pod_templates(doc):
                pods.append(pytest.param(template, id=f"{path.stem}:{len(pods)}"))
    return pods


CORPUS_PODS = _corpus_pods()


def test_the_corpus_has_pods() -> None:
    assert len(CORPUS_PODS) >= 8


@pytest.mark.parametrize("pod", CORPUS_PODS)
@pytest.mark.parametrize("native", [False, True], ids=["classic", "native"])
def test_patch_of_every_corpus_pod_gives_the_injected_pod(
    pod: dict[str, Any], native: bool
) -> None:
    injected = inject_pod(pod, InjectSettings(image="example/sidecar:1", native=native)).pod
    assert apply(pod, json_patch(pod, injected)) == injected


def test_the_typical_pod_patch_adds_the_sidecar_and_renames_a_port() -> None:
    pod = json.loads(REVIEW.read_text())["request"]["object"]
    injected = inject_pod(pod, InjectSettings(image="example/sidecar:1"), namespace="shop").pod
    ops = json_patch(pod, injected)
    assert apply(pod, ops) == injected
    by_path = {op["path"]: op for op in ops}
    assert by_path["/spec/containers/0"]["op"] == "add"
    assert by_path["/spec/containers/0"]["value"]["name"] == "causality-sidecar"
    port_ops = [op for op in ops if op["path"] == "/spec/containers/1/ports/0"]
    assert port_ops == [  # a port is known by its name: renamed = one out, one in
        {"op": "remove", "path": "/spec/containers/1/ports/0"},
        {"op": "add", "path": "/spec/containers/1/ports/0",
         "value": {"name": "app-http", "containerPort": 8080, "protocol": "TCP"}},
    ]  # fmt: skip
    assert by_path["/metadata/annotations/sidecar.causality.dev~1status"]["op"] == "add"
    assert not any(op["path"].startswith("/metadata/managedFields") for op in ops)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ({"a": 1}, {"a": True}),  # equal in Python, not in JSON
        ({"a": [1, 2]}, {"a": [1.0, 2]}),
        ({"a/b": {"c~d": 1}}, {"a/b": {"c~d": 2}}),  # pointer escaping
        ([{"name": "a"}, {"name": "b"}], [{"name": "b"}, {"name": "a"}]),  # reordered names
        ([{"name": "a"}, {"name": "a"}], [{"name": "a", "x": 1}]),  # duplicate names
        ({"l": [1, 2, 3, 4]}, {"l": [1, 9, 8, 4, 5]}),
        ({"l": [1, 2, 3]}, {"l": []}),
        ([], {}),
        ({"x": None}, {"x": {"y": None}}),
    ],
)
def test_edge_cases_apply_exactly(src: Any, dst: Any) -> None:
    assert apply({"root": src}, json_patch({"root": src}, {"root": dst})) == {"root": dst}


_SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["a", "b", "a/b", "~0"])
_NAMES = st.sampled_from(["app", "sidecar", "db", "x/y"])
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["name", "k", "ports", "a~b", "c/d"]), inner, max_size=4)
        | st.lists(st.fixed_dictionaries({"name": _NAMES}, optional={"v": inner}), max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(_JSON, _JSON)
def test_any_two_documents(src: Any, dst: Any) -> None:
    assert apply({"r": src}, json_patch({"r": src}, {"r": dst})) == {"r": dst}


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_no_change_no_operations(doc: Any) -> None:
    assert json_patch(doc, copy.deepcopy(doc)) == []
