"""Configuration: design §4 as frozen dataclasses, loaded once from YAML, env and flags.

Every value is parsed and validated at load time; code downstream never sees a raw
string duration or size. Every problem is reported as one `ConfigError` whose message
names the key path (``proxy.connect_timeout: expected a duration like 2s, got 'soon'``).

Precedence: command-line flags > ``SIDECAR_*`` environment > file > defaults.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import ssl
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml

from sidecar.relabel.regex import check_re2
from sidecar.relabel.rules import ACTIONS as RELABEL_ACTIONS
from sidecar.relabel.rules import SOURCES as RELABEL_SOURCES
from sidecar.relabel.rules import is_label_name
from sidecar.tlsserver import TlsFileError, TlsFiles, load_context

__all__ = [
    "DEFAULT_LATENCY_BUCKETS_MS",
    "ENV_OVERRIDES",
    "REDACTED",
    "Address",
    "Config",
    "ConfigError",
    "format_duration",
    "layer_raw",
    "load_config",
    "parse_duration",
    "parse_size",
    "read_token_file",
    "redact_headers",
    "redact_url",
    "to_dict",
]

DEFAULT_LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
)  # fmt: skip

# Environment variable -> config key path (the design names the first three; the
# others mirror the `run` flags so a container can be configured without a file).
ENV_OVERRIDES: Mapping[str, str] = {
    "SIDECAR_UPSTREAM": "proxy.upstream",
    "SIDECAR_LOG_LEVEL": "logging.level",
    "SIDECAR_LISTEN": "proxy.listen",
    "SIDECAR_ADMIN_LISTEN": "admin.listen",
    "SIDECAR_OTLP_LISTEN": "ingest.listen",
}
CONFIG_FILE_ENV = "SIDECAR_CONFIG"
# A whole YAML config in one variable, layered over the file (below the SIDECAR_* above):
# how an injected sidecar is configured without a ConfigMap (sidecar.inject).
CONFIG_YAML_ENV = "SIDECAR_CONFIG_YAML"


class ConfigError(Exception):
    """A configuration problem; the message starts with the key path it concerns."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


# --------------------------------------------------------------------------- values

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
}  # fmt: skip


def parse_duration(value: object) -> float:
    """Parse ``250ms``, ``2s``, ``5m``, ``1h`` (or a bare 0) into seconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0.0
    match = _DURATION_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a duration like 2s, 250ms, 5m or 1h, got {value!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_positive_duration(value: object) -> float:
    """A duration that must be above zero (intervals, timeouts that cannot be "none")."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration above 0, like 2s, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds as the shortest exact duration string (inverse of parse_duration)."""
    millis = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis and millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def parse_size(value: object) -> int:
    """Parse ``512KiB``, ``20MiB``, ``5MB`` or a plain non-negative integer into bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"expected a size >= 0, got {value}")
        return value
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a size like 64KiB, 20MiB, 5MB or bytes, got {value!r}")
    size = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size != int(size):
        raise ValueError(f"size {value!r} is not a whole number of bytes")
    return int(size)


@dataclass(frozen=True, slots=True)
class Address:
    """A listen address: host (IP literal or name) and TCP port (0 = any free port)."""

    host: str
    port: int

    @classmethod
    def parse(cls, value: object) -> Address:
        """Parse ``host:port``, ``[v6]:port`` or ``:port`` (all interfaces)."""
        if not isinstance(value, str):
            raise ValueError(f"expected an address like 0.0.0.0:8000, got {value!r}")
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(f"expected an address like 0.0.0.0:8000, got {value!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            _check_ip(host, value, version=6)
        elif ":" in host:
            raise ValueError(f"an IPv6 address needs brackets, like [::1]:4318, got {value!r}")
        host = host or "0.0.0.0"
        if not _is_hostname(host):
            raise ValueError(f"{host!r} in {value!r} is neither an IP address nor a host name")
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and ``localhost``."""
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost`` (a host as a URL or `Address` holds it)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_ip(host: str, raw: str, version: int) -> None:
    try:
        if ipaddress.ip_address(host).version != version:
            raise ValueError
    except ValueError:
        raise ValueError(f"{host!r} in {raw!r} is not an IPv{version} address") from None


_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _is_hostname(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME_RE.match(host))
    return True


