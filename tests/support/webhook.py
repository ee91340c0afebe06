"""A running injection webhook for tests, the admission reviews they send, and the
command-line injection to compare its patches with."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from tests.support.kubernetes import IMAGE as CORPUS_IMAGE
from tests.support.kubernetes import ROOT
from tests.support.process import SidecarProcess, free_port, http_get, run_sidecar
from tests.support.tls import Pki

REVIEWS = ROOT / "tests" / "inject" / "reviews"


IMAGE = CORPUS_IMAGE  # the image of the corpus's golden outputs (the command's)


SERVICE_NAME = "causality-sidecar-injector.causality-system.svc"


MAX_BODY = 64 * 1024


def review(name: str = "deployment-pod.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REVIEWS / name).read_text())
    return data


@dataclass
class Webhook:
    """A running webhook: where it listens and how to reach it."""

    process: SidecarProcess
    port: int
    health: int
    pki: Pki
    cert: Path

    def post(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        chunked: bool = False,
    ) -> tuple[int, bytes]:
        context = self.pki.client_context()
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=context, timeout=10
        )
        # verify the name the API server uses (the Service's DNS name), not the IP
        connection.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", self.port), timeout=10),
            server_hostname=SERVICE_NAME,
        )
        try:
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            if chunked:
                connection.request(
                    "POST", path, body=iter([body]), headers=all_headers, encode_chunked=True
                )
            else:
                connection.request("POST", path, body=body, headers=all_headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def admit(self, body: dict[str, Any], path: str = "/mutate") -> dict[str, Any]:
        status, raw = self.post(path, json.dumps(body).encode())
        assert status == 200, raw
        answer: dict[str, Any] = json.loads(raw)
        assert answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == body["request"]["uid"]
        assert answer["response"]["allowed"] is True
        return answer

    def counts(self) -> dict[str, float]:
        status, _, text = http_get(f"http://127.0.0.1:{self.health}/metrics")
        assert status == 200
        found = re.findall(
            r'^sidecar_injector_requests_total\{result="(\w+)"\} (\S+)$', text.decode(), re.M
        )
        return {result: float(value) for result, value in found}


@contextlib.contextmanager
def start_webhook(tmp: Path, pki: Pki, *extra: str) -> Iterator[Webhook]:
    pair = pki.server("webhook", SERVICE_NAME, "127.0.0.1")
    port, health = free_port(), free_port()
    args = [
        "webhook", "--listen", f"127.0.0.1:{port}", "--health-listen", f"127.0.0.1:{health}",
        "--tls-cert", str(pair.cert), "--tls-key", str(pair.key), "--image", IMAGE,
        "--namespace", "causality-system", "--max-body", str(MAX_BODY), "--drain-delay", "0.2s",
        *extra,
    ]  # fmt: skip
    with run_sidecar(args, admin=f"127.0.0.1:{health}") as process:
        yield Webhook(process, port, health, pki, pair.cert)


def cli_inject(pod: dict[str, Any], *flags: str) -> dict[str, Any]:
    """What ``causality-sidecar inject`` makes of ``pod`` (as a Pod document)."""
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "inject", "-", "--image", IMAGE, *flags],
        input=json.dumps(pod).encode(),
        capture_output=True,
        check=True,
        timeout=30,
    )
    out: dict[str, Any] = yaml.safe_load(done.stdout)
    return out


def patched(answer: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    response = answer["response"]
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(pod, ops)
    return result
