"""TLS to an ``https://`` upstream (``proxy.upstream_tls``).

Verification is on by default, against the system's CA store; ``ca_file`` trusts that
PEM bundle instead; ``server_name`` is the name sent in SNI and verified in the
certificate (default: the URL's host); ``insecure_skip_verify`` encrypts without
verifying anything (a warning is logged at start). The pool and the WebSocket relay use
the same context, so both speak TLS the same way.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from sidecar.config import ProxyConfig

__all__ = ["UpstreamTls", "upstream_tls"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """The client context and the name to send (SNI) and verify."""

    context: ssl.SSLContext
    server_hostname: str


def upstream_tls(proxy: ProxyConfig) -> UpstreamTls | None:
    """The TLS settings for ``proxy.upstream``; None for an ``http://`` upstream."""
    parts = urlsplit(proxy.upstream)
    if parts.scheme != "https":
        return None
    options = proxy.upstream_tls
    context = ssl.create_default_context(cafile=options.ca_file)
    if options.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        log.warning(
            "proxy.upstream_tls.insecure_skip_verify is true: the upstream's certificate "
            "is not verified (traffic is encrypted, but to whoever answers)",
            extra={"event": "upstream_tls_insecure"},
        )
    context.set_alpn_protocols(["http/1.1"])
    return UpstreamTls(context, options.server_name or parts.hostname or "")
