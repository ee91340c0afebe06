"""The injector's base sidecar config (``--sidecar-config FILE``, docs/injection.md).

A sidecar config file that every injected pod gets, under what the pod itself decides:
`layer_config` puts the per-pod part (listeners, upstream, routes and events from the
annotations, the app's merge target) over it, and the result is the pod's
``SIDECAR_CONFIG_YAML``. `read_base_config` validates it once at start (a bad key is a
ConfigError naming it: exit 2); `BaseConfigFile` re-reads it when the file changes (a
ConfigMap volume update swaps a ``..data`` symlink), keeping the previous config when the
new one is bad, as `sidecar.tlsserver` does for certificates.

``admin.tls`` in the base config makes every injected sidecar serve its admin port over
HTTPS: the injection mounts a Secret at the directory of ``admin.tls.cert_file``, so the
three files must share that one directory (`admin_tls_dir`).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sidecar.config import ConfigError, config_from_dict, layer_raw, read_config_file
from sidecar.inject.settings import CONFIG_MOUNT_DIR
from sidecar.tlsserver import file_identity

__all__ = [
    "APP_MERGE_TARGET",
    "BaseConfigFile",
    "admin_tls_dir",
    "layer_config",
    "read_base_config",
]

log = logging.getLogger(__name__)

APP_MERGE_TARGET = "app"
FLAG = "--sidecar-config"
# What an injection always sets: the base config is validated under it, so a key that
# only fails beside the injected ones (proxy.upstream_tls with an http:// upstream) fails
# at start, not in a pod.
_SAMPLE_POD_PART: Mapping[str, Any] = MappingProxyType(
    {
        "proxy": {"listen": "0.0.0.0:8000", "upstream": "http://127.0.0.1:8080"},
        "admin": {"listen": "0.0.0.0:9464"},
        "ingest": {"listen": "127.0.0.1:4318"},
    }
)
_TLS_FILES = ("cert_file", "key_file", "client_ca_file")
# Directories an injected sidecar already mounts something at.
_TAKEN_DIRS = frozenset({"/", "/tmp", CONFIG_MOUNT_DIR})  # noqa: S108 (a path in the pod)


def layer_config(base: Mapping[str, Any], pod: Mapping[str, Any]) -> dict[str, Any]:
    """``pod`` over ``base``: mappings merged key by key, anything else replaced, except
    ``merge.targets``: the pod's targets are added to the base's (a base target of the
    same name is replaced), so a pod's own metrics never drop the platform's targets."""
    out = layer_raw(base, pod)
    base_targets = _targets(base)
    pod_targets = _targets(pod)
    if base_targets and pod_targets:
        names = {t.get("name") for t in pod_targets}
        kept = [t for t in base_targets if t.get("name") not in names]
        out["merge"]["targets"] = [*kept, *pod_targets]
    return out


def _targets(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    merge = config.get("merge")
    targets = merge.get("targets") if isinstance(merge, Mapping) else None
    return [t for t in targets if isinstance(t, Mapping)] if isinstance(targets, list) else []


def admin_tls_dir(base: Mapping[str, Any]) -> str | None:
    """The directory the certificate Secret is mounted at, when ``admin.tls`` is on."""
    admin = base.get("admin")
    tls = admin.get("tls") if isinstance(admin, Mapping) else None
    cert = tls.get("cert_file") if isinstance(tls, Mapping) else None
    return posixpath.dirname(posixpath.normpath(cert)) if isinstance(cert, str) else None


def _check_admin_tls(base: Mapping[str, Any]) -> None:
    directory = admin_tls_dir(base)
    if directory is None:
        return
    tls = base["admin"]["tls"]
    if not posixpath.isabs(tls["cert_file"]):
        raise ConfigError("admin.tls.cert_file", "must be an absolute path in the pod")
    if directory in _TAKEN_DIRS:
        raise ConfigError(
            "admin.tls.cert_file",
            f"is in {directory}, where the injected sidecar mounts something else: "
            "choose a directory of its own, e.g. /etc/causality-sidecar-tls/tls.crt",
        )
    for name in _TLS_FILES[1:]:
        path = tls.get(name)
        if path is not None and posixpath.dirname(posixpath.normpath(path)) != directory:
            raise ConfigError(
                f"admin.tls.{name}",
                f"must be in the directory of admin.tls.cert_file ({directory}): the "
                "injection mounts one Secret there",
            )


def read_base_config(path: str) -> dict[str, Any]:
    """The base config in ``path``, validated as an injected sidecar will load it.

    Raises:
        ConfigError: naming the key path of the first problem (and the file).
    """
    try:
        raw = read_config_file(path)
        config_from_dict(layer_raw(raw, _SAMPLE_POD_PART))
        _check_admin_tls(raw)
    except ConfigError as exc:
        where = f"{FLAG} {path}"
        key = f"{exc.key} (in {where})" if exc.key else where
        raise ConfigError(key, exc.problem) from None
    return raw


class BaseConfigFile:
    """The base config, re-read when its file changes (one ``stat`` per `current` call).

    A changed file that does not validate keeps the previous config, logs one warning and
    is retried on the next change. ``reloads`` and ``reload_failures`` count for metrics.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen = file_identity(path)
        self._config: Mapping[str, Any] = read_base_config(path)  # ConfigError: exit 2
        self.reloads = 0
        self.reload_failures = 0

    def current(self) -> Mapping[str, Any]:
        """The newest valid base config."""
        seen = file_identity(self.path)
        if seen != self._seen:
            self._seen = seen
            try:
                self._config = read_base_config(self.path)
            except ConfigError as exc:
                self.reload_failures += 1
                log.warning(
                    "sidecar config changed but is not valid, still injecting the previous one: %s",
                    exc,
                    extra={"event": "sidecar_config_reload_failed"},
                )
            else:
                self.reloads += 1
                log.info(
                    "sidecar config reloaded from %s",
                    self.path,
                    extra={"event": "sidecar_config_reloaded"},
                )
        return self._config
