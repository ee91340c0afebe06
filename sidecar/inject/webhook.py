"""The injection webhook: ``causality-sidecar webhook`` (docs/injection.md).

``POST /mutate`` (and ``/mutate/opt-in``, for namespaces not labelled for injection) over
TLS answers an ``admission.k8s.io/v1`` AdmissionReview for a Pod CREATE with ``allowed:
true`` and, when the pod is injected, the ``JSONPatch`` of `inject_pod`'s result. It never
denies a pod: on any error it allows without a patch and says why in ``warnings``.
Bodies are bounded (``--max-body``), the certificate is re-read when its files change
(`sidecar.tlsserver`), and ``/healthz``, ``/readyz``, ``/metrics`` are on a plain-HTTP
port. The answers in full: docs/injection.md ("The webhook").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import logging
import re
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily

from sidecar.admin import Readiness, healthz, readyz
from sidecar.config import Address, ConfigError, parse_duration, parse_size
from sidecar.inject.baseconfig import BaseConfigFile, read_base_config
from sidecar.inject.mutate import Injection, inject_pod, wants_injection
from sidecar.inject.patch import json_patch
from sidecar.inject.settings import NAMESPACE_LABEL, NAMESPACE_LABEL_ENABLED, InjectSettings
from sidecar.lifecycle import AiohttpComponent
from sidecar.tlsserver import ReloadingServerContext, TlsFileError, TlsFiles
from sidecar.unified import UnifiedCollector, metrics_handler

__all__ = [
    "ADMISSION_V1",
    "NAMESPACE_PATH",
    "OPT_IN_PATH",
    "RESULTS",
    "Webhook",
    "WebhookConfig",
    "create_webhook_app",
    "run_webhook",
    "webhook_config",
]

log = logging.getLogger(__name__)

ADMISSION_V1 = "admission.k8s.io/v1"
ADMISSION_GROUP = "admission.k8s.io/"
NAMESPACE_PATH = "/mutate"  # namespace labelled sidecar.causality.dev/injection=enabled
OPT_IN_PATH = "/mutate/opt-in"  # other namespaces: the pod's annotation decides
DEFAULT_LISTEN = Address("0.0.0.0", 9443)
DEFAULT_HEALTH_LISTEN = Address("0.0.0.0", 9090)
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # the API server's own limit for an object is 3 MiB
UID_WINDOW = 4096  # how much of an oversized body is searched for the review's uid
_UID = re.compile(rb'"request"\s*:\s*\{\s*"uid"\s*:\s*"([0-9A-Za-z-]{1,64})"')
_POD = {"group": "", "version": "v1", "kind": "Pod"}
WARNING_PREFIX = "causality-sidecar: "

# sidecar_injector_requests_total{result}: every request to a /mutate path gets exactly one.
RESULTS = (
    "injected",  # allowed with a patch
    "skipped",  # allowed without a patch: the pod is not to be injected (or already is)
    "ignored",  # allowed without a patch: not a Pod CREATE (a misconfigured webhook rule)
    "error",  # allowed without a patch: the pod could not be injected; reason in warnings
    "unsupported_version",  # allowed without a patch: another admission.k8s.io version
    "too_large",  # the body is over --max-body (allowed when its uid could be read, else 413)
    "bad_request",  # 400: the body is not an AdmissionReview
)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What ``causality-sidecar webhook`` was told."""

    settings: InjectSettings
    tls: TlsFiles
    listen: Address = DEFAULT_LISTEN
    health_listen: Address = DEFAULT_HEALTH_LISTEN
    max_body: int = DEFAULT_MAX_BODY
    drain_delay: float = 5.0
    sidecar_config: str | None = None  # re-read on change (settings.base_config: at start)


class _Rejected(Exception):
    """The body is not an AdmissionReview: 400 with this reason."""


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: dict[str, Any] | None
    result: str
    reason: str = ""


def _review(api_version: str, uid: str, warnings: Iterable[str], patch: bytes | None = None) -> Any:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(patch).decode("ascii")
    warned = [WARNING_PREFIX + w for w in warnings]
    if warned:
        response["warnings"] = warned
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


