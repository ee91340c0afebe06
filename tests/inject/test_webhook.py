"""The injection webhook, ``causality-sidecar webhook``, run for real over TLS on loopback.

AdmissionReview bodies are the ones the API server sends (tests/inject/reviews/: a pod a
Deployment's ReplicaSet creates, after defaulting and the ServiceAccount admission). The
returned patch is applied with the `jsonpatch` library and compared with what
``causality-sidecar inject`` makes of the same pod.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kubernetes import CORPUS, corpus_names, pod_templates
from tests.support.process import (
    http_get,
    wait_until,
)
from tests.support.tls import Pki, certificate_der, served_certificate, write_atomically
from tests.support.webhook import (
    IMAGE,
    MAX_BODY,
    SERVICE_NAME,
    Webhook,
    cli_inject,
    patched,
    review,
    start_webhook,
)


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    tmp = tmp_path_factory.mktemp("webhook")
    with start_webhook(tmp, Pki(tmp / "pki")) as hook:
        yield hook


# ---------------------------------------------------------------- what is injected


def test_patch_applied_equals_the_cli_output(webhook: Webhook) -> None:
    body = review()
    pod = body["request"]["object"]
    answer = webhook.admit(body)
    expected = cli_inject(pod)
    assert expected["metadata"]["annotations"]["sidecar.causality.dev/status"] == "injected"
    assert patched(answer, pod) == expected
    assert answer["response"]["warnings"] == [  # it cannot see Services: it says what to do
        "causality-sidecar: a Service with targetPort 8080 (a number) still reaches the app, "
        "not the sidecar: use targetPort http (or 8000)"
    ]


def test_an_unnamed_app_port_gets_one_warning_naming_the_proxy_port(webhook: Webhook) -> None:
    body = review()
    pod = body["request"]["object"]
    del pod["spec"]["containers"][0]["ports"][0]["name"]
    pod["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = 8080
    pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = 8080
    answer = webhook.admit(body)
    assert patched(answer, pod) == cli_inject(pod)
    warnings = answer["response"]["warnings"]
    assert len(warnings) == 1, warnings
    assert "has no name" in warnings[0]
    assert "set its targetPort to 8000" in warnings[0]


def corpus_reviews() -> list[Any]:
    """(review of each corpus pod template as a Pod CREATE, the command's golden template)."""
    cases = []
    for name in corpus_names():
        inputs = yaml.safe_load_all((CORPUS / f"{name}.yaml").read_text())
        goldens = yaml.safe_load_all((CORPUS / f"{name}.injected.yaml").read_text())
        for index, (doc, golden) in enumerate(zip(inputs, goldens, strict=True)):
            namespace = ((doc or {}).get("metadata") or {}).get("namespace") or "default"
            for template, expected in zip(pod_templates(doc), pod_templates(golden), strict=True):
                body = review()
                pod = {"apiVersion": "v1", "kind": "Pod", **copy.deepcopy(template)}
                pod.setdefault("metadata", {})["namespace"] = namespace
                body["request"].update(namespace=namespace, object=pod)
                want = {"apiVersion": "v1", "kind": "Pod", **copy.deepcopy(expected)}
                want.setdefault("metadata", {})["namespace"] = namespace
                cases.append(pytest.param(body, want, id=f"{name}[{index}]"))
    return cases


@pytest.mark.parametrize(("body", "expected"), corpus_reviews())
def test_every_corpus_pod_is_injected_as_the_command_does(
    webhook: Webhook, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    pod = body["request"]["object"]
    answer = webhook.admit(body)
    result = patched(answer, pod) if "patch" in answer["response"] else pod
    assert result == expected


def test_opt_in_path_injects_an_annotated_pod_like_the_cli(webhook: Webhook) -> None:
    body = review()
    pod = body["request"]["object"]
    pod["metadata"]["annotations"]["sidecar.causality.dev/inject"] = "true"
    pod["metadata"]["annotations"]["sidecar.causality.dev/routes"] = "/cart/{id},/orders"
    answer = webhook.admit(body, "/mutate/opt-in")
    result = patched(answer, pod)
    assert result == cli_inject(pod)
    assert [c["name"] for c in result["spec"]["containers"]] == ["causality-sidecar", "checkout"]


def test_native_annotation_gives_a_restartable_init_container(webhook: Webhook) -> None:
    body = review()
    pod = body["request"]["object"]
    pod["metadata"]["annotations"]["sidecar.causality.dev/native"] = "true"
    result = patched(webhook.admit(body), pod)
    assert result == cli_inject(pod)
    sidecar = result["spec"]["initContainers"][0]
    assert (sidecar["name"], sidecar["restartPolicy"]) == ("causality-sidecar", "Always")


def test_reinvocation_on_the_injected_pod_changes_nothing(webhook: Webhook) -> None:
    body = review()
    body["request"]["object"] = patched(webhook.admit(body), body["request"]["object"])
    answer = webhook.admit(body)
    assert "patch" not in answer["response"]


@pytest.mark.parametrize(
    ("path", "change", "why"),
    [
        ("/mutate/opt-in", {}, "no annotation, namespace not labelled"),
        ("/mutate", {"annotations": {"sidecar.causality.dev/inject": "false"}}, "opted out"),
        ("/mutate", {"namespace": "kube-system"}, "kube-system"),
        ("/mutate", {"namespace": "causality-system"}, "the injector's own namespace"),
        ("/mutate", {"hostNetwork": True}, "hostNetwork"),
    ],
)
def test_pods_not_to_be_injected_are_allowed_unchanged(
    webhook: Webhook, path: str, change: dict[str, Any], why: str
) -> None:
    body = review()
    request = body["request"]
    if "namespace" in change:
        request["namespace"] = request["object"]["metadata"]["namespace"] = change["namespace"]
    request["object"]["metadata"]["annotations"].update(change.get("annotations", {}))
    if "hostNetwork" in change:
        request["object"]["spec"]["hostNetwork"] = True
    answer = webhook.admit(body, path)
    assert set(answer["response"]) == {"uid", "allowed"}, why


def test_a_pod_that_cannot_be_injected_is_allowed_with_the_reason(webhook: Webhook) -> None:
    body = review()
    del body["request"]["object"]["spec"]["containers"][0]["ports"]
    answer = webhook.admit(body)
    assert "patch" not in answer["response"]
    warnings = answer["response"]["warnings"]
    assert any("not injected" in w and "upstream-port" in w for w in warnings), warnings


@pytest.mark.parametrize("obj", ["a string", {"metadata": "not a mapping", "spec": {}}, None])
def test_an_object_the_mutation_cannot_read_is_allowed_with_a_warning(
    webhook: Webhook, obj: Any
) -> None:
    body = review()
    body["request"]["object"] = obj
    answer = webhook.admit(body)  # never a denial, never a 500
    assert "patch" not in answer["response"]
    assert answer["response"]["warnings"][0].startswith("causality-sidecar: not injected")


def test_a_bug_in_the_mutation_is_a_warning_not_a_denial(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in mutation that raises: no real pod makes inject_pod fail (it is written
    not to), so this is the one place a fake is used, to prove the guarantee around it."""
    from sidecar.inject import webhook as module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("spec")

    monkeypatch.setattr(module, "inject_pod", broken)
    hook = module.Webhook(module.InjectSettings(image=IMAGE))
    answer = hook.review(json.dumps(review()).encode(), namespace_enabled=True)
    assert answer.body is not None
    response = answer.body["response"]
    assert (answer.status, answer.result, response["allowed"], "patch" in response) == (
        200,
        "error",
        True,
        False,
    )
    assert response["warnings"] == [
        "causality-sidecar: not injected: the injector failed: KeyError: 'spec'"
    ]


def test_a_bad_annotation_is_a_warning_and_the_pod_is_injected(webhook: Webhook) -> None:
    body = review()
    pod = body["request"]["object"]
    pod["metadata"]["annotations"]["sidecar.causality.dev/events"] = "yes please"
    answer = webhook.admit(body)
    assert patched(answer, pod) == cli_inject(pod)
    assert any("sidecar.causality.dev/events" in w for w in answer["response"]["warnings"])


@pytest.mark.parametrize(
    ("operation", "kind"),
    [
        ("UPDATE", {"group": "", "version": "v1", "kind": "Pod"}),
        ("CREATE", {"group": "apps", "version": "v1", "kind": "Deployment"}),
    ],
)
def test_anything_but_a_pod_create_is_allowed_unchanged(
    webhook: Webhook, operation: str, kind: dict[str, str]
) -> None:
    body = review()
    body["request"].update(operation=operation, kind=kind)
    answer = webhook.admit(body)
    assert set(answer["response"]) == {"uid", "allowed"}


# ----------------------------------------------------------------- bad requests


GARBAGE = [
    (b"\x00\xffnot json", "not JSON"),
    (b"[1, 2, 3]", "not an AdmissionReview"),
    (b'{"kind": "Pod", "apiVersion": "v1"}', "not an AdmissionReview"),
    (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}', "request.uid"),
    (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 7}}', "request.uid"),
    (b'{"kind": "AdmissionReview", "apiVersion": "v1", "request": {"uid": "x"}}', "is not admission.k8s.io/v1"),
    (b"", "not JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "reason"), GARBAGE)
def test_a_body_that_is_not_a_review_gets_400_with_a_reason(
    webhook: Webhook, body: bytes, reason: str
) -> None:
    status, text = webhook.post("/mutate", body)
    assert (status, reason in text.decode()) == (400, True), text


def test_another_admission_version_is_allowed_in_that_version_with_a_warning(
    webhook: Webhook,
) -> None:
    body = review()
    body["apiVersion"] = "admission.k8s.io/v1beta1"
    status, raw = webhook.post("/mutate", json.dumps(body).encode())
    answer = json.loads(raw)
    assert (status, answer["apiVersion"]) == (200, "admission.k8s.io/v1beta1")
    response = answer["response"]
    assert (response["uid"], response["allowed"], "patch" in response) == (
        body["request"]["uid"],
        True,
        False,
    )
    assert "not supported" in response["warnings"][0]


def oversized(uid_first: bool) -> bytes:
    body = review()
    body["request"]["object"]["metadata"]["annotations"]["padding"] = "x" * (MAX_BODY + 1)
    data = json.dumps(body).encode()
    if not uid_first:  # a review whose uid is not where the API server writes it
        data = b'{"padding": "' + b"y" * 5000 + b'", ' + data[1:]
    return data


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_review_is_allowed_unread_with_a_warning(
    webhook: Webhook, chunked: bool
) -> None:
    status, raw = webhook.post("/mutate", oversized(uid_first=True), chunked=chunked)
    assert status == 200, raw
    response = json.loads(raw)["response"]
    assert (response["uid"], response["allowed"], "patch" in response) == (
        review()["request"]["uid"],
        True,
        False,
    )
    assert f"over {MAX_BODY} bytes" in response["warnings"][0]


def test_an_oversized_body_without_a_readable_uid_gets_413(webhook: Webhook) -> None:
    status, raw = webhook.post("/mutate", oversized(uid_first=False))
    assert status == 413
    assert b"over 65536 bytes" in raw


def test_every_answer_is_counted_once_by_result(tmp_path: Path) -> None:
    with start_webhook(tmp_path, Pki(tmp_path / "pki")) as hook:
        assert set(hook.counts().values()) == {0.0}
        hook.admit(review())  # injected
        hook.admit(review(), "/mutate/opt-in")  # skipped
        updating = review()
        updating["request"]["operation"] = "UPDATE"
        hook.admit(updating)  # ignored
        no_port = review()
        del no_port["request"]["object"]["spec"]["containers"][0]["ports"]
        hook.admit(no_port)  # error
        old = review()
        old["apiVersion"] = "admission.k8s.io/v1beta1"
        hook.post("/mutate", json.dumps(old).encode())  # unsupported_version
        hook.post("/mutate", oversized(uid_first=True))  # too_large
        hook.post("/mutate", oversized(uid_first=False))  # too_large (413)
        hook.post("/mutate", b"garbage")  # bad_request
        assert hook.counts() == {
            "injected": 1, "skipped": 1, "ignored": 1, "error": 1,
            "unsupported_version": 1, "too_large": 2, "bad_request": 1,
        }  # fmt: skip


# ------------------------------------------------------------- ports, TLS, lifecycle


def test_health_port_is_plain_http_and_has_no_mutate(webhook: Webhook) -> None:
    base = f"http://127.0.0.1:{webhook.health}"
    assert http_get(f"{base}/healthz")[0] == 200
    assert http_get(f"{base}/readyz")[0] == 200
    status, _, _ = http_get(f"{base}/mutate")
    assert status == 404
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        plain_post(webhook.port)


def plain_post(port: int) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", "/mutate", body=b"{}")
        return connection.getresponse().read()
    finally:
        connection.close()


def test_certificate_rotation_while_serving(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    with start_webhook(tmp_path, pki) as hook:
        context = pki.client_context()
        assert served_certificate(hook.port, context) == certificate_der(hook.cert)
        rotated = pki.server("rotated", SERVICE_NAME, "127.0.0.1")
        write_atomically(hook.cert.with_suffix(".key"), rotated.key.read_bytes())
        write_atomically(hook.cert, rotated.cert.read_bytes())
        wanted = certificate_der(rotated.cert)
        wait_until(lambda: served_certificate(hook.port, context) == wanted, 10, "rotated cert")
        hook.admit(review())  # and it answers with it
        assert hook.process.proc.poll() is None  # no restart
        _, _, text = http_get(f"http://127.0.0.1:{hook.health}/metrics")
        assert 'sidecar_injector_certificate_reloads_total{result="ok"} 1.0' in text.decode()


def test_sigterm_turns_not_ready_then_exits_0(tmp_path: Path) -> None:
    with start_webhook(tmp_path, Pki(tmp_path / "pki")) as hook:
        hook.process.proc.send_signal(signal.SIGTERM)
        assert hook.process.proc.wait(15) == 0
        assert '"event": "stopped"' in hook.process.logs() or "stopped" in hook.process.logs()


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ("missing-cert", "--tls-cert"),
        ("other-key", "--tls-key"),
        ("no-image", "--image"),
        ("bad-listen", "--listen"),
        ("bad-max-body", "--max-body"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(tmp_path: Path, change: str, flag: str) -> None:
    pki = Pki(tmp_path / "pki")
    pair, other = pki.server("a"), pki.server("b")
    options = {
        "--tls-cert": str(tmp_path / "missing.crt") if change == "missing-cert" else str(pair.cert),
        "--tls-key": str(other.key) if change == "other-key" else str(pair.key),
        "--listen": "nowhere:port" if change == "bad-listen" else "127.0.0.1:0",
        "--max-body": "lots" if change == "bad-max-body" else "1MiB",
    }
    args = [item for kv in options.items() for item in kv]
    if change != "no-image":
        args += ["--image", IMAGE]
    env = {k: v for k, v in os.environ.items() if k != "SIDECAR_IMAGE"}
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "webhook", *args],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"config error: {flag}:" in done.stderr, done.stderr


def test_the_input_review_is_not_changed_by_answering(webhook: Webhook) -> None:
    body = review()
    before = copy.deepcopy(body)
    webhook.admit(body)
    assert body == before
