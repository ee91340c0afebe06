"""What the injector is told: the sidecar image, ports and modes, and the pod annotations
and namespace label that select and tune injection (docs/injection.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sidecar.config import CONFIG_YAML_ENV

__all__ = [
    "ADMIN_TLS_SECRET_ANNOTATION",
    "ADMIN_TLS_VOLUME",
    "ANNOTATION_PREFIX",
    "CONFIG_ANNOTATION",
    "CONFIG_MOUNT_DIR",
    "CONFIG_VOLUME",
    "CONFIG_YAML_ENV",
    "CONTAINER_NAME",
    "EVENTS_ANNOTATION",
    "IMAGE_ANNOTATION",
    "INJECT_ANNOTATION",
    "NAMESPACE_LABEL",
    "NAMESPACE_LABEL_ENABLED",
    "NATIVE_ANNOTATION",
    "NEVER_NAMESPACES",
    "ROUTES_ANNOTATION",
    "STATUS_ANNOTATION",
    "STATUS_INJECTED",
    "TMP_VOLUME",
    "UPSTREAM_PORT_ANNOTATION",
    "InjectSettings",
]

ANNOTATION_PREFIX = "sidecar.causality.dev/"
# Namespace label: `enabled` injects every pod of the namespace (webhook).
NAMESPACE_LABEL = "sidecar.causality.dev/injection"
NAMESPACE_LABEL_ENABLED = "enabled"
# Pod annotations.
INJECT_ANNOTATION = "sidecar.causality.dev/inject"  # "true" opts in, "false" opts out
UPSTREAM_PORT_ANNOTATION = "sidecar.causality.dev/upstream-port"  # number or port name
CONFIG_ANNOTATION = "sidecar.causality.dev/config"  # a ConfigMap holding config.yaml
NATIVE_ANNOTATION = "sidecar.causality.dev/native"  # "true": restartable init container
IMAGE_ANNOTATION = "sidecar.causality.dev/image"
ROUTES_ANNOTATION = "sidecar.causality.dev/routes"  # comma-separated route templates
EVENTS_ANNOTATION = "sidecar.causality.dev/events"  # "true": event inspection on
# A Secret with the admin port's certificate files, when the base config turns admin.tls on.
ADMIN_TLS_SECRET_ANNOTATION = "sidecar.causality.dev/admin-tls-secret"  # noqa: S105 (a name)
# Set by the injector on what it injected (also how "already injected" is recognised).
STATUS_ANNOTATION = "sidecar.causality.dev/status"
STATUS_INJECTED = "injected"

# Namespaces never injected, whatever their labels or the pod's annotations say.
NEVER_NAMESPACES = frozenset({"kube-system"})

CONTAINER_NAME = "causality-sidecar"
CONFIG_MOUNT_DIR = "/etc/causality-sidecar"
CONFIG_VOLUME = "causality-sidecar-config"
TMP_VOLUME = "causality-sidecar-tmp"
ADMIN_TLS_VOLUME = "causality-sidecar-admin-tls"

# The chart's defaults (helm/causality-sidecar/values.yaml), so an injected sidecar looks
# like the one the chart renders.
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_RESOURCES: Mapping[str, Any] = MappingProxyType(
    {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
)
_STARTUP: Mapping[str, int] = MappingProxyType(
    {"periodSeconds": 1, "failureThreshold": 30, "timeoutSeconds": 1}
)
_LIVENESS: Mapping[str, int] = MappingProxyType(
    {"periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 2}
)
_READINESS: Mapping[str, int] = MappingProxyType(
    {"periodSeconds": 2, "failureThreshold": 1, "timeoutSeconds": 1}
)


@dataclass(frozen=True, slots=True)
class InjectSettings:
    """How to inject: the defaults a pod's annotations may override.

    Attributes:
        image: the sidecar image (``sidecar.causality.dev/image`` overrides it per pod).
        native: inject a native sidecar (init container, ``restartPolicy: Always``);
            Services resolve its named port only from Kubernetes 1.32.
        config_map: a ConfigMap (in the pod's namespace) holding ``config.yaml``.
        upstream_port: the app port to proxy, when the pod does not say.
        injector_namespace: the webhook's own namespace, never injected.
        proxy_port, admin_port, ingest_port: the sidecar's listeners (the sidecar's own
            defaults); a proxy or admin port some container already declares moves up to
            the next free number, with a warning.
        uid: the image's numeric user (runAsUser/runAsGroup of the sidecar container).
        termination_grace_seconds: the least ``terminationGracePeriodSeconds`` of an
            injected pod; outlasts the default drain (5s delay + 30s timeout).
        resources, startup_probe, liveness_probe, readiness_probe: as the chart's values.
        base_config: a sidecar config (raw mapping, validated by
            `sidecar.inject.baseconfig.read_base_config`) every injected pod gets under its
            own part in ``SIDECAR_CONFIG_YAML`` (``--sidecar-config``).
        admin_tls_secret: the Secret with the admin port's certificate files when
            ``base_config`` turns ``admin.tls`` on (``sidecar.causality.dev/admin-tls-secret``
            overrides it per pod).
    """

    image: str
    native: bool = False
    config_map: str | None = None
    upstream_port: int | None = None
    injector_namespace: str | None = None
    proxy_port: int = 8000
    admin_port: int = 9464
    ingest_port: int = 4318
    metrics_path: str = "/metrics"
    uid: int = 10001
    termination_grace_seconds: int = 45
    pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Any] = field(default_factory=lambda: _RESOURCES)
    startup_probe: Mapping[str, int] = field(default_factory=lambda: _STARTUP)
    liveness_probe: Mapping[str, int] = field(default_factory=lambda: _LIVENESS)
    readiness_probe: Mapping[str, int] = field(default_factory=lambda: _READINESS)
    base_config: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    admin_tls_secret: str | None = None
