"""Throwaway certificates for TLS tests (trustme), written as PEM files.

A `Pki` is one CA in a directory: `server` writes a serving certificate and key,
`client` a client certificate (for mutual TLS), `ca_file` the CA's PEM; `client_context`
is an ``ssl`` client context trusting only that CA (optionally presenting a client cert).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate chain file and its key file."""

    cert: Path
    key: Path


@dataclass
class Pki:
    """One CA and the files issued by it, under ``directory``."""

    directory: Path
    name: str = "ca"
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM)."""
        return self.directory / f"{self.name}.pem"

    def server(self, stem: str, *hostnames: str) -> KeyPair:
        """A serving certificate for ``hostnames`` (default 127.0.0.1 and localhost)."""
        issued = self.ca.issue_cert(*(hostnames or ("127.0.0.1", "localhost")))
        return self._write(issued, stem)

    def client(self, stem: str, common_name: str = "prometheus") -> KeyPair:
        """A client certificate (its CN and a DNS SAN are ``common_name``)."""
        issued = self.ca.issue_cert(common_name, common_name=common_name)
        return self._write(issued, stem)

    def _write(self, issued: trustme.LeafCert, stem: str) -> KeyPair:
        pair = KeyPair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        write_atomically(pair.cert, b"".join(p.bytes() for p in issued.cert_chain_pems))
        write_atomically(pair.key, issued.private_key_pem.bytes())
        return pair

    def client_context(self, client: KeyPair | None = None) -> ssl.SSLContext:
        """A client context trusting this CA only; presenting ``client`` when given."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key))
        return context


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` the way a Secret volume update does: a new file renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def served_certificate(port: int, context: ssl.SSLContext, host: str = "127.0.0.1") -> bytes:
    """The DER certificate a TLS server on ``host:port`` presents (verified by ``context``)."""
    import socket

    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def certificate_der(path: Path) -> bytes:
    """The DER of the first certificate in a PEM file."""
    pem = path.read_text(encoding="ascii")
    first = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


class SecretVolume:
    """A directory written the way the kubelet's AtomicWriter updates a Secret volume.

    Each update is a new timestamped directory; ``..data`` is a symlink to it, swapped by
    renaming a fresh symlink over it; every key is a symlink ``KEY -> ..data/KEY`` made once.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._generation = 0

    def path(self, key: str) -> Path:
        """Where a container reads ``key``."""
        return self.directory / key

    def write(self, files: dict[str, bytes]) -> None:
        """Publish ``files`` (key -> content) as one update."""
        self._generation += 1
        target = self.directory / f"..2026_12_07_10_00_00.{self._generation:06d}"
        target.mkdir()
        for key, data in files.items():
            (target / key).write_bytes(data)
        tmp = self.directory / "..data_tmp"
        tmp.symlink_to(target.name)
        os.replace(tmp, self.directory / "..data")
        for key in files:
            link = self.directory / key
            if not link.is_symlink():
                link.symlink_to(f"..data/{key}")