@dataclass
class Webhook:
    """The /mutate logic and its metrics; one per server (no module state)."""

    settings: InjectSettings
    max_body: int = DEFAULT_MAX_BODY
    tls: ReloadingServerContext | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    base_config: BaseConfigFile | None = None
    _base_seen: Any = field(default=None, init=False)
    _settings: InjectSettings | None = field(default=None, init=False)

    def current_settings(self) -> InjectSettings:
        """The settings with the newest valid base config (`BaseConfigFile`, one ``stat``)."""
        if self.base_config is None:
            return self.settings
        base = self.base_config.current()
        if base is not self._base_seen or self._settings is None:
            self._base_seen = base
            self._settings = dataclasses.replace(self.settings, base_config=base)
        return self._settings

    def __post_init__(self) -> None:
        self.requests = Counter(
            "sidecar_injector_requests",
            "AdmissionReview requests answered by the injection webhook, by result",
            ["result"],
            registry=self.registry,
        )
        for result in RESULTS:
            self.requests.labels(result)
        self.duration = Histogram(
            "sidecar_injector_request_duration_seconds",
            "Time from a /mutate request's first byte read to its answer",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=self.registry,
        )
        self.registry.register(_ReloadCollector(self))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``POST /mutate`` and ``POST /mutate/opt-in``."""
        started = time.perf_counter()
        namespace_enabled = request.path.rstrip("/") == NAMESPACE_PATH
        body, complete = await self._read(request)
        if not complete:
            answer = self._too_large(body)
        else:
            try:
                answer = self.review(body, namespace_enabled=namespace_enabled)
            except _Rejected as exc:
                answer = _Answer(400, None, "bad_request", str(exc))
        self.requests.labels(answer.result).inc()
        self.duration.observe(time.perf_counter() - started)
        headers = {hdrs.CONNECTION: "close"} if not complete else None  # body left unread
        if answer.body is None:
            log.info("%s: %d %s", request.path, answer.status, answer.reason,
                     extra={"event": "webhook_rejected", "result": answer.result})  # fmt: skip
            return web.Response(status=answer.status, text=f"{answer.reason}\n", headers=headers)
        return web.Response(
            body=json.dumps(answer.body, separators=(",", ":")).encode(),
            content_type="application/json",
            headers=headers,
        )

    async def _read(self, request: web.Request) -> tuple[bytes, bool]:
        """The body, and whether it is whole (False: over ``max_body``, a prefix read)."""
        declared = request.content_length
        if declared is not None and declared > self.max_body:
            prefix = b""
            while len(prefix) < UID_WINDOW and (chunk := await request.content.read(UID_WINDOW)):
                prefix += chunk
            return prefix[:UID_WINDOW], False
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body:
                return b"".join(chunks)[:UID_WINDOW], False
        return b"".join(chunks), True

    def _too_large(self, prefix: bytes) -> _Answer:
        reason = f"request body over {self.max_body} bytes"
        found = _UID.search(prefix[:UID_WINDOW])
        if found is None:
            return _Answer(413, None, "too_large", f"{reason} (no AdmissionReview uid found)")
        warning = f"{reason}: the pod was not looked at and is not injected"
        uid = found.group(1).decode("ascii")
        return _Answer(200, _review(ADMISSION_V1, uid, [warning]), "too_large", reason)

    def review(self, body: bytes, *, namespace_enabled: bool) -> _Answer:
        """The answer to one AdmissionReview body (raises `_Rejected` for a non-review)."""
        try:
            review = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Rejected(f"body is not JSON: {exc}") from None
        if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
            raise _Rejected("body is not an AdmissionReview (kind: AdmissionReview expected)")
        api_version = review.get("apiVersion")
        request = review.get("request")
        uid = request.get("uid") if isinstance(request, dict) else None
        if not isinstance(request, dict) or not isinstance(uid, str) or not uid:
            raise _Rejected("AdmissionReview without request.uid")
        if not isinstance(api_version, str) or not api_version.startswith(ADMISSION_GROUP):
            raise _Rejected(f"apiVersion {api_version!r} is not {ADMISSION_V1}")
        if api_version != ADMISSION_V1:
            warning = f"AdmissionReview {api_version} is not supported (only {ADMISSION_V1})"
            body_out = _review(api_version, uid, [warning + "; the pod is not injected"])
            return _Answer(200, body_out, "unsupported_version", warning)
        if request.get("kind") != _POD or request.get("operation") != "CREATE":
            what = f"{request.get('operation')} of {request.get('kind')}"
            return _Answer(200, _review(api_version, uid, []), "ignored", what)
        if request.get("subResource"):
            what = f"CREATE of subresource {request.get('subResource')!r}"
            return _Answer(200, _review(api_version, uid, []), "ignored", what)
        pod = request.get("object")
        namespace = request.get("namespace")
        try:
            return self._mutate(uid, pod, namespace, namespace_enabled)
        except Exception as exc:  # never deny a pod: a bug here is a warning, not a failure
            log.exception("injection failed", extra={"event": "webhook_error"})
            warning = f"not injected: the injector failed: {type(exc).__name__}: {exc}"
            return _Answer(200, _review(api_version, uid, [warning]), "error", warning)

    def _mutate(self, uid: str, pod: Any, namespace: Any, namespace_enabled: bool) -> _Answer:
        if not isinstance(pod, dict):
            warning = "not injected: request.object is not a Pod object"
            return _Answer(200, _review(ADMISSION_V1, uid, [warning]), "error", warning)
        ns = namespace if isinstance(namespace, str) and namespace else None
        labels: Mapping[str, str] = (
            {NAMESPACE_LABEL: NAMESPACE_LABEL_ENABLED} if namespace_enabled else {}
        )
        settings = self.current_settings()
        selection = wants_injection(pod, settings, namespace=ns, namespace_labels=labels)
        if not selection.wanted:
            body = _review(ADMISSION_V1, uid, selection.warnings)
            return _Answer(200, body, "skipped", selection.reason)
        injection = inject_pod(pod, settings, namespace=ns, namespace_labels=labels)
        if not injection.injected:
            warnings = [*injection.warnings, f"not injected: {injection.reason}"]
            return _Answer(200, _review(ADMISSION_V1, uid, warnings), "error", injection.reason)
        warnings = [*injection.warnings, *_numeric_target_port(pod, injection)]
        ops = json_patch(pod, injection.pod)
        patch = json.dumps(ops, separators=(",", ":")).encode()
        metadata = pod.get("metadata") or {}
        name = metadata.get("name") or f"{metadata.get('generateName') or ''}*"
        log.info("injected pod %s/%s", ns or "", name,
                 extra={"event": "injected", "namespace": ns, "pod": name})  # fmt: skip
        body = _review(ADMISSION_V1, uid, warnings, patch)
        return _Answer(200, body, "injected", injection.reason)


def _numeric_target_port(pod: Mapping[str, Any], injection: Injection) -> list[str]:
    """What a Service with a numeric ``targetPort`` must change: it cannot be redirected
    from the pod, and the webhook does not see Services (the ``inject`` command rewrites
    the ones in its input). Only for a named app port (the mutation already warns about
    an unnamed one)."""
    original = _port_names(pod.get("spec") or {}, injection.upstream_port)
    if not original:
        return []
    name = original[0]
    return [
        f"a Service with targetPort {injection.upstream_port} (a number) still reaches the "
        f"app, not the sidecar: use targetPort {name} (or {injection.proxy_port})"
    ]


def _port_names(spec: Mapping[str, Any], number: int | None) -> list[str]:
    """The names the pod's containers give to port ``number``."""
    names = []
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in (container.get("ports") or []) if isinstance(container, dict) else []:
            if isinstance(port, dict) and port.get("containerPort") == number and port.get("name"):
                names.append(str(port["name"]))
    return names


