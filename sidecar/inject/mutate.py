"""The one place that knows how a pod is injected: pod (or pod template) + settings -> pod.

Pure: plain JSON data in, a new object out, the input never touched. Both entry points call
`inject_pod`: ``causality-sidecar inject`` (sidecar.inject.documents) and the admission
webhook (sidecar.inject.webhook). What injection does to a pod (the sidecar container,
port names swapped instead of iptables, the ``prometheus.io/*`` annotations, the grace
period): docs/injection.md.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sidecar.config import ConfigError, config_from_dict
from sidecar.inject.baseconfig import APP_MERGE_TARGET, admin_tls_dir, layer_config
from sidecar.inject.settings import (
    ADMIN_TLS_SECRET_ANNOTATION,
    ADMIN_TLS_VOLUME,
    CONFIG_ANNOTATION,
    CONFIG_MOUNT_DIR,
    CONFIG_VOLUME,
    CONFIG_YAML_ENV,
    CONTAINER_NAME,
    EVENTS_ANNOTATION,
    IMAGE_ANNOTATION,
    INJECT_ANNOTATION,
    NAMESPACE_LABEL,
    NAMESPACE_LABEL_ENABLED,
    NATIVE_ANNOTATION,
    NEVER_NAMESPACES,
    ROUTES_ANNOTATION,
    STATUS_ANNOTATION,
    STATUS_INJECTED,
    TMP_VOLUME,
    UPSTREAM_PORT_ANNOTATION,
    InjectSettings,
)

__all__ = ["Injection", "Selection", "inject_pod", "is_injected", "wants_injection"]

SCRAPE = "prometheus.io/scrape"
SCRAPE_PORT = "prometheus.io/port"
SCRAPE_PATH = "prometheus.io/path"
SCRAPE_SCHEME = "prometheus.io/scheme"
# IANA_SVC_NAME, the rule for a container port name.
_PORT_NAME = re.compile(r"^(?=.*[a-z])(?!.*--)[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
# libyaml's emitter when PyYAML has it (4x faster, the same text), else the pure-Python one.
_DUMPER = yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper


@dataclass(frozen=True, slots=True)
class Injection:
    """The result of `inject_pod`.

    Attributes:
        pod: a new object; equal to the input when not injected.
        injected: whether the sidecar was added.
        reason: why it was (not) injected, one short phrase.
        warnings: what the pod's owner should know (bad annotation values and the default
            used instead, a port without a name that no Service can be redirected from, ...).
        upstream_port: the app port the sidecar proxies to (None when not injected).
        proxy_port: the sidecar's proxy port: where a Service's numeric ``targetPort``
            equal to ``upstream_port`` must point instead (None when not injected).
    """

    pod: dict[str, Any]
    injected: bool
    reason: str
    warnings: tuple[str, ...] = ()
    upstream_port: int | None = None
    proxy_port: int | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """Whether a pod is to be injected, and why (`wants_injection`)."""

    wanted: bool
    reason: str
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class _Options:
    """The settings after the pod's annotations, plus the warnings of reading them."""

    image: str
    native: bool
    config_map: str | None
    routes: tuple[str, ...] | None
    events: bool | None
    admin_tls_secret: str | None = None
    warnings: list[str] = field(default_factory=list)


