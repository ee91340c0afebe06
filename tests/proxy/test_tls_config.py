"""``proxy.upstream_tls``: every bad value is a ConfigError naming its key (exit 2)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar.config import ConfigError, UpstreamTlsConfig, config_from_dict, load_config
from tests.support.tls_upstream import make_certificates

NOT_PEM = "just some text\n"
BROKEN_PEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
HTTPS = "upstream: 'https://127.0.0.1:8443'"

# (id, proxy section, the error's pattern); {dir} is the test's directory
BAD_TLS_CONFIGS: list[tuple[str, str, str]] = [
    ("ca-missing", HTTPS + ", upstream_tls: {ca_file: '{dir}/nope.pem'}", r"^proxy\.upstream_tls\.ca_file: no such file"),
    ("ca-not-pem", HTTPS + ", upstream_tls: {ca_file: '{dir}/text.pem'}", r"^proxy\.upstream_tls\.ca_file: .* is not a PEM certificate bundle"),
    ("ca-broken-pem", HTTPS + ", upstream_tls: {ca_file: '{dir}/broken.pem'}", r"^proxy\.upstream_tls\.ca_file: .* is not a valid PEM certificate bundle"),
    ("ca-binary", HTTPS + ", upstream_tls: {ca_file: '{dir}/binary.der'}", r"^proxy\.upstream_tls\.ca_file: cannot read"),
    ("ca-directory", HTTPS + ", upstream_tls: {ca_file: '{dir}'}", r"^proxy\.upstream_tls\.ca_file: no such file"),
    ("ca-empty-string", HTTPS + ", upstream_tls: {ca_file: ''}", r"^proxy\.upstream_tls\.ca_file: expected a non-empty string"),
    ("server-name-bad", HTTPS + ", upstream_tls: {server_name: 'not a host'}", r"^proxy\.upstream_tls\.server_name: expected a host name"),
    ("server-name-number", HTTPS + ", upstream_tls: {server_name: 42}", r"^proxy\.upstream_tls\.server_name: expected a host name"),
    ("skip-not-bool", HTTPS + ", upstream_tls: {insecure_skip_verify: 'yes please'}", r"^proxy\.upstream_tls\.insecure_skip_verify: expected true or false"),
    ("skip-and-ca", HTTPS + ", upstream_tls: {insecure_skip_verify: true, ca_file: '{dir}/ca.pem'}", r"^proxy\.upstream_tls\.insecure_skip_verify: true disables"),
    ("unknown-key", HTTPS + ", upstream_tls: {verify: false}", r"^proxy\.upstream_tls\.verify: unknown key"),
    ("not-a-mapping", HTTPS + ", upstream_tls: [1]", r"^proxy\.upstream_tls: expected a mapping"),
    ("http-upstream", "upstream: 'http://127.0.0.1:8080', upstream_tls: {server_name: app.internal}", r"^proxy\.upstream_tls: is set, but proxy\.upstream is http://"),
    ("default-upstream", "upstream_tls: {insecure_skip_verify: true}", r"^proxy\.upstream_tls: is set"),
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a real CA bundle and files that are not one."""
    directory = tmp_path_factory.mktemp("tls-config")
    make_certificates(directory)
    (directory / "text.pem").write_text(NOT_PEM)
    (directory / "broken.pem").write_text(BROKEN_PEM)
    (directory / "binary.der").write_bytes(b"\x30\x82\x01\xff" + bytes(range(256)))
    return directory


def _write(directory: Path, proxy: str) -> Path:
    path = directory / f"config-{abs(hash(proxy))}.yaml"
    path.write_text("proxy: {" + proxy.replace("{dir}", str(directory)) + "}\n")
    return path


@pytest.mark.parametrize(
    ("proxy", "message"), [c[1:] for c in BAD_TLS_CONFIGS], ids=[c[0] for c in BAD_TLS_CONFIGS]
)
def test_bad_upstream_tls_names_the_key(files: Path, proxy: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(files, proxy), env={})
    assert re.search(message, str(info.value)), str(info.value)


def test_good_upstream_tls_loads_and_round_trips(files: Path) -> None:
    proxy = HTTPS + ", upstream_tls: {ca_file: '{dir}/ca.pem', server_name: app.internal}"
    config = load_config(_write(files, proxy), env={})
    assert config.proxy.upstream_tls == UpstreamTlsConfig(
        ca_file=str(files / "ca.pem"), server_name="app.internal"
    )
    assert load_config(_write(files, HTTPS), env={}).proxy.upstream_tls == UpstreamTlsConfig()


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "key"),
    [("ca-not-pem", "proxy.upstream_tls.ca_file"), ("http-upstream", "proxy.upstream_tls")],
)
def test_check_config_exits_2_naming_the_key(files: Path, case: str, key: str) -> None:
    proxy = next(c[1] for c in BAD_TLS_CONFIGS if c[0] == case)
    done = _check_config(_write(files, proxy))
    assert done.returncode == 2, done.stderr
    assert f"config error: {key}:" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_prints_upstream_tls(files: Path) -> None:
    proxy = HTTPS + ", upstream_tls: {ca_file: '{dir}/ca.pem', server_name: app.internal}"
    done = _check_config(_write(files, proxy))
    assert done.returncode == 0, done.stderr
    printed = yaml.safe_load(done.stdout)["proxy"]["upstream_tls"]
    assert printed == {
        "ca_file": str(files / "ca.pem"),
        "server_name": "app.internal",
        "insecure_skip_verify": False,
    }


def test_ca_file_is_checked_where_the_config_is_loaded_only() -> None:
    """`config_from_dict` validates a config meant for another machine (a chart's
    rendered values): the file is looked at by `load_config` and `run`, not there."""
    raw = {"proxy": {"upstream": "https://app:8443", "upstream_tls": {"ca_file": "/nope.pem"}}}
    assert config_from_dict(raw).proxy.upstream_tls.ca_file == "/nope.pem"
    with pytest.raises(ConfigError, match=r"^proxy\.upstream_tls: is set"):
        config_from_dict({"proxy": {"upstream_tls": {"ca_file": "/nope.pem"}}})
