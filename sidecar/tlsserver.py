"""A TLS server context that picks up a rotated certificate without a restart.

Used by the injection webhook (``--tls-cert``/``--tls-key``) and by the admin listener
(``admin.tls.*``). On every handshake (the server-name callback OpenSSL calls for every
ClientHello) the files' identity is compared (one ``stat`` each) and, when it changed, a
fresh context is loaded and swapped in; a half-written rotation keeps the running context
and logs one warning. Every context has the same verify mode. Docs: docs/security.md.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ReloadingServerContext", "TlsFileError", "TlsFiles", "file_identity"]

log = logging.getLogger(__name__)

FileIdentity = tuple[int, int, int, int] | None


class TlsFileError(ValueError):
    """A certificate, key or CA file that cannot be used; ``field`` names which."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the server's certificate chain, key and (for mutual TLS) client CAs are.

    With ``client_ca_file`` a client may present a certificate, which must then verify
    against those CAs; ``client_cert_required`` makes the handshake fail without one.
    The admin listener leaves it optional at the handshake (kubelet probes present none)
    and requires it per path (`sidecar.admin.client_cert_auth`).
    """

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_cert_required: bool = False


def file_identity(path: str) -> FileIdentity:
    """(device, inode, size, mtime) of ``path`` after symlinks; None when it is missing.
    Also how the injector notices a changed base config (sidecar.inject.baseconfig)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _require_pem(path: str, field: str, marker: str, what: str) -> None:
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise TlsFileError(field, f"cannot read file {path!r}: {exc.strerror or exc}") from None
    if marker.encode() not in text:
        raise TlsFileError(field, f"file {path!r} holds no PEM {what} ({marker} not found)")


def load_context(files: TlsFiles) -> ssl.SSLContext:
    """A fresh server context from ``files``: TLS 1.2+, HTTP/1.1 ALPN.

    Raises:
        TlsFileError: naming the field (``cert_file``, ``key_file``, ``client_ca_file``)
            whose file is missing, not PEM, or does not fit (a key of another certificate).
    """
    _require_pem(files.cert_file, "cert_file", "-----BEGIN CERTIFICATE-----", "certificate")
    _require_pem(files.key_file, "key_file", "PRIVATE KEY-----", "private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(files.cert_file, files.key_file)
    except ssl.SSLError as exc:
        raise TlsFileError(
            "key_file",
            f"{files.key_file!r} is not the private key of the certificate in "
            f"{files.cert_file!r} (or a file is not valid PEM): {exc.reason or exc}",
        ) from None
    if files.client_ca_file is not None:
        path = files.client_ca_file
        _require_pem(path, "client_ca_file", "-----BEGIN CERTIFICATE-----", "certificate")
        try:
            context.load_verify_locations(cafile=path)
        except ssl.SSLError as exc:
            raise TlsFileError(
                "client_ca_file", f"{path!r} is not a valid PEM CA bundle: {exc.reason or exc}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED if files.client_cert_required else ssl.CERT_OPTIONAL
    return context


class ReloadingServerContext:
    """The server context to hand to ``TCPSite(ssl_context=...)``; reloads on file change.

    Counts are kept for the owner's metrics: ``reloads`` (a changed set of files loaded)
    and ``reload_failures`` (a changed set that did not load; the previous one kept).
    """

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._paths = tuple(
            p for p in (files.cert_file, files.key_file, files.client_ca_file) if p is not None
        )
        self._seen = self._identities()
        self._current = load_context(files)  # raises TlsFileError: the caller says which flag
        self.context = load_context(files)  # the listening one; its callback swaps per handshake
        self.context.sni_callback = self._on_client_hello
        self.reloads = 0
        self.reload_failures = 0

    def _identities(self) -> tuple[FileIdentity, ...]:
        return tuple(file_identity(p) for p in self._paths)

    def current(self) -> ssl.SSLContext:
        """The context new handshakes get: reloaded first if the files changed."""
        seen = self._identities()
        if seen != self._seen:
            self._seen = seen  # a failed load is retried on the next change, not per handshake
            try:
                self._current = load_context(self.files)
            except TlsFileError as exc:
                self.reload_failures += 1
                log.warning(
                    "TLS files changed but cannot be loaded, still serving the previous "
                    "certificate: %s: %s",
                    exc.field,
                    exc.problem,
                    extra={"event": "tls_reload_failed"},
                )
            else:
                self.reloads += 1
                log.info(
                    "TLS certificate reloaded from %s",
                    self.files.cert_file,
                    extra={"event": "tls_reloaded"},
                )
        return self._current

    def _on_client_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: object
    ) -> None:
        connection.context = self.current()