def _metadata(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = pod.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    annotations = _metadata(pod).get("annotations")
    return annotations if isinstance(annotations, Mapping) else {}


def _spec(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = pod.get("spec") or {}
    return spec if isinstance(spec, Mapping) else {}


def _all_containers(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                yield container


def is_injected(pod: Mapping[str, Any]) -> bool:
    """The pod already carries the sidecar (by its status annotation or container name)."""
    if _annotations(pod).get(STATUS_ANNOTATION) == STATUS_INJECTED:
        return True
    return any(c.get("name") == CONTAINER_NAME for c in _all_containers(_spec(pod)))


def _bool_annotation(
    annotations: Mapping[str, Any], key: str, default: bool, warnings: list[str]
) -> bool:
    value = annotations.get(key)
    if value is None:
        return default
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    warnings.append(
        f'{key}: expected "true" or "false", got {value!r}; using {str(default).lower()}'
    )
    return default


def wants_injection(
    pod: Mapping[str, Any],
    settings: InjectSettings,
    *,
    namespace: str | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> Selection:
    """The selection rule, first match wins: already injected, opted out
    (``sidecar.causality.dev/inject: "false"``), ``hostNetwork``, ``kube-system``, the
    injector's own namespace: no. Then the annotation ``"true"`` or the namespace label
    ``sidecar.causality.dev/injection: enabled``: yes.

    ``namespace_labels`` None means the caller has already chosen this pod (the
    ``inject`` command): every pod not excluded above is injected. The webhook passes the
    namespace's labels (``{}`` when it has none).
    """
    annotations = _annotations(pod)
    warnings: list[str] = []
    namespace = namespace or _metadata(pod).get("namespace")
    if is_injected(pod):
        return Selection(False, "already injected")
    opt_in = annotations.get(INJECT_ANNOTATION)
    choice: bool | None = None
    if opt_in is not None:
        choice = _bool_annotation(annotations, INJECT_ANNOTATION, False, warnings)
        if warnings:
            choice = None  # a bad value neither opts in nor out
    if choice is False:
        return Selection(False, f'opted out ({INJECT_ANNOTATION}: "false")')
    if _spec(pod).get("hostNetwork") is True:
        return Selection(False, "hostNetwork: true (the sidecar's ports would be the node's)")
    if namespace in NEVER_NAMESPACES:
        return Selection(False, f"namespace {namespace} is never injected", tuple(warnings))
    if namespace is not None and namespace == settings.injector_namespace:
        return Selection(False, f"namespace {namespace} is the injector's own", tuple(warnings))
    if choice is True:
        return Selection(True, f'{INJECT_ANNOTATION}: "true"', tuple(warnings))
    if namespace_labels is None:
        return Selection(True, "requested", tuple(warnings))
    if namespace_labels.get(NAMESPACE_LABEL) == NAMESPACE_LABEL_ENABLED:
        return Selection(
            True, f"namespace label {NAMESPACE_LABEL}={NAMESPACE_LABEL_ENABLED}", tuple(warnings)
        )
    return Selection(
        False,
        f"not selected (no {INJECT_ANNOTATION} annotation, no namespace label {NAMESPACE_LABEL})",
        tuple(warnings),
    )


def _options(annotations: Mapping[str, Any], settings: InjectSettings) -> _Options:
    warnings: list[str] = []
    image = settings.image
    given = annotations.get(IMAGE_ANNOTATION)
    if given is not None:
        if isinstance(given, str) and given.strip() and not any(c.isspace() for c in given):
            image = given
        else:
            warnings.append(f"{IMAGE_ANNOTATION}: not an image reference {given!r}; using {image}")
    native = _bool_annotation(annotations, NATIVE_ANNOTATION, settings.native, warnings)
    config_map = settings.config_map
    given = annotations.get(CONFIG_ANNOTATION)
    if given is not None:
        if isinstance(given, str) and len(given) <= 253 and _DNS_SUBDOMAIN.match(given):
            config_map = given
        else:
            default = config_map or "the config in the container spec"
            warnings.append(f"{CONFIG_ANNOTATION}: not a ConfigMap name {given!r}; using {default}")
    events: bool | None = None
    if EVENTS_ANNOTATION in annotations:
        events = _bool_annotation(annotations, EVENTS_ANNOTATION, False, warnings)
    routes: tuple[str, ...] | None = None
    given = annotations.get(ROUTES_ANNOTATION)
    if given is not None:
        routes = _routes(str(given), warnings)
    secret = settings.admin_tls_secret
    given = annotations.get(ADMIN_TLS_SECRET_ANNOTATION)
    if given is not None:
        if isinstance(given, str) and len(given) <= 253 and _DNS_SUBDOMAIN.match(given):
            secret = given
        else:
            default = secret or "none"
            warnings.append(
                f"{ADMIN_TLS_SECRET_ANNOTATION}: not a Secret name {given!r}; using {default}"
            )
    return _Options(image, native, config_map, routes, events, secret, warnings)


def _routes(text: str, warnings: list[str]) -> tuple[str, ...]:
    routes: list[str] = []
    for item in text.split(","):
        route = item.strip()
        if not route:
            continue
        problem = _route_problem(route)
        if problem is not None:
            warnings.append(f"{ROUTES_ANNOTATION}: {problem}; route left out")
            continue
        routes.append(route)
    return tuple(routes)


@functools.lru_cache(maxsize=1024)  # the pods of one workload repeat their routes
def _route_problem(route: str) -> str | None:
    """What the sidecar's config loader says about ``route`` (None: it is a valid one)."""
    try:
        config_from_dict({"proxy": {"routes": [route]}})
    except ConfigError as exc:
        return exc.problem
    return None


@dataclass(frozen=True, slots=True)
class _Upstream:
    """The app port the sidecar proxies to; ``port`` is its entry in ``container``'s ports."""

    number: int
    container: dict[str, Any] | None = None
    port: dict[str, Any] | None = None


def _is_tcp(port: Mapping[str, Any]) -> bool:
    return port.get("protocol", "TCP") == "TCP" and isinstance(port.get("containerPort"), int)


def _declared(spec: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for container in _all_containers(spec):
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                yield container, port


def _find_port(spec: Mapping[str, Any], wanted: int | str) -> _Upstream | None:
    for container, port in _declared(spec):
        if not _is_tcp(port):
            continue
        if wanted in (port["containerPort"], port.get("name")):
            return _Upstream(port["containerPort"], container, port)
    return _Upstream(wanted) if isinstance(wanted, int) else None


def _parse_port(value: Any) -> int | str | None:
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        return number if 1 <= number <= 65535 else None
    return text if _PORT_NAME.match(text) else None


def _upstream(
    spec: Mapping[str, Any],
    annotations: Mapping[str, Any],
    settings: InjectSettings,
    warnings: list[str],
) -> _Upstream | None:
    """The app port to proxy: the annotation's, the settings', else the first container's
    port named ``http``, else its first TCP port; None when there is none."""
    given = annotations.get(UPSTREAM_PORT_ANNOTATION)
    if given is not None:
        wanted = _parse_port(given)
        found = _find_port(spec, wanted) if wanted is not None else None
        if found is not None:
            return found
        warnings.append(
            f"{UPSTREAM_PORT_ANNOTATION}: {given!r} is neither a port number nor the name of "
            "a container port; using the default"
        )
    if settings.upstream_port is not None:
        return _find_port(spec, settings.upstream_port)
    first = next(iter(spec.get("containers") or []), None)
    if not isinstance(first, dict):
        return None
    ports = [p for p in first.get("ports") or [] if isinstance(p, dict) and _is_tcp(p)]
    chosen = next((p for p in ports if p.get("name") == "http"), ports[0] if ports else None)
    if chosen is None:
        return None
    return _Upstream(chosen["containerPort"], first, chosen)


def _free_port(start: int, taken: set[int]) -> int:
    port = start
    while port in taken:
        port += 1
    taken.add(port)
    return port


def _free_name(wanted: str, taken: set[str]) -> str:
    """``wanted`` if no port has that name yet, else a numbered variant (15 chars max)."""
    name = wanted
    number = 2
    while name in taken:
        suffix = f"-{number}"
        name = wanted[: 15 - len(suffix)].rstrip("-") + suffix
        number += 1
    taken.add(name)
    return name


def _app_name(name: str, taken: set[str]) -> str:
    """The app's new name for the port the sidecar takes over: ``app-<name>``, 15 chars max."""
    return _free_name(("app-" + name)[:15].rstrip("-"), taken)


def _number_named_probes(container: dict[str, Any], name: str, number: int) -> None:
    """The container's probes and lifecycle hooks on port ``name`` get ``number``."""
    handlers = [container.get(p) for p in _PROBES]
    lifecycle = container.get("lifecycle")
    lifecycle = lifecycle if isinstance(lifecycle, dict) else {}
    handlers += [lifecycle.get("postStart"), lifecycle.get("preStop")]
    for handler in handlers:
        if not isinstance(handler, dict):
            continue
        for kind in ("httpGet", "tcpSocket"):
            action = handler.get(kind)
            if isinstance(action, dict) and action.get("port") == name:
                action["port"] = number


def _merge_target(
    annotations: Mapping[str, Any], upstream: int, warnings: list[str]
) -> dict[str, Any] | None:
    """The app's own metrics endpoint the pod's ``prometheus.io/*`` annotations named."""
    if str(annotations.get(SCRAPE, "")).strip().lower() != "true":
        return None
    scheme = str(annotations.get(SCRAPE_SCHEME, "http")).strip().lower()
    if scheme != "http":
        warnings.append(
            f"{SCRAPE_SCHEME}: {scheme!r}: the app's own metrics are not merged (only http "
            "endpoints are); add a merge target to the sidecar's config"
        )
        return None
    port = _parse_port(annotations.get(SCRAPE_PORT, upstream))
    if not isinstance(port, int):
        warnings.append(
            f"{SCRAPE_PORT}: {annotations.get(SCRAPE_PORT)!r} is not a port number; the app's "
            "own metrics are not merged"
        )
        return None
    path = str(annotations.get(SCRAPE_PATH) or "/metrics")
    if not path.startswith("/"):
        path = "/" + path
    return {"name": APP_MERGE_TARGET, "url": f"http://127.0.0.1:{port}{path}"}


@dataclass(frozen=True, slots=True)
class _Ports:
    """The sidecar's port numbers and the names of its two declared ports."""

    proxy: int
    admin: int
    ingest: int
    proxy_name: str
    admin_name: str

    def declared(self) -> list[dict[str, Any]]:
        """The container's ``ports`` (the ingest port is loopback-only: not declared)."""
        return [
            {"name": self.proxy_name, "containerPort": self.proxy, "protocol": "TCP"},
            {"name": self.admin_name, "containerPort": self.admin, "protocol": "TCP"},
        ]


def _sidecar_container(
    settings: InjectSettings,
    options: _Options,
    config: dict[str, Any],
    ports: _Ports,
) -> dict[str, Any]:
    """The sidecar container, in the chart's style (helm/causality-sidecar, _helpers.tpl)."""
    args = ["run"]
    mounts: list[dict[str, Any]] = []
    if options.config_map is not None:
        args += ["--config", f"{CONFIG_MOUNT_DIR}/config.yaml"]
        mounts.append({"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT_DIR, "readOnly": True})
    tls_dir = admin_tls_dir(settings.base_config)
    if tls_dir is not None:
        mounts.append({"name": ADMIN_TLS_VOLUME, "mountPath": tls_dir, "readOnly": True})
    mounts.append({"name": TMP_VOLUME, "mountPath": "/tmp"})  # noqa: S108 (an emptyDir in the container)
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": options.image}
    container["imagePullPolicy"] = settings.pull_policy
    if options.native:
        container["restartPolicy"] = "Always"
    container["args"] = args
    container["env"] = [
        # the pod's identity (downward API): a service.instance.id stable across restarts
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {
            "name": "OTEL_RESOURCE_ATTRIBUTES",
            "value": "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME),"
            f"k8s.container.name={CONTAINER_NAME}",
        },
        {"name": "MALLOC_MMAP_THRESHOLD_", "value": "4194304"},
        {"name": "MALLOC_TRIM_THRESHOLD_", "value": "67108864"},
        {"name": CONFIG_YAML_ENV, "value": yaml.dump(config, Dumper=_DUMPER, sort_keys=False)},
    ]
    container["ports"] = ports.declared()
    for probe, path, timing in (
        ("startupProbe", "/healthz", settings.startup_probe),
        ("livenessProbe", "/healthz", settings.liveness_probe),
        ("readinessProbe", "/readyz", settings.readiness_probe),
    ):
        action = {"path": path, "port": ports.admin_name}
        if tls_dir is not None:
            action["scheme"] = "HTTPS"  # the kubelet does not verify the certificate
        container[probe] = {"httpGet": action, **timing}
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": settings.uid,
        "runAsGroup": settings.uid,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container["resources"] = copy.deepcopy(dict(settings.resources))
    container["volumeMounts"] = mounts
    return container


def inject_pod(
    pod: Mapping[str, Any],
    settings: InjectSettings,
    *,
    namespace: str | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> Injection:
    """Add the sidecar to ``pod`` (a Pod, or a pod template ``{"metadata", "spec"}``).

    Never raises on a pod's content: what cannot be injected comes back unchanged with the
    reason, what is odd comes back as warnings. Injecting an injected pod returns it
    unchanged (``reason == "already injected"``). See `wants_injection` for which pods.
    """
    selection = wants_injection(
        pod, settings, namespace=namespace, namespace_labels=namespace_labels
    )
    if not selection.wanted:
        return Injection(copy.deepcopy(dict(pod)), False, selection.reason, selection.warnings)
    out: dict[str, Any] = copy.deepcopy(dict(pod))
    spec = out.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list):
        return Injection(
            copy.deepcopy(dict(pod)), False, "no containers in the pod spec", selection.warnings
        )
    annotations = _own_annotations(out)
    options = _options(annotations, settings)
    warnings = [*selection.warnings, *options.warnings]
    _native_for_jobs(spec, options, warnings)
    if admin_tls_dir(settings.base_config) is not None and options.admin_tls_secret is None:
        reason = (
            "admin.tls is on in the injector's sidecar config, but no Secret holds the "
            f"certificate: set {ADMIN_TLS_SECRET_ANNOTATION}"
        )
        return Injection(copy.deepcopy(dict(pod)), False, reason, tuple(warnings))
    upstream = _upstream(spec, annotations, settings, warnings)
    if upstream is None:
        reason = f"no TCP container port to proxy; set {UPSTREAM_PORT_ANNOTATION}"
        return Injection(copy.deepcopy(dict(pod)), False, reason, tuple(warnings))
    scraped = _parse_port(annotations.get(SCRAPE_PORT, ""))  # the app's metrics port
    in_use = {upstream.number} | ({scraped} if isinstance(scraped, int) else set())
    ports = _sidecar_ports(spec, upstream, in_use, settings, warnings)
    config = _sidecar_config(ports, upstream, options, annotations, settings, warnings)
    container = _sidecar_container(settings, options, config, ports)
    _add_to_pod(spec, container, options, settings)
    _annotate(annotations, ports.admin, _metrics_path(settings), settings)
    return Injection(out, True, selection.reason, tuple(warnings), upstream.number, ports.proxy)


def _own_annotations(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod's annotations mapping, created when missing (``pod`` is our copy)."""
    metadata = pod.get("metadata")
    if not isinstance(metadata, dict):
        metadata = pod["metadata"] = {}
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        annotations = metadata["annotations"] = {}
    return annotations


def _native_for_jobs(spec: Mapping[str, Any], options: _Options, warnings: list[str]) -> None:
    """A container that never exits would keep a Job's pod from completing; a native
    sidecar is stopped once the pod's containers have finished."""
    restart = spec.get("restartPolicy", "Always")
    if restart != "Always" and not options.native:
        options.native = True
        warnings.append(
            f"restartPolicy {restart} (a Job's pod): the sidecar is a native sidecar so the "
            "pod can complete (Kubernetes >= 1.29)"
        )


def _sidecar_ports(
    spec: dict[str, Any],
    upstream: _Upstream,
    in_use: set[int],
    settings: InjectSettings,
    warnings: list[str],
) -> _Ports:
    """Free numbers for the sidecar (not declared in the pod, not ``in_use`` by the app),
    and the port-name swap (which renames the app's port and numbers the app's probes on
    that name: ``spec`` is our copy)."""
    taken = {p["containerPort"] for _, p in _declared(spec) if "containerPort" in p}
    taken |= in_use
    numbers = []
    for wanted, what in (
        (settings.proxy_port, "proxy"),
        (settings.admin_port, "admin"),
        (settings.ingest_port, "OTLP ingest"),
    ):
        got = _free_port(wanted, taken)
        if got != wanted:
            warnings.append(
                f"port {wanted} is taken in the pod; the sidecar's {what} port is {got}"
            )
        numbers.append(got)
    proxy, admin, ingest = numbers
    names = {str(p["name"]) for _, p in _declared(spec) if p.get("name")}
    original = upstream.port.get("name") if upstream.port is not None else None
    if original and upstream.port is not None and upstream.container is not None:
        upstream.port["name"] = _app_name(str(original), names)
        proxy_name = str(original)
        _number_named_probes(upstream.container, proxy_name, upstream.number)
    else:
        proxy_name = _free_name("proxy", names)
        where = f" of container {upstream.container['name']}" if upstream.container else ""
        warnings.append(
            f"port {upstream.number}{where} has no name, so no Service can be redirected to "
            f"the sidecar by name: a Service with targetPort {upstream.number} still reaches "
            f"the app directly; set its targetPort to {proxy} (or {proxy_name!r})"
        )
    return _Ports(proxy, admin, ingest, proxy_name, _free_name("metrics", names))


def _sidecar_config(
    ports: _Ports,
    upstream: _Upstream,
    options: _Options,
    annotations: Mapping[str, Any],
    settings: InjectSettings,
    warnings: list[str],
) -> dict[str, Any]:
    """The sidecar's config (``SIDECAR_CONFIG_YAML``): what the pod spec decides."""
    config: dict[str, Any] = {
        "proxy": {
            "listen": f"0.0.0.0:{ports.proxy}",
            "upstream": f"http://127.0.0.1:{upstream.number}",
        },
        "admin": {"listen": f"0.0.0.0:{ports.admin}", "metrics_path": _metrics_path(settings)},
        "ingest": {"listen": f"127.0.0.1:{ports.ingest}"},
    }
    if options.routes is not None:
        config["proxy"]["routes"] = list(options.routes)
    if options.events is not None:
        config["events"] = {"enabled": options.events}
    target = _merge_target(annotations, upstream.number, warnings)
    if target is not None:
        config["merge"] = {"targets": [target]}
    return layer_config(settings.base_config, config) if settings.base_config else config


def _metrics_path(settings: InjectSettings) -> str:
    """The base config's ``admin.metrics_path``, else the settings' (what is scraped)."""
    admin = settings.base_config.get("admin")
    path = admin.get("metrics_path") if isinstance(admin, Mapping) else None
    return path if isinstance(path, str) and path else settings.metrics_path


def _add_to_pod(
    spec: dict[str, Any], container: dict[str, Any], options: _Options, settings: InjectSettings
) -> None:
    """The sidecar first (classic) or first init container (native), its volumes, and a
    grace period that outlasts its drain."""
    if options.native:
        spec["initContainers"] = [container, *(spec.get("initContainers") or [])]
    else:
        spec["containers"] = [container, *spec["containers"]]
    volumes = list(spec.get("volumes") or [])
    if options.config_map is not None:
        volumes.append({"name": CONFIG_VOLUME, "configMap": {"name": options.config_map}})
    if admin_tls_dir(settings.base_config) is not None and options.admin_tls_secret is not None:
        volumes.append(
            {"name": ADMIN_TLS_VOLUME, "secret": {"secretName": options.admin_tls_secret}}
        )
    volumes.append({"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}})
    spec["volumes"] = volumes
    grace = spec.get("terminationGracePeriodSeconds")
    grace = grace if isinstance(grace, int) else 0  # unset: Kubernetes' 30s, too short
    spec["terminationGracePeriodSeconds"] = max(settings.termination_grace_seconds, grace)


def _annotate(
    annotations: dict[str, Any], admin_port: int, metrics_path: str, settings: InjectSettings
) -> None:
    """Scraping points at the sidecar's /metrics (https with ``admin.tls``); the pod is
    marked injected."""
    annotations.pop(SCRAPE_SCHEME, None)
    annotations[SCRAPE] = "true"
    annotations[SCRAPE_PORT] = str(admin_port)
    annotations[SCRAPE_PATH] = metrics_path
    if admin_tls_dir(settings.base_config) is not None:
        annotations[SCRAPE_SCHEME] = "https"
    annotations[STATUS_ANNOTATION] = STATUS_INJECTED