def parse_http_url(value: object) -> str:
    """Validate an ``http://host:port[/path]`` URL and return it without a trailing slash."""
    if not isinstance(value, str):
        raise ValueError(f"expected an http:// URL, got {value!r}")
    parts = urlsplit(value)
    shown = redact_url(value)  # an error message is an output too: no credentials in it
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// URL like http://127.0.0.1:8080, got {shown!r}")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"bad port in URL {shown!r}") from None
    return value.rstrip("/") if parts.path in ("", "/") else value


# ---------------------------------------------------------------- the dataclasses
# Each field's `metadata["parse"]` turns the YAML value into the field's type; nested
# dataclasses are recursed into. `metadata["render"]` turns it back for check-config.


def _opt(
    parse: Callable[[Any], Any],
    render: Callable[[Any], Any] | None = None,
    *,
    secret: Callable[[Any], Any] | None = None,
) -> Any:
    """Field metadata: how to parse, how to render, and (``secret``) how to redact."""
    meta: dict[str, Any] = {"parse": parse}
    if render is not None:
        meta["render"] = render
    if secret is not None:
        meta["secret"] = secret
    return meta


def _expect(kind: type | tuple[type, ...], label: str) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ValueError(f"expected {label}, got {value!r}")
        if not isinstance(value, kind):
            raise ValueError(f"expected {label}, got {value!r}")
        return value

    return parse


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected an integer >= 1, got {value!r}")
    return value


MAX_DEDUP_KEYS = 100_000_000  # ~9 GiB of key memory; the C memory's own limit is ~10x that


def _dedup_keys(value: Any) -> int:
    count = _positive_int(value)
    if count > MAX_DEDUP_KEYS:
        raise ValueError(f"expected at most {MAX_DEDUP_KEYS:,} keys (~90 bytes each), got {count}")
    return count


def _non_empty_str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}; got {value!r}")
        return str(value)

    return parse


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _str_map(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"expected a mapping of strings to strings, got {value!r}")
    return types.MappingProxyType(dict(value))


def _buckets(value: Any) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"expected a non-empty list of numbers, got {value!r}")
    bounds = tuple(float(v) for v in value)
    if any(not math.isfinite(b) or b <= 0 for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ValueError("bucket bounds must be finite, > 0 and strictly increasing")
    return bounds


def _route(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected a route template starting with '/', got {value!r}")
    return value


def _routes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of route templates, got {value!r}")
    return tuple(_route(v) for v in value)


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {value!r}")
    return value


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else parse(value)


_DURATION = _opt(parse_duration, format_duration)
_POSITIVE_DURATION = _opt(parse_positive_duration, format_duration)
_SIZE = _opt(parse_size)
_ADDRESS = _opt(Address.parse, str)
_BOOL = _opt(_expect(bool, "true or false"))
_POSITIVE = _opt(_positive_int)
_LEVELS = ("debug", "info", "warning", "error", "critical")


def _level(value: Any) -> str:
    """A log level in any case (``INFO``, ``Warning``), kept lower-case."""
    return _one_of(*_LEVELS)(value.lower() if isinstance(value, str) else value)


REDACTED = "<redacted>"


def redact_url(url: str) -> str:
    """``url`` with every place a credential can sit replaced by ``<redacted>``.

    The rule goes by where a value sits, never by what it is called: the userinfo
    (``user:password@``), every query value (the keys stay, so one can see what is set:
    ``?access_token=<redacted>``; an item without ``=`` is all value) and the fragment.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = "&".join(
        f"{key}={REDACTED}" if sep else REDACTED
        for key, sep, _ in (item.partition("=") for item in parts.query.split("&"))
    )
    return urlunsplit(
        parts._replace(
            netloc=netloc,
            query=query if parts.query else "",
            fragment=REDACTED if parts.fragment else "",
        )
    )


def _headers(value: Any) -> Mapping[str, str]:
    """Header names to values, all strings; an error never quotes a value."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of header names to values, got {value!r}")
    for name, given in value.items():
        if not isinstance(name, str) or not isinstance(given, str):
            raise ValueError(
                f"expected string header names and values; the value of {name!r} is not "
                f"a string (got {type(given).__name__}; quote it)"
            )
    return types.MappingProxyType(dict(value))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error with its place but without the lines of the file it quotes (a line
    may hold a credential)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return type(exc).__name__
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Every header value replaced (the names stay): no guessing which ones are secret."""
    return {name: REDACTED for name in headers}


def _redact_optional_url(value: str | None) -> str | None:
    return None if value is None else redact_url(value)


def read_token_file(path: str, key: str = "admin.bearer_token_file") -> bytes:
    """The token in ``path``, stripped of surrounding whitespace.

    Raises:
        ConfigError: naming ``key`` when the file cannot be read or holds only whitespace.
    """
    try:
        token = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(key, f"cannot read file {path!r}: {exc.strerror or exc}") from None
    if not token:
        raise ConfigError(key, f"file {path!r} is empty")
    return token


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """The sidecar's own resource."""

    name: str = field(default="causality-sidecar", metadata=_opt(_non_empty_str))


def _check_ca_file(path: str) -> None:
    """A readable PEM bundle of at least one CA certificate (loaded once here to check it)."""
    if not Path(path).is_file():
        raise ValueError(f"no such file: {path!r}")
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path!r} as a PEM certificate bundle: {exc}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"{path!r} is not a PEM certificate bundle (no BEGIN CERTIFICATE)")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{path!r} is not a valid PEM certificate bundle: {exc}") from None