class _ReloadCollector:
    """``sidecar_injector_certificate_reloads_total{result}`` from the TLS context's counts."""

    def __init__(self, webhook: Webhook) -> None:
        self._webhook = webhook

    def collect(self) -> Iterable[CounterMetricFamily]:
        """Two series: loaded and failed reloads of the serving certificate."""
        tls = self._webhook.tls
        family = CounterMetricFamily(
            "sidecar_injector_certificate_reloads",
            "Changes of the TLS certificate files seen, by whether they loaded",
            labels=["result"],
        )
        family.add_metric(["ok"], float(tls.reloads if tls else 0))
        family.add_metric(["failed"], float(tls.reload_failures if tls else 0))
        yield family
        base = self._webhook.base_config
        family = CounterMetricFamily(
            "sidecar_injector_config_reloads",
            "Changes of the --sidecar-config file seen, by whether they loaded",
            labels=["result"],
        )
        family.add_metric(["ok"], float(base.reloads if base else 0))
        family.add_metric(["failed"], float(base.reload_failures if base else 0))
        yield family


WEBHOOK_KEY = web.AppKey("webhook", Webhook)


def create_webhook_app(webhook: Webhook) -> web.Application:
    """The TLS application: ``POST /mutate`` and ``POST /mutate/opt-in``."""
    app = web.Application()
    app[WEBHOOK_KEY] = webhook
    app.router.add_post(NAMESPACE_PATH, webhook.handle)
    app.router.add_post(OPT_IN_PATH, webhook.handle)
    return app


