"""Configuration: one table test per rule, defaults equal the documented key table, precedence."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import (
    DEFAULT_LATENCY_BUCKETS_MS,
    Address,
    Config,
    ConfigError,
    config_from_dict,
    dump_yaml,
    format_duration,
    load_config,
    parse_duration,
    parse_size,
    redact_headers,
    redact_url,
    to_dict,
)

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"  # every key


# ----------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), (0, 0.0)],
    ids=["ms", "s", "m", "h", "fraction", "bare-zero"],
)
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "5", 5, "2 weeks", "-1s", "1d", True, None, ""], ids=str)
def test_bad_durations_are_rejected(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like 2s"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.25, 2.0, 60.0, 300.0, 3600.0, 0.001, 90.0])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [("512KiB", 524288), ("20MiB", 20971520), ("5MB", 5_000_000), (4096, 4096), ("1GiB", 2**30),
     ("100", 100), ("64KB", 64000), ("0", 0)],
    ids=["KiB", "MiB", "MB", "int", "GiB", "digits", "KB", "zero"],
)  # fmt: skip
def test_sizes_parse(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["big", "5 TB", -1, "1.5B", True, "MiB"], ids=str)
def test_bad_sizes_are_rejected(text: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "address"),
    [("0.0.0.0:8000", Address("0.0.0.0", 8000)), ("[::1]:4318", Address("::1", 4318)),
     (":9464", Address("0.0.0.0", 9464)), ("localhost:0", Address("localhost", 0)),
     ("app.default.svc:80", Address("app.default.svc", 80))],
    ids=["v4", "v6", "any", "name-port0", "dns"],
)  # fmt: skip
def test_addresses_parse(text: str, address: Address) -> None:
    assert Address.parse(text) == address
    assert Address.parse(str(address)) == address


@pytest.mark.parametrize(
    "text",
    ["8000", "host:port", "1.2.3.4:70000", "::1:4318", "[1.2.3.4]:80", "bad_host:80", 80],
    ids=str,
)
def test_bad_addresses_are_rejected(text: object) -> None:
    with pytest.raises(ValueError, match=r"address|IPv6|host name"):
        Address.parse(text)


# ------------------------------------------------------------- one fixture a rule

BAD_CONFIGS: list[tuple[str, str, str]] = [
    ("unknown-top-key", "prxy: {}", r"^prxy: unknown key"),
    ("unknown-nested-key", "proxy: {listen_port: 1}", r"^proxy\.listen_port: unknown key"),
    ("section-not-mapping", "proxy: [1, 2]", r"^proxy: expected a mapping"),
    ("bad-duration", "proxy: {connect_timeout: soon}", r"^proxy\.connect_timeout: expected a duration like 2s.*'soon'"),
    ("bad-size", "ingest: {max_body_bytes: lots}", r"^ingest\.max_body_bytes: expected a size"),
    ("bad-address", "admin: {listen: nowhere}", r"^admin\.listen: expected an address"),
    ("bad-url", "proxy: {upstream: 'ftp://x'}", r"^proxy\.upstream: expected an http:// URL"),
    ("bad-bool", "proxy: {enabled: 'yes please'}", r"^proxy\.enabled: expected true or false"),
    ("bool-for-int", "proxy: {max_in_flight: true}", r"^proxy\.max_in_flight: expected an integer >= 1"),
    ("zero-int", "ingest: {max_series: 0}", r"^ingest\.max_series: expected an integer >= 1"),
    ("dedup-keys-too-many", "events: {dedup_max_keys: 2000000000}", r"^events\.dedup_max_keys: expected at most 100,000,000 keys"),
    ("dedup-keys-zero", "events: {dedup_max_keys: 0}", r"^events\.dedup_max_keys: expected an integer >= 1"),
    ("bad-choice", "proxy: {unmatched_routes: drop}", r"^proxy\.unmatched_routes: expected one of template, raw, other"),
    ("bad-engine", "proxy: {engine: fast}", r"^proxy\.engine: expected one of lean, aiohttp"),
    ("bad-level", "logging: {level: loud}", r"^logging\.level: expected one of"),
    ("bad-route", "proxy: {routes: [users]}", r"^proxy\.routes: expected a route template"),
    ("bad-buckets", "proxy: {latency_buckets_ms: [5, 1]}", r"^proxy\.latency_buckets_ms: bucket bounds"),
    ("bad-list", "ingest: {promote_resource_attributes: service.name}", r"^ingest\.promote_resource_attributes: expected a list"),
    ("bad-headers", "export: {otlp: {headers: {x: 1}}}", r"^export\.otlp\.headers: expected string header names and values"),
    ("target-no-url", "merge: {targets: [{name: app}]}", r"^merge\.targets\[0\]\.url: is required"),
    ("target-dup", "merge: {targets: [{name: a, url: 'http://x:1'}, {name: a, url: 'http://y:1'}]}", r"^merge\.targets\[1\]\.name: duplicate"),
    ("target-unknown", "merge: {targets: [{name: a, url: 'http://x:1', tls: true}]}", r"^merge\.targets\[0\]\.tls: unknown key"),
    ("metrics-path", "admin: {metrics_path: metrics}", r"^admin\.metrics_path: expected a path"),
    ("zero-interval", "export: {otlp: {interval: 0}}", r"^export\.otlp\.interval: expected a duration above 0"),
    ("zero-timeout", "merge: {targets: [{name: a, url: 'http://x:1', timeout: 0ms}]}", r"^merge\.targets\[0\]\.timeout: expected a duration above 0"),
    ("not-a-mapping", "- just\n- a list\n", r"must hold a mapping at the top level"),
    ("invalid-yaml", "proxy: {listen: [", r"is not valid YAML"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert re.search(message, str(info.value)), str(info.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml", env={})


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path, env={}) == Config()


# ------------------------------- defaults = the key table of docs/configuration.md

TABLE_SPECIAL = {
    "none": None,
    "`[]`": [],
    "`{}`": {},
    "0.5 … 60000": list(DEFAULT_LATENCY_BUCKETS_MS),
}


def _documented_defaults() -> dict[str, Any]:
    """key path -> default, read from the configuration reference's table of every key."""
    section = REFERENCE.read_text().split("\n## Every key\n")[1].split("\n## ")[0]
    out: dict[str, Any] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([a-z_.]+)`", cells[0])
        defaults = [TABLE_SPECIAL.get(cells[1], cells[1])]
        if len(keys) == 2 and " / " in cells[1]:
            defaults = cells[1].split(" / ")
        for key, default in zip(keys, defaults * len(keys), strict=False):
            out[key] = default.strip("`") if isinstance(default, str) else default
    return out