def _server_name(value: Any) -> str:
    if not isinstance(value, str) or not _is_hostname(value):
        raise ValueError(f"expected a host name like app.internal, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class UpstreamTlsConfig:
    """TLS to an ``https://`` upstream: verified against the system CAs by default."""

    ca_file: str | None = field(default=None, metadata=_opt(_optional(_non_empty_str)))
    server_name: str | None = field(default=None, metadata=_opt(_optional(_server_name)))
    insecure_skip_verify: bool = field(default=False, metadata=_BOOL)

    def __post_init__(self) -> None:
        if self.insecure_skip_verify and self.ca_file is not None:
            raise ConfigError(
                "proxy.upstream_tls.insecure_skip_verify",
                "true disables the verification ca_file is for; set one or the other",
            )


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """The reverse proxy (design §4 `proxy.*`); durations in seconds, sizes in bytes."""

    enabled: bool = field(default=True, metadata=_BOOL)
    listen: Address = field(default=Address("0.0.0.0", 8000), metadata=_ADDRESS)
    upstream: str = field(
        default="http://127.0.0.1:8080", metadata=_opt(parse_http_url, secret=redact_url)
    )
    connect_timeout: float = field(default=2.0, metadata=_DURATION)
    response_timeout: float = field(default=60.0, metadata=_DURATION)
    idle_timeout: float = field(default=300.0, metadata=_DURATION)
    upstream_keepalive: float = field(default=3.0, metadata=_DURATION)
    max_connections: int = field(default=1000, metadata=_POSITIVE)
    max_in_flight: int = field(default=10000, metadata=_POSITIVE)
    max_request_body: int = field(default=0, metadata=_SIZE)
    max_header_bytes: int = field(default=64 * 1024, metadata=_SIZE)
    header_timeout: float = field(default=10.0, metadata=_DURATION)
    forwarded_headers: bool = field(default=True, metadata=_BOOL)
    routes: tuple[str, ...] = field(default=(), metadata=_opt(_routes, list))
    unmatched_routes: Literal["template", "raw", "other"] = field(
        default="template", metadata=_opt(_one_of("template", "raw", "other"))
    )
    max_route_labels: int = field(default=200, metadata=_POSITIVE)
    latency_buckets_ms: tuple[float, ...] = field(
        default=DEFAULT_LATENCY_BUCKETS_MS, metadata=_opt(_buckets, list)
    )
    native_histograms: bool = field(default=False, metadata=_BOOL)
    upstream_tls: UpstreamTlsConfig = field(default_factory=UpstreamTlsConfig)
    engine: Literal["lean", "aiohttp"] = field(
        default="lean", metadata=_opt(_one_of("lean", "aiohttp"))
    )

    def __post_init__(self) -> None:
        if self.upstream_tls != UpstreamTlsConfig() and urlsplit(self.upstream).scheme != "https":
            raise ConfigError(
                "proxy.upstream_tls", "is set, but proxy.upstream is http://, not https://"
            )


@dataclass(frozen=True, slots=True)
class AdminTlsConfig:
    """HTTPS on the admin listener (sidecar.tlsserver: re-read when the files change);
    with ``client_ca_file``, ``/metrics`` needs a client certificate from those CAs
    (mutual TLS; probes stay open). Off by default."""

    cert_file: str | None = field(default=None, metadata=_opt(_optional(_non_empty_str)))
    key_file: str | None = field(default=None, metadata=_opt(_optional(_non_empty_str)))
    client_ca_file: str | None = field(default=None, metadata=_opt(_optional(_non_empty_str)))

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            missing, given = (
                ("key_file", "cert_file") if self.key_file is None else ("cert_file", "key_file")
            )
            raise ConfigError(f"admin.tls.{missing}", f"is required with admin.tls.{given}")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ConfigError(
                "admin.tls.client_ca_file",
                "needs admin.tls.cert_file and key_file (mutual TLS is TLS)",
            )

    @property
    def enabled(self) -> bool:
        """The admin listener speaks HTTPS."""
        return self.cert_file is not None


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin listener: /metrics, /healthz, /readyz."""

    listen: Address = field(default=Address("0.0.0.0", 9464), metadata=_ADDRESS)
    metrics_path: str = field(default="/metrics", metadata=_opt(_path))
    bearer_token_file: str | None = field(default=None, metadata=_opt(_optional(_non_empty_str)))
    tls: AdminTlsConfig = field(default_factory=AdminTlsConfig)


def _attribute_names(value: Any) -> tuple[str, ...]:
    names = _str_list(value)
    for name in names:
        _non_empty_str(name)
    if len(set(names)) != len(names):
        raise ValueError(f"expected distinct attribute names, got {value!r}")
    return names


@dataclass(frozen=True, slots=True)
class WorkersConfig:
    """Pod-level aggregation: one series from many worker processes (sidecar.ingest.store).

    Streams that differ only in ``attributes`` (resource attributes) are one series;
    ``gauges`` says how the workers' gauges combine; a worker silent for ``idle`` is retired.
    """

    attributes: tuple[str, ...] = field(default=(), metadata=_opt(_attribute_names, list))
    gauges: Literal["sum", "max", "min", "last", "each"] = field(
        default="sum", metadata=_opt(_one_of("sum", "max", "min", "last", "each"))
    )
    idle: float = field(default=120.0, metadata=_POSITIVE_DURATION)

    @property
    def enabled(self) -> bool:
        """Workers are aggregated (some attribute tells them apart)."""
        return bool(self.attributes)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """The local OTLP/HTTP metrics receiver and its store."""

    enabled: bool = field(default=True, metadata=_BOOL)
    listen: Address = field(default=Address("127.0.0.1", 4318), metadata=_ADDRESS)
    max_body_bytes: int = field(default=20 * 2**20, metadata=_SIZE)
    series_ttl: float = field(default=300.0, metadata=_DURATION)
    max_series: int = field(default=100_000, metadata=_POSITIVE)
    max_series_per_metric: int = field(default=2000, metadata=_POSITIVE)
    promote_resource_attributes: tuple[str, ...] = field(
        default=("service.name", "service.namespace", "service.instance.id"),
        metadata=_opt(_str_list, list),
    )
    target_info: bool = field(default=True, metadata=_BOOL)
    exponential_max_buckets: int = field(default=40, metadata=_POSITIVE)
    scope_labels: bool = field(default=True, metadata=_BOOL)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    # sidecar.ingest.naming.TranslationStrategy (Prometheus's OTLP receiver's strategies)
    translation_strategy: str = field(
        default="UnderscoreEscapingWithSuffixes",
        metadata=_opt(
            _one_of(
                "UnderscoreEscapingWithSuffixes",
                "UnderscoreEscapingWithoutSuffixes",
                "NoUTF8EscapingWithSuffixes",
                "NoTranslation",
            )
        ),
    )


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """Inspection of the Causality gateway's ingest routes (design §7)."""

    enabled: bool = field(default=False, metadata=_BOOL)
    ingest_path: str = field(default="/v1/events/ingest", metadata=_opt(_path))
    batch_path: str = field(default="/v1/events/batch", metadata=_opt(_path))
    max_body_bytes: int = field(default=5 * 2**20, metadata=_SIZE)
    dedup_window: float = field(default=600.0, metadata=_DURATION)
    dedup_max_keys: int = field(default=200_000, metadata=_opt(_dedup_keys))


@dataclass(frozen=True, slots=True)
class MergeTarget:
    """One app /metrics endpoint merged into the sidecar's exposition."""

    name: str = field(default="", metadata=_opt(_non_empty_str))
    url: str = field(default="", metadata=_opt(parse_http_url, secret=redact_url))
    timeout: float = field(default=5.0, metadata=_POSITIVE_DURATION)
    labels: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), metadata=_opt(_str_map, dict)
    )