def create_health_app(webhook: Webhook, readiness: Readiness) -> web.Application:
    """The plain-HTTP application: ``/healthz``, ``/readyz``, ``/metrics``."""
    from sidecar.admin import READINESS_KEY as ADMIN_READINESS

    app = web.Application()
    app[ADMIN_READINESS] = readiness
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler(UnifiedCollector([webhook.registry])))
    return app


def webhook_config(args: argparse.Namespace, env: Mapping[str, str]) -> WebhookConfig:
    """The config from ``causality-sidecar webhook`` flags (and their environment defaults).

    Raises:
        ConfigError: naming the flag of the first problem (exit code 2).
    """

    def parsed(flag: str, parse: Any, value: Any) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise ConfigError(flag, str(exc)) from None

    image = args.image or env.get("SIDECAR_IMAGE")
    if not image:
        raise ConfigError("--image", "is required (or the SIDECAR_IMAGE environment variable)")
    if args.upstream_port is not None and not 1 <= args.upstream_port <= 65535:
        raise ConfigError("--upstream-port", f"expected 1..65535, got {args.upstream_port}")
    sidecar_config = getattr(args, "sidecar_config", None)
    admin_tls_secret = getattr(args, "admin_tls_secret", None)
    settings = InjectSettings(
        image=image,
        native=args.native,
        config_map=args.config_map,
        upstream_port=args.upstream_port,
        injector_namespace=args.namespace or env.get("POD_NAMESPACE") or None,
        base_config=read_base_config(sidecar_config) if sidecar_config else {},
        admin_tls_secret=admin_tls_secret or None,
    )
    files = TlsFiles(args.tls_cert, args.tls_key)
    return WebhookConfig(
        settings=settings,
        tls=files,
        listen=parsed("--listen", Address.parse, args.listen),
        health_listen=parsed("--health-listen", Address.parse, args.health_listen),
        max_body=parsed("--max-body", parse_size, args.max_body),
        drain_delay=parsed("--drain-delay", parse_duration, args.drain_delay),
        sidecar_config=sidecar_config or None,
    )


def load_tls(files: TlsFiles) -> ReloadingServerContext:
    """The reloading context; a ConfigError naming ``--tls-cert``/``--tls-key`` if unusable."""
    try:
        return ReloadingServerContext(files)
    except TlsFileError as exc:
        flag = "--tls-cert" if exc.field == "cert_file" else "--tls-key"
        raise ConfigError(flag, exc.problem) from None


async def run_webhook(config: WebhookConfig, tls: ReloadingServerContext) -> int:
    """Serve until SIGTERM/SIGINT; then not ready, ``drain_delay``, close; exit code."""
    base = None
    if config.sidecar_config is not None:
        try:
            base = BaseConfigFile(config.sidecar_config)
        except ConfigError as exc:  # changed since webhook_config validated it
            log.error("cannot start: %s", exc, extra={"event": "start_failed"})
            return 2
    webhook = Webhook(config.settings, config.max_body, tls, base_config=base)
    readiness = Readiness()
    serving = AiohttpComponent("webhook", create_webhook_app(webhook), [config.listen])
    serving.ssl_context = tls.context
    health = AiohttpComponent(
        "health", create_health_app(webhook, readiness), [config.health_listen]
    )
    components = [serving, health]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[AiohttpComponent] = []
    try:
        for component in components:
            await component.start()
            started.append(component)
            log.info("%s listening on %s", component.name,
                     ", ".join(str(a) for a in component.addresses),
                     extra={"event": "listening", "component": component.name})  # fmt: skip
    except OSError as exc:
        log.error("cannot start: %s", exc, extra={"event": "start_failed"})
        for component in reversed(started):
            await component.stop(0)
        return 1
    readiness.set_ready()
    log.info("ready", extra={"event": "ready"})
    await stop.wait()
    readiness.set_not_ready("draining")
    if config.drain_delay > 0:
        await asyncio.sleep(config.drain_delay)  # the documented drain delay, not a sync
    for component in components:
        await component.stop(10.0)
    log.info("stopped", extra={"event": "stopped"})
    return 0