def _config_keys(obj: Any, prefix: str = "") -> list[str]:
    """Every leaf key path of the config (lists and mappings are leaves)."""
    keys: list[str] = []
    for name, value in to_dict(obj, redact=False).items():
        child = getattr(obj, name)
        if isinstance(value, dict) and dataclasses.is_dataclass(child):
            keys += _config_keys(child, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _normalise(key: str, value: Any) -> Any:
    if isinstance(value, str) and value.startswith("["):
        return [v.strip() for v in value.strip("[]").split(",")]
    if isinstance(value, str) and re.fullmatch(r"\d+(ms|s|m|h)", value):
        return parse_duration(value)
    if isinstance(value, str) and re.fullmatch(r"\d+(KiB|MiB)", value):
        return parse_size(value)
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def _effective(key: str) -> Any:
    node: Any = to_dict(Config(), redact=False)
    for part in key.split("."):
        node = node[part]
    return _normalise(key, node)


def test_every_key_is_documented() -> None:
    """The reference's table lists exactly the keys the config has (one source, both ways)."""
    assert sorted(_documented_defaults()) == sorted(_config_keys(Config()))


@pytest.mark.parametrize("key", sorted(_documented_defaults()))
def test_default_equals_the_documented_one(key: str) -> None:
    expected = _normalise(key, _documented_defaults()[key])
    assert _effective(key) == expected


# ----------------------------------------------------------------- precedence


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        textwrap.dedent("""
        proxy: {upstream: 'http://file:1', listen: '127.0.0.1:1001'}
        logging: {level: error}
        admin: {listen: '127.0.0.1:1002'}
        """)
    )
    env = {"SIDECAR_UPSTREAM": "http://env:2", "SIDECAR_LOG_LEVEL": "warning"}
    flags = {"proxy.upstream": "http://flag:3"}
    config = load_config(path, env=env, overrides=flags)
    assert config.proxy.upstream == "http://flag:3"  # flag beats env and file
    assert config.logging.level == "warning"  # env beats file
    assert config.proxy.listen == Address("127.0.0.1", 1001)  # file beats default
    assert config.admin.listen == Address("127.0.0.1", 1002)
    assert config.ingest.listen == Address("127.0.0.1", 4318)  # default