@dataclass(frozen=True, slots=True)
class MergeConfig:
    """Targets whose /metrics are merged into each scrape (design §9)."""

    targets: tuple[MergeTarget, ...] = field(default=(), metadata={"items": MergeTarget})


@dataclass(frozen=True, slots=True)
class OtlpExportConfig:
    """Push of the unified view to an OpenTelemetry collector."""

    endpoint: str | None = field(
        default=None, metadata=_opt(_optional(parse_http_url), secret=_redact_optional_url)
    )
    interval: float = field(default=30.0, metadata=_POSITIVE_DURATION)
    headers: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}),
        metadata=_opt(_headers, dict, secret=redact_headers),
    )


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """Exporters (only OTLP/HTTP for now)."""

    otlp: OtlpExportConfig = field(default_factory=OtlpExportConfig)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Log level and line format."""

    level: str = field(default="info", metadata=_opt(_level))
    format: Literal["json", "text"] = field(default="json", metadata=_opt(_one_of("json", "text")))
    access_log: bool = field(default=False, metadata=_BOOL)


@dataclass(frozen=True, slots=True)
class ShutdownConfig:
    """Graceful drain after SIGTERM (design §10)."""

    drain_delay: float = field(default=5.0, metadata=_DURATION)
    drain_timeout: float = field(default=30.0, metadata=_DURATION)


def _regex(value: Any) -> str:
    """A Prometheus (RE2) regex that Python's `re` runs alike (`sidecar.relabel.regex`)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a regex string, got {value!r}")
    check_re2(value)
    return value


