"""A real TLS upstream on loopback: nginx with a certificate signed by a test CA.

Certificates come from the ``openssl`` CLI (a test CA, and a server certificate for
``upstream.test`` and ``127.0.0.1``). nginx (Debian's) terminates TLS on one port and
serves a static file itself; every other path it proxies to a plain-HTTP app (the test's
aiohttp upstream), WebSocket upgrades included. It says what TLS it saw in response
headers (``X-TLS-Protocol``, ``X-TLS-SNI``, ``X-Conn-Requests``). A second port serves
plain HTTP only, for the "https:// in front of a plain server" case.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import nginx
from tests.support.process import free_port
from tests.support.prometheus import require_tool

SERVER_NAME = "upstream.test"

NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {dir}/server.pem;
    ssl_certificate_key {dir}/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    client_max_body_size 0;
    add_header X-TLS-Protocol $ssl_protocol always;
    add_header X-TLS-SNI $ssl_server_name always;
    add_header X-Conn-Requests $connection_requests always;
    location = /static {{
      default_type application/octet-stream;
      alias {dir}/static.bin;
    }}
    location = /metrics.txt {{
      default_type text/plain;
      alias {dir}/metrics.txt;
    }}
    location / {{
      proxy_pass http://127.0.0.1:{app_port};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
  server {{
    listen 127.0.0.1:{plain_port};
    location / {{ default_type text/plain; return 200 "plain http\\n"; }}
  }}
}}
"""

SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:{name}, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True)
class Certificates:
    """PEM files: the test CA, and the server's certificate and key."""

    ca: Path
    server_cert: Path
    server_key: Path


def make_certificates(directory: Path) -> Certificates:
    """A test CA and a server certificate for ``upstream.test`` and 127.0.0.1 it signed."""
    openssl = require_tool("openssl", "openssl")
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text(SERVER_EXTENSIONS.format(name=SERVER_NAME))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=causality-sidecar test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={SERVER_NAME}"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", extensions],
    ]  # fmt: skip
    for command in commands:
        subprocess.run([str(c) for c in command], check=True, capture_output=True, timeout=30)
    return Certificates(ca, cert, key)


@dataclass(frozen=True)
class TlsUpstream:
    """nginx serving TLS on ``tls_port`` (and plain HTTP on ``plain_port``)."""

    tls_port: int
    plain_port: int
    certificates: Certificates
    static: bytes

    @property
    def https_url(self) -> str:
        """The TLS port as an ``https://`` URL on 127.0.0.1."""
        return f"https://127.0.0.1:{self.tls_port}"


@contextlib.contextmanager
def running_nginx(
    directory: Path, app_port: int, static: bytes, metrics: str = ""
) -> Iterator[TlsUpstream]:
    """nginx with fresh certificates in ``directory``, in front of ``app_port``."""
    certificates = make_certificates(directory)
    (directory / "static.bin").write_bytes(static)
    (directory / "metrics.txt").write_text(metrics)
    tls_port, plain_port = free_port(), free_port()
    conf = NGINX_CONF.format(
        user="user root;" if os.geteuid() == 0 else "",  # workers read the test's files
        dir=directory,
        tls_port=tls_port,
        plain_port=plain_port,
        app_port=app_port,
    )
    with nginx.running_nginx(directory, conf, (tls_port, plain_port)):
        yield TlsUpstream(tls_port, plain_port, certificates, static)