def test_sidecar_config_env_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("service: {name: from-env-file}")
    assert load_config(env={"SIDECAR_CONFIG": str(path)}).service.name == "from-env-file"


def test_bad_env_value_names_the_key_and_the_variable() -> None:
    with pytest.raises(
        ConfigError, match=r"^proxy\.upstream \(from SIDECAR_UPSTREAM\): expected an http:// URL"
    ):
        load_config(env={"SIDECAR_UPSTREAM": "nonsense"})


@pytest.mark.parametrize(
    ("origins", "expected"),
    [({"proxy.listen": "--listen"}, r"^proxy\.listen \(from --listen\): "),
     ({}, r"^proxy\.listen \(from the command line\): ")],
    ids=["named", "unnamed"],
)  # fmt: skip
def test_bad_override_names_its_flag(origins: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(env={}, overrides={"proxy.listen": "nowhere"}, origins=origins)


def test_check_config_output_reloads_to_the_same_config(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        textwrap.dedent("""
        proxy: {routes: ['/users/{id}'], connect_timeout: 250ms, max_header_bytes: 32KiB}
        merge: {targets: [{name: app, url: 'http://127.0.0.1:8080/metrics', labels: {source: app}}]}
        export: {otlp: {endpoint: 'http://collector:4318', headers: {x-tenant: a}}}
        """)
    )
    config = load_config(path, env={})
    again = tmp_path / "again.yaml"
    again.write_text(dump_yaml(config, redact=False))
    assert load_config(again, env={}) == config
    assert yaml.safe_load(dump_yaml(config))["proxy"]["connect_timeout"] == "250ms"


def test_redacted_dump_hides_every_header_value() -> None:
    """Every header value goes, whatever its name: x-honeycomb-team is as secret as any."""
    text = (
        "export: {otlp: {endpoint: 'http://c:4318', "
        "headers: {Authorization: Bearer s3cret, x-honeycomb-team: hc-0ff1ce, x-tenant: a}}}"
    )
    config = config_from_dict(yaml.safe_load(text))
    dumped = yaml.safe_load(dump_yaml(config))
    assert dumped["export"]["otlp"]["headers"] == {
        "Authorization": "<redacted>",
        "x-honeycomb-team": "<redacted>",
        "x-tenant": "<redacted>",
    }
    assert dumped == to_dict(config)  # one rule for YAML and for data
    assert "hc-0ff1ce" in dump_yaml(config, redact=False)  # only when asked


def test_redacted_dump_covers_every_url() -> None:
    text = """
        proxy: {upstream: 'http://app:pa55w0rd@127.0.0.1:8080/?access_token=up-tok'}
        merge: {targets: [{name: a, url: 'http://m:merge-pw@127.0.0.1:9/metrics?key=mk-1'}]}
        export: {otlp: {endpoint: 'https://u:ex-pw@collector:4318/v1/metrics?api_key=ek-2'}}
    """
    dumped = yaml.safe_load(dump_yaml(config_from_dict(yaml.safe_load(text))))
    assert (
        dumped["proxy"]["upstream"] == "http://<redacted>@127.0.0.1:8080/?access_token=<redacted>"
    )
    assert dumped["merge"]["targets"][0]["url"] == (
        "http://<redacted>@127.0.0.1:9/metrics?key=<redacted>"
    )
    assert dumped["export"]["otlp"]["endpoint"] == (
        "https://<redacted>@collector:4318/v1/metrics?api_key=<redacted>"
    )


def test_unset_secret_fields_stay_unset() -> None:
    dumped = to_dict(Config())
    assert dumped["export"]["otlp"] == {"endpoint": None, "interval": "30s", "headers": {}}
    assert dumped == to_dict(Config(), redact=False)  # the defaults hold no secret


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://user:pw@collector:4318/v1/metrics", "http://<redacted>@collector:4318/v1/metrics"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/metrics", "http://127.0.0.1:8080/metrics"),
        ("https://t@h/x", "https://<redacted>@h/x"),
        ("http://h/x?access_token=abc", "http://h/x?access_token=<redacted>"),
        ("http://h/?a=1&b=&c=x%3Dy", "http://h/?a=<redacted>&b=<redacted>&c=<redacted>"),
        ("http://h/?s3cr3t", "http://h/?<redacted>"),
        ("http://h/?a=1&s3cr3t", "http://h/?a=<redacted>&<redacted>"),
        ("http://h/p#tok", "http://h/p#<redacted>"),
        ("http://u:p@w@h:1/?k=v=w", "http://<redacted>@h:1/?k=<redacted>"),
        ("http://[::1]:4318/v1/metrics?t=1", "http://[::1]:4318/v1/metrics?t=<redacted>"),
    ],
    ids=[
        "user-password", "none", "path", "user-only", "query-token", "every-query-value",
        "bare-query-item", "mixed-items", "fragment", "at-in-password", "ipv6",
    ],
)  # fmt: skip
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, {}),
        ({"Authorization": "Bearer x"}, {"Authorization": "<redacted>"}),
        ({"x-honeycomb-team": "k", "x-tenant": "a"}, {"x-honeycomb-team": "<redacted>", "x-tenant": "<redacted>"}),
    ],
    ids=["none", "authorization", "any-name"],
)  # fmt: skip
def test_redact_headers(headers: dict[str, str], expected: dict[str, str]) -> None:
    assert redact_headers(headers) == expected