def _label_name_list(value: Any) -> tuple[str, ...]:
    names = _str_list(value)
    for name in names:
        if not is_label_name(name):
            raise ValueError(f"{name!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return names


def _match_map(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of label names to regexes, got {value!r}")
    for name, pattern in value.items():
        if not isinstance(name, str) or not is_label_name(name):
            raise ValueError(f"{name!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        if not isinstance(pattern, str):
            raise ValueError(f"expected a regex string for {name}, got {pattern!r}")
    return types.MappingProxyType(dict(value))


_RELABEL_TARGET_RE = re.compile(r"(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*")


@dataclass(frozen=True, slots=True)
class RelabelRule:
    """One ``relabel:`` entry: Prometheus's ``relabel_config`` (`sidecar.relabel`)."""

    action: str = field(default="replace", metadata=_opt(_one_of(*RELABEL_ACTIONS)))
    source_labels: tuple[str, ...] = field(default=(), metadata=_opt(_label_name_list, list))
    separator: str = field(default=";", metadata=_opt(_expect(str, "a string")))
    target_label: str | None = field(default=None, metadata=_opt(_optional(_non_empty_str)))
    regex: str = field(default="(.*)", metadata=_opt(_regex))
    replacement: str = field(default="$1", metadata=_opt(_expect(str, "a string")))
    match: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), metadata=_opt(_match_map, dict)
    )
    source: str | None = field(default=None, metadata=_opt(_optional(_one_of(*RELABEL_SOURCES))))


def _check_relabel(rules: tuple[RelabelRule, ...], where: str) -> None:
    """Prometheus's per-action checks, naming the key of the entry."""
    for i, rule in enumerate(rules):
        at = f"{where}[{i}]"
        for name, pattern in rule.match.items():
            try:
                check_re2(pattern)
            except ValueError as exc:
                raise ConfigError(f"{at}.match.{name}", str(exc)) from None
        if rule.action == "replace":
            if rule.target_label is None:
                raise ConfigError(f"{at}.target_label", "is required for action replace")
            if _RELABEL_TARGET_RE.fullmatch(rule.target_label) is None:
                raise ConfigError(
                    f"{at}.target_label", f"{rule.target_label!r} is not a label name or template"
                )
        elif rule.action in ("keep", "drop"):
            if not rule.source_labels and not rule.match:
                raise ConfigError(
                    f"{at}.source_labels", f"action {rule.action} needs source_labels or match"
                )
        else:
            for key, default in (("source_labels", ()), ("target_label", None), ("separator", ";")):
                if getattr(rule, key) != default:
                    raise ConfigError(
                        f"{at}.{key}", f"is not used by action {rule.action} (it reads regex only)"
                    )
            if rule.action != "labelmap" and rule.replacement != "$1":
                raise ConfigError(f"{at}.replacement", f"is not used by action {rule.action}")
            if rule.action == "labelmap" and _RELABEL_TARGET_RE.fullmatch(rule.replacement) is None:
                raise ConfigError(
                    f"{at}.replacement", f"{rule.replacement!r} is not a label name or template"
                )
        if rule.action in ("keep", "drop") and rule.target_label is not None:
            raise ConfigError(f"{at}.target_label", f"is not used by action {rule.action}")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole effective configuration."""

    service: ServiceConfig = field(default_factory=ServiceConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    relabel: tuple[RelabelRule, ...] = field(
        default=(), metadata={"items": RelabelRule, "check": _check_relabel}
    )


# --------------------------------------------------------------------- the loader


def _nested_type(cls: type, name: str) -> type | None:
    hint = typing.get_type_hints(cls)[name]
    return hint if dataclasses.is_dataclass(hint) and isinstance(hint, type) else None


def _build(cls: type[Any], raw: Any, path: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(path, f"expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(where, f"unknown key (known keys here: {', '.join(known)})")
    values: dict[str, Any] = {}
    for name, spec in known.items():
        if name not in raw:
            continue
        where = f"{path}.{name}" if path else name
        values[name] = _build_value(cls, spec, raw[name], where)
    try:
        return cls(**values)
    except ValueError as exc:  # cross-field checks in __post_init__, if any
        raise ConfigError(path, str(exc)) from exc


def _build_value(cls: type, spec: dataclasses.Field[Any], raw: Any, where: str) -> Any:
    nested = None if "parse" in spec.metadata else _nested_type(cls, spec.name)
    if nested is not None:
        return _build(nested, {} if raw is None else raw, where)
    if "items" in spec.metadata:
        if not isinstance(raw, list):
            raise ConfigError(where, f"expected a list, got {raw!r}")
        items = tuple(_build(spec.metadata["items"], r, f"{where}[{i}]") for i, r in enumerate(raw))
        spec.metadata.get("check", _check_required)(items, where)
        return items
    try:
        return spec.metadata["parse"](raw)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


def _check_required(targets: tuple[Any, ...], where: str) -> None:
    names: set[str] = set()
    for i, target in enumerate(targets):
        for key in ("name", "url"):
            if not getattr(target, key):
                raise ConfigError(f"{where}[{i}].{key}", "is required")
        if target.name in names:
            raise ConfigError(f"{where}[{i}].name", f"duplicate target name {target.name!r}")
        names.add(target.name)


def _set_path(raw: dict[str, Any], key_path: str, value: Any) -> None:
    node = raw
    *parents, leaf = key_path.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            return  # the file's own error is reported by _build
        node = child
    node[leaf] = value


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and YAML-parse a config file; an empty file is an empty mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read config file {str(path)!r}: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = yaml_problem(exc)
        raise ConfigError("", f"config file {str(path)!r} is not valid YAML: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("", f"config file {str(path)!r} must hold a mapping at the top level")
    return raw


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    origins: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective config: defaults < file < ``SIDECAR_CONFIG_YAML`` < the other
    ``SIDECAR_*`` variables < flag overrides (mappings merge key by key, lists are replaced).

    An error in a value that came from the environment or a flag says so:
    ``proxy.upstream (from SIDECAR_UPSTREAM): expected an http:// URL ...``.

    Args:
        path: the YAML file; when None, ``SIDECAR_CONFIG`` from ``env`` names it, if set.
        env: the environment to read (``os.environ`` when None).
        overrides: key path -> raw value, from command-line flags.
        origins: key path -> where its override came from (``--upstream``), for errors.

    Raises:
        ConfigError: naming the key path of the first problem found.
    """
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_FILE_ENV) or None
    raw = read_config_file(path) if path else {}
    came_from: dict[str, str] = {}
    if env.get(CONFIG_YAML_ENV):
        inline = _read_inline_config(env[CONFIG_YAML_ENV])
        raw = layer_raw(raw, inline)
        came_from.update(dict.fromkeys(_leaf_paths(inline, ""), CONFIG_YAML_ENV))
    for var, key_path in ENV_OVERRIDES.items():
        if env.get(var):
            _set_path(raw, key_path, env[var])
            came_from[key_path] = var
    for key_path, value in (overrides or {}).items():
        if value is not None:
            _set_path(raw, key_path, value)
            came_from[key_path] = (origins or {}).get(key_path, "the command line")
    try:
        config: Config = _build(Config, raw, "")
        check_files(config)
    except ConfigError as exc:
        origin = came_from.get(exc.key) or came_from.get(re.sub(r"\[\d+\].*$", "", exc.key))
        if origin is None:
            raise
        raise ConfigError(f"{exc.key} (from {origin})", exc.problem) from None
    return config


