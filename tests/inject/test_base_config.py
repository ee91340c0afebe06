"""The injector's base sidecar config (``--sidecar-config``) and ``admin.tls`` on injected pods.

Table tests of how the base config and a pod's annotations merge; the base config's
validation (exit 2 naming the key); the injected ``SIDECAR_CONFIG_YAML`` loaded by
``causality-sidecar check-config``; injected pods with ``admin.tls`` (HTTPS probes, the
scrape scheme, the certificate Secret mounted) validated with kubernetes-validate and the
restricted profile; and the webhook over real TLS picking up a changed base config without
a restart.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sidecar.config import ConfigError
from sidecar.inject.baseconfig import BaseConfigFile, layer_config, read_base_config
from sidecar.inject.mutate import inject_pod
from sidecar.inject.settings import InjectSettings
from tests.support.chart import KUBE_VERSIONS
from tests.support.kubernetes import IMAGE, containers, sidecar_config
from tests.support.process import http_get, wait_until
from tests.support.pss import violations
from tests.support.tls import Pki, write_atomically
from tests.support.webhook import cli_inject, patched, review, start_webhook

SIDECAR = "causality-sidecar"
TLS_DIR = "/etc/causality-sidecar-tls"
ADMIN_TLS = {"cert_file": f"{TLS_DIR}/tls.crt", "key_file": f"{TLS_DIR}/tls.key"}
APP = {"name": "app", "url": "http://127.0.0.1:8080/metrics"}
PLATFORM = {"name": "platform", "url": "http://127.0.0.1:9100/metrics"}


def _pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    app = {"name": "app", "image": "app:1", "ports": [{"name": "http", "containerPort": 8080}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "shop", "annotations": annotations or {}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    **app,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def _inject(base: dict[str, Any], annotations: dict[str, str] | None = None, **kw: Any) -> Any:
    return inject_pod(_pod(annotations), InjectSettings(image=IMAGE, base_config=base, **kw))


def _sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    return containers(pod)[SIDECAR]


# ------------------------------------------------------------------ the merge, pure


@pytest.mark.parametrize(
    ("base", "pod", "merged"),
    [
        ({}, {"a": 1}, {"a": 1}),
        ({"logging": {"level": "debug"}}, {"proxy": {"listen": "x"}},
         {"logging": {"level": "debug"}, "proxy": {"listen": "x"}}),
        ({"proxy": {"listen": "base", "timeout": "5s"}}, {"proxy": {"listen": "pod"}},
         {"proxy": {"listen": "pod", "timeout": "5s"}}),
        ({"proxy": {"routes": ["/a/{id}"]}}, {"proxy": {"routes": ["/b/{id}"]}},
         {"proxy": {"routes": ["/b/{id}"]}}),  # a list is replaced
        ({"merge": {"targets": [PLATFORM]}}, {"merge": {"targets": [APP]}},
         {"merge": {"targets": [PLATFORM, APP]}}),  # targets add up
        ({"merge": {"targets": [{"name": "app", "url": "http://127.0.0.1:1/m"}, PLATFORM]}},
         {"merge": {"targets": [APP]}},
         {"merge": {"targets": [PLATFORM, APP]}}),  # the pod's "app" replaces the base's
        ({"merge": {"targets": [PLATFORM], "timeout": "2s"}}, {},
         {"merge": {"targets": [PLATFORM], "timeout": "2s"}}),
    ],
    ids=["empty-base", "disjoint", "pod-wins", "list-replaced", "targets-add", "app-replaced",
         "base-only"],
)  # fmt: skip
def test_layer_config(base: dict[str, Any], pod: dict[str, Any], merged: dict[str, Any]) -> None:
    before = json.dumps(base)
    assert layer_config(base, pod) == merged
    assert json.dumps(base) == before  # not modified


# --------------------------------------------------- base config + annotations, injected

BASE = {
    "logging": {"level": "debug"},
    "proxy": {"listen": "0.0.0.0:1", "routes": ["/base/{id}"]},
    "events": {"enabled": True},
    "merge": {"targets": [PLATFORM]},
}


@pytest.mark.parametrize(
    ("annotations", "expect"),
    [
        ({}, {"logging.level": "debug", "proxy.listen": "0.0.0.0:8000",
              "proxy.routes": ["/base/{id}"], "events.enabled": True,
              "merge.targets": [PLATFORM], "proxy.upstream": "http://127.0.0.1:8080"}),
        ({"sidecar.causality.dev/routes": "/users/{id}"}, {"proxy.routes": ["/users/{id}"]}),
        ({"sidecar.causality.dev/events": "false"}, {"events.enabled": False}),
        ({"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
         {"merge.targets": [PLATFORM, APP]}),
        ({"sidecar.causality.dev/upstream-port": "8080"}, {"logging.level": "debug"}),
    ],
    ids=["base-only", "routes-annotation-wins", "events-annotation-wins", "app-target-added",
         "other-annotation"],
)  # fmt: skip
def test_base_config_under_the_pods_annotations(
    annotations: dict[str, str], expect: dict[str, Any]
) -> None:
    injection = _inject(BASE, annotations)
    assert injection.injected, injection.reason
    config = sidecar_config(_sidecar(injection.pod))
    for path, value in expect.items():
        node: Any = config
        for key in path.split("."):
            node = node[key]
        assert node == value, path


def test_base_metrics_path_is_what_the_annotations_point_at() -> None:
    injection = _inject({"admin": {"metrics_path": "/stats"}})
    annotations = injection.pod["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/stats"
    assert sidecar_config(_sidecar(injection.pod))["admin"]["metrics_path"] == "/stats"


def test_no_base_config_injects_what_it_did_before() -> None:
    assert _inject({}).pod == inject_pod(_pod(), InjectSettings(image=IMAGE)).pod


def test_the_injected_config_passes_check_config(tmp_path: Path) -> None:
    """Base config + annotations, as the sidecar will load them (check-config, a process)."""
    base_file = tmp_path / "base.yaml"
    base_file.write_text(yaml.safe_dump(BASE))
    settings = InjectSettings(image=IMAGE, base_config=read_base_config(str(base_file)))
    pod = _pod({"prometheus.io/scrape": "true", "sidecar.causality.dev/routes": "/u/{id}"})
    inline = _env(_sidecar(inject_pod(pod, settings).pod))
    effective = _check_config(tmp_path, inline)
    assert effective["logging"]["level"] == "debug"
    assert effective["proxy"]["routes"] == ["/u/{id}"]
    assert [t["name"] for t in effective["merge"]["targets"]] == ["platform", "app"]


def _env(container: dict[str, Any]) -> str:
    [value] = [e["value"] for e in container["env"] if e["name"] == "SIDECAR_CONFIG_YAML"]
    return str(value)


def _check_config(tmp_path: Path, inline: str) -> dict[str, Any]:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(empty)],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ["PATH"], "SIDECAR_CONFIG_YAML": inline},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = yaml.safe_load(done.stdout)
    return out


# ------------------------------------------------------------------ validation at start


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("logging: {level: loud}\n", "logging.level"),
        ("proxy: {upstream_tls: {insecure_skip_verify: true}}\n", "proxy.upstream_tls"),
        ("admin: {tls: {cert_file: /etc/t/tls.crt}}\n", "admin.tls.key_file"),
        ("admin: {tls: {cert_file: /etc/t/tls.crt, key_file: /etc/k/tls.key}}\n",
         "admin.tls.key_file"),
        ("admin: {tls: {cert_file: /tmp/tls.crt, key_file: /tmp/tls.key}}\n",
         "admin.tls.cert_file"),
        ("admin: {tls: {cert_file: tls.crt, key_file: tls.key}}\n", "admin.tls.cert_file"),
        ("nope: 1\n", "nope"),
        ("[a, b]\n", ""),
    ],
    ids=["bad-value", "only-with-the-injection", "half-tls", "two-dirs", "tmp-dir", "relative",
         "unknown-key", "not-a-mapping"],
)  # fmt: skip
def test_a_bad_base_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_base_config(str(path))
    assert caught.value.key.startswith(key), caught.value
    assert f"--sidecar-config {path}" in str(caught.value)


def test_the_webhook_exits_2_naming_the_key(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pair = pki.server("w", "127.0.0.1")
    config = tmp_path / "config.yaml"
    config.write_text("admin: {tls: {cert_file: /etc/t/tls.crt}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "webhook", "--listen", "127.0.0.1:0",
         "--tls-cert", str(pair.cert), "--tls-key", str(pair.key), "--image", IMAGE,
         "--sidecar-config", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"config error: admin.tls.key_file (in --sidecar-config {config}):" in done.stderr


def test_the_inject_command_takes_the_base_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("logging: {level: warning}\n")
    out = cli_inject(_pod(), "--sidecar-config", str(config))
    assert sidecar_config(_sidecar(out))["logging"]["level"] == "warning"
    config.write_text("logging: {level: loud}\n")
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "inject", "-", "--image", IMAGE,
         "--sidecar-config", str(config)],
        input=json.dumps(_pod()), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"logging.level (in --sidecar-config {config}):" in done.stderr
    assert done.stdout == ""


def test_a_changed_file_is_reread_and_a_bad_change_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("logging: {level: info}\n")
    base = BaseConfigFile(str(path))
    assert base.current() == {"logging": {"level": "info"}}
    write_atomically(path, b"logging: {level: debug}\n")
    assert base.current() == {"logging": {"level": "debug"}}
    write_atomically(path, b"logging: {level: loud}\n")
    assert base.current() == {"logging": {"level": "debug"}}
    assert (base.reloads, base.reload_failures) == (1, 1)


# ------------------------------------------------------------------------ admin.tls


def test_admin_tls_probes_scheme_and_secret_mount() -> None:
    injection = _inject({"admin": {"tls": ADMIN_TLS}}, admin_tls_secret="shop-metrics-tls")
    assert injection.injected, injection.reason
    pod = injection.pod
    sidecar = _sidecar(pod)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert sidecar[probe]["httpGet"]["scheme"] == "HTTPS", probe
    assert pod["metadata"]["annotations"]["prometheus.io/scheme"] == "https"
    [mount] = [m for m in sidecar["volumeMounts"] if m["mountPath"] == TLS_DIR]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume == {"name": mount["name"], "secret": {"secretName": "shop-metrics-tls"}}
    assert sidecar_config(sidecar)["admin"]["tls"] == ADMIN_TLS
    assert violations(pod["spec"]) == []
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)
    # injecting twice is injecting once
    again = inject_pod(pod, InjectSettings(image=IMAGE, base_config={"admin": {"tls": ADMIN_TLS}}))
    assert again.pod == pod
    assert not again.injected


def test_the_pods_annotation_names_the_secret() -> None:
    annotations = {"sidecar.causality.dev/admin-tls-secret": "own-tls"}
    injection = _inject({"admin": {"tls": ADMIN_TLS}}, annotations, admin_tls_secret="default")
    secrets = [v["secret"]["secretName"] for v in injection.pod["spec"]["volumes"] if "secret" in v]
    assert secrets == ["own-tls"]


def test_admin_tls_without_a_secret_is_not_injected_and_says_why() -> None:
    injection = _inject(
        {"admin": {"tls": ADMIN_TLS}}, {"sidecar.causality.dev/admin-tls-secret": "Bad_Name"}
    )
    assert not injection.injected
    assert injection.pod == _pod({"sidecar.causality.dev/admin-tls-secret": "Bad_Name"})
    assert "sidecar.causality.dev/admin-tls-secret" in injection.reason
    assert any("not a Secret name 'Bad_Name'" in w for w in injection.warnings)


def test_admin_tls_config_loads_with_the_mounted_files(tmp_path: Path) -> None:
    """check-config on the injected SIDECAR_CONFIG_YAML, with real files where the
    Secret would be mounted (a directory of the test's own: same layout)."""
    pki = Pki(tmp_path / "pki")
    pair = pki.server("admin", "127.0.0.1")
    tls = {
        "cert_file": str(pair.cert),
        "key_file": str(pair.key),
        "client_ca_file": str(pki.ca_file),
    }
    base_file = tmp_path / "base.yaml"
    base_file.write_text(yaml.safe_dump({"admin": {"tls": tls}}))
    base = read_base_config(str(base_file))
    settings = InjectSettings(image=IMAGE, base_config=base, admin_tls_secret="t")
    injection = inject_pod(_pod(), settings)
    effective = _check_config(tmp_path, _env(_sidecar(injection.pod)))
    assert effective["admin"]["tls"] == tls
    [mount] = [m for m in _sidecar(injection.pod)["volumeMounts"] if m["name"].endswith("tls")]
    assert mount["mountPath"] == str(pair.cert.parent)


# ----------------------------------------------- the webhook re-reads it, over real TLS


def _level(answer: dict[str, Any], pod: dict[str, Any]) -> str:
    level: str = sidecar_config(_sidecar(patched(answer, pod)))["logging"]["level"]
    return level


def test_the_webhook_picks_up_a_changed_base_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("logging: {level: info}\n")
    with start_webhook(tmp_path, Pki(tmp_path / "pki"), "--sidecar-config", str(config)) as hook:
        body = review()
        pod = body["request"]["object"]
        first = hook.admit(body)
        assert _level(first, pod) == "info"
        assert patched(first, pod) == cli_inject(pod, "--sidecar-config", str(config))
        write_atomically(config, b"logging: {level: debug}\n")
        wait_until(lambda: _level(hook.admit(body), pod) == "debug", 10, "the new base config")
        write_atomically(config, b"logging: {level: loud}\n")  # bad: the last good one stays
        # looked at on each review: the next ones still get the last good config
        wait_until(
            lambda: (
                _level(hook.admit(body), pod) == "debug"
                and 'reloads_total{result="failed"} 1.0' in _metrics(hook.health)
            ),
            10,
            "the failed reload",
        )
        assert hook.process.proc.poll() is None  # no restart
        text = _metrics(hook.health)
        assert 'sidecar_injector_config_reloads_total{result="ok"} 1.0' in text
        assert 'sidecar_injector_config_reloads_total{result="failed"} 1.0' in text
        assert re.search(r'"event": "sidecar_config_reload_failed"', hook.process.logs())


def _metrics(port: int) -> str:
    status, _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return body.decode()


def test_the_webhook_injects_admin_tls_as_the_command_does(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"admin": {"tls": ADMIN_TLS}}))
    flags = ("--sidecar-config", str(config), "--admin-tls-secret", "metrics-tls")
    with start_webhook(tmp_path, Pki(tmp_path / "pki"), *flags) as hook:
        body = review()
        pod = body["request"]["object"]
        result = patched(hook.admit(body), pod)
    assert result == cli_inject(pod, *flags)
    assert result["metadata"]["annotations"]["prometheus.io/scheme"] == "https"