@pytest.mark.parametrize(
    ("text", "message", "secret"),
    [("export: {otlp: {endpoint: 'htp://u:pw-1a@c:4318/?k=tok-2b'}}",
      "export.otlp.endpoint: expected an http:// URL like http://127.0.0.1:8080, "
      "got 'htp://<redacted>@c:4318/?k=<redacted>'", ("pw-1a", "tok-2b")),
     ("proxy: {upstream: 'http://u:pw-3c@h:99999/?t=tok-4d'}",
      "proxy.upstream: bad port in URL 'http://<redacted>@h:99999/?t=<redacted>'",
      ("pw-3c", "tok-4d")),
     ("export: {otlp: {headers: {x-honeycomb-team: 123456789}}}",
      "export.otlp.headers: expected string header names and values; the value of "
      "'x-honeycomb-team' is not a string (got int; quote it)", ("123456789",)),
     ("export:\n  otlp:\n    headers:\n      a: b\n     x-team: hc-5e6f\n",
      "is not valid YAML: expected <block end>, but found '<block mapping start>' "
      "(line 5, column 6)", ("hc-5e6f",))],
    ids=["bad-scheme", "bad-port", "header-not-a-string", "yaml-syntax"],
)  # fmt: skip
def test_config_errors_quote_no_secret(
    tmp_path: Path, text: str, message: str, secret: tuple[str, ...]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert message in str(caught.value)
    assert [s for s in secret if s in str(caught.value)] == []