def _read_inline_config(text: str) -> dict[str, Any]:
    """The YAML config held in ``SIDECAR_CONFIG_YAML`` (how an injected sidecar is configured)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{CONFIG_YAML_ENV} is not valid YAML: {yaml_problem(exc)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("", f"{CONFIG_YAML_ENV} must hold a mapping at the top level")
    return raw


def layer_raw(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base`` (raw config mappings): mappings merged key by key, anything
    else (lists too) replaced."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = layer_raw(below, value)
        else:
            out[key] = value
    return out


def _leaf_paths(raw: Mapping[str, Any], prefix: str) -> Iterator[str]:
    """Every key path of a raw config mapping that holds a value (not a mapping)."""
    for key, value in raw.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            yield from _leaf_paths(value, path)
        else:
            yield path


def check_files(config: Config) -> None:
    """The files the config names can be used on this machine (`load_config` checks them;
    `config_from_dict` does not, as it validates a config meant for another machine).

    Raises:
        ConfigError: ``admin.bearer_token_file: cannot read file ...`` or ``... is empty``.
    """
    if config.admin.bearer_token_file:
        read_token_file(config.admin.bearer_token_file)
    if config.proxy.upstream_tls.ca_file is not None:
        try:
            _check_ca_file(config.proxy.upstream_tls.ca_file)
        except ValueError as exc:
            raise ConfigError("proxy.upstream_tls.ca_file", str(exc)) from None
    tls = config.admin.tls
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            load_context(TlsFiles(tls.cert_file, tls.key_file, tls.client_ca_file))
        except TlsFileError as exc:
            raise ConfigError(f"admin.tls.{exc.field}", exc.problem) from None


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Validate an already-parsed mapping (e.g. a rendered Helm values tree)."""
    config: Config = _build(Config, dict(raw), "")
    return config


