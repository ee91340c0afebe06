"""``SIDECAR_CONFIG_YAML``: a whole config in one variable (how an injected sidecar is
configured), layered over the file and under the other ``SIDECAR_*`` variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar.config import Address, ConfigError, load_config


def _file(tmp_path: Path, raw: dict[str, object]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_variable_alone_is_the_config() -> None:
    inline = "proxy:\n  listen: 0.0.0.0:8001\n  routes: ['/users/{id}']\nevents:\n  enabled: true\n"
    config = load_config(None, env={"SIDECAR_CONFIG_YAML": inline})
    assert config.proxy.listen == Address("0.0.0.0", 8001)
    assert config.proxy.routes == ("/users/{id}",)
    assert config.events.enabled is True


def test_layered_over_the_file_key_by_key_lists_replaced(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        {
            "proxy": {"routes": ["/a"], "connect_timeout": "1s"},
            "logging": {"level": "debug"},
            "merge": {"targets": [{"name": "x", "url": "http://127.0.0.1:1/metrics"}]},
        },
    )
    inline = yaml.safe_dump(
        {
            "proxy": {"listen": "0.0.0.0:8001", "routes": ["/b"]},
            "merge": {"targets": [{"name": "app", "url": "http://127.0.0.1:2/metrics"}]},
        }
    )
    config = load_config(path, env={"SIDECAR_CONFIG_YAML": inline})
    assert config.proxy.connect_timeout == 1.0  # the file's, kept
    assert config.logging.level == "debug"
    assert config.proxy.listen == Address("0.0.0.0", 8001)  # the variable's
    assert config.proxy.routes == ("/b",)  # a list is replaced, not appended to
    assert [t.name for t in config.merge.targets] == ["app"]


def test_the_other_variables_win_over_it() -> None:
    env = {
        "SIDECAR_CONFIG_YAML": "proxy: {upstream: 'http://127.0.0.1:1'}",
        "SIDECAR_UPSTREAM": "http://127.0.0.1:2",
    }
    assert load_config(None, env=env).proxy.upstream == "http://127.0.0.1:2"


@pytest.mark.parametrize(
    ("inline", "message"),
    [
        ("proxy: [", "SIDECAR_CONFIG_YAML is not valid YAML"),
        ("- a list", "SIDECAR_CONFIG_YAML must hold a mapping"),
        ("proxy: {listen: nowhere}", "proxy.listen (from SIDECAR_CONFIG_YAML): "),
        ("proxy: {routes: [nope]}", "proxy.routes (from SIDECAR_CONFIG_YAML): "),
        (
            "merge: {targets: [{name: a, url: 'ftp://x'}]}",
            "merge.targets[0].url (from SIDECAR_CONFIG_YAML): ",
        ),
        ("proxy: {nope: 1}", "proxy.nope (from SIDECAR_CONFIG_YAML): unknown key"),
    ],
)
def test_errors_say_the_value_came_from_the_variable(inline: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"SIDECAR_CONFIG_YAML": inline})
    assert str(caught.value).startswith(message) or message in str(caught.value), caught.value


def test_a_file_error_is_not_blamed_on_the_variable(tmp_path: Path) -> None:
    path = _file(tmp_path, {"proxy": {"connect_timeout": "soon"}})
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"SIDECAR_CONFIG_YAML": "proxy: {listen: '0.0.0.0:8001'}"})
    assert str(caught.value).startswith("proxy.connect_timeout: ")


def test_check_config_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "SIDECAR_CONFIG_YAML": "admin: {listen: 'x'}"}
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", os.devnull],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "admin.listen (from SIDECAR_CONFIG_YAML)" in done.stderr
