"""The admin listener: ``/metrics``, ``/healthz``, ``/readyz`` (design §5).

``/metrics`` serves one collector (the unified view of every source) with content
negotiation and gzip (`sidecar.unified.metrics_handler`). When ``admin.bearer_token_file`` is set,
``/metrics`` (and any other page registered as protected) needs that bearer token; the
comparison is constant-time. Probes stay open: kubelet sends no token.

With ``admin.tls`` the listener speaks HTTPS (`admin_tls`: the certificate is re-read when
its files change); with ``admin.tls.client_ca_file`` the same protected paths need a client
certificate signed by those CAs (mutual TLS, Prometheus ``tls_config``). The handshake
only asks for one, so kubelet probes, which present none, still reach ``/healthz`` and
``/readyz``; a certificate that is presented must verify, or the handshake fails.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field

from aiohttp import hdrs, web
from prometheus_client.registry import Collector

from sidecar.config import AdminConfig, ConfigError, read_token_file
from sidecar.tlsserver import ReloadingServerContext, TlsFileError, TlsFiles
from sidecar.unified import Handler, ScrapeSources, UnifiedCollector, metrics_handler

__all__ = [
    "READINESS_KEY",
    "Readiness",
    "admin_tls",
    "create_admin_app",
    "read_bearer_token",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Readiness:
    """Whether the sidecar wants traffic: ready after start, not ready from SIGTERM on."""

    ready: bool = False
    reasons: list[str] = field(default_factory=list)

    def set_ready(self) -> None:
        """Listeners are up."""
        self.ready = True
        self.reasons.clear()

    def set_not_ready(self, reason: str) -> None:
        """Stop advertising readiness (e.g. draining)."""
        self.ready = False
        self.reasons.append(reason)


READINESS_KEY = web.AppKey("readiness", Readiness)
TOKEN_KEY = web.AppKey("bearer_token", bytes)
PROTECTED_KEY = web.AppKey("protected_paths", set[str])
CLIENT_CERT_KEY = web.AppKey("client_cert_required", bool)


def admin_tls(config: AdminConfig) -> ReloadingServerContext | None:
    """The admin listener's TLS context (None without ``admin.tls``).

    Raises:
        ConfigError: naming ``admin.tls.<file>`` when a file cannot be used.
    """
    tls = config.tls
    if tls.cert_file is None or tls.key_file is None:
        return None
    try:
        return ReloadingServerContext(TlsFiles(tls.cert_file, tls.key_file, tls.client_ca_file))
    except TlsFileError as exc:
        raise ConfigError(f"admin.tls.{exc.field}", exc.problem) from None


def read_bearer_token(path: str) -> bytes:
    """The token in ``path``, stripped of surrounding whitespace; a ConfigError if unusable."""
    return read_token_file(path, "admin.bearer_token_file")


def _authorized(request: web.Request, token: bytes) -> bool:
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    # compare_digest on equal-length inputs is constant-time; it is called on every path
    # (also a missing or non-Bearer header) so the answer time does not tell why it failed.
    ok = hmac.compare_digest(given.strip().encode(), token)
    return ok and scheme.lower() == "bearer"


@web.middleware
async def client_cert_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 on protected paths without a verified client certificate (mutual TLS)."""
    if request.app.get(CLIENT_CERT_KEY) and request.path in request.app[PROTECTED_KEY]:
        transport = request.transport
        if transport is None or not transport.get_extra_info("peercert"):
            return web.Response(
                status=403, text="403 Forbidden: a client certificate is required (mutual TLS)\n"
            )
    return await handler(request)


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 on protected paths without the right bearer token."""
    token = request.app.get(TOKEN_KEY)
    if token and request.path in request.app[PROTECTED_KEY] and not _authorized(request, token):
        return web.Response(
            status=401,
            text="401 Unauthorized: a valid bearer token is required\n",
            headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="causality-sidecar"'},
        )
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    """200 while the event loop answers."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """200 when listeners are up; 503 once draining."""
    readiness = request.app[READINESS_KEY]
    if readiness.ready:
        return web.Response(text="ready\n")
    reason = readiness.reasons[-1] if readiness.reasons else "starting"
    return web.Response(status=503, text=f"not ready: {reason}\n")


def create_admin_app(
    config: AdminConfig,
    collector: Collector,
    readiness: Readiness,
    *,
    extra: ScrapeSources | None = None,
) -> web.Application:
    """The admin application.

    Args:
        config: the ``admin`` section.
        collector: what ``/metrics`` serves (the unified view; any other collector is
            served as the only source of one).
        readiness: shared with the lifecycle, which flips it.
        extra: the sources fetched for each scrape (`sidecar.merge.merge_sources`).
    """
    unified = (
        collector if isinstance(collector, UnifiedCollector) else UnifiedCollector([collector])
    )
    app = web.Application(middlewares=[client_cert_auth, bearer_auth])
    app[READINESS_KEY] = readiness
    app[PROTECTED_KEY] = {config.metrics_path}
    app[CLIENT_CERT_KEY] = config.tls.client_ca_file is not None
    if config.bearer_token_file:
        app[TOKEN_KEY] = read_bearer_token(config.bearer_token_file)
    app.router.add_get(config.metrics_path, metrics_handler(unified, extra))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