def to_dict(obj: Any, *, redact: bool = True) -> dict[str, Any]:
    """The config as plain YAML-able data; with ``redact=False`` `load_config` reads it
    back to an equal object.

    Redaction (the default: every output of the config goes through here) replaces the
    values at the places a credential can sit: every header value, and in every URL the
    userinfo, the query values and the fragment (`redact_url`, `redact_headers`). A
    string anywhere else that holds ``://`` is treated as a URL too.
    """
    out: dict[str, Any] = {}
    for spec in dataclasses.fields(obj):
        value = getattr(obj, spec.name)
        if dataclasses.is_dataclass(value) and "parse" not in spec.metadata:
            out[spec.name] = to_dict(value, redact=redact)
        elif "items" in spec.metadata:
            out[spec.name] = [to_dict(item, redact=redact) for item in value]
        elif redact and "secret" in spec.metadata:
            out[spec.name] = spec.metadata["secret"](value)
        elif "render" in spec.metadata and value is not None:
            out[spec.name] = spec.metadata["render"](value)
        elif redact and isinstance(value, str) and "://" in value:
            out[spec.name] = redact_url(value)
        else:
            out[spec.name] = value
    return out


def dump_yaml(config: Config, *, redact: bool = True) -> str:
    """The effective config as YAML (what `check-config` prints), redacted unless asked."""
    return yaml.safe_dump(to_dict(config, redact=redact), sort_keys=False)
