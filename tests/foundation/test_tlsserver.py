"""The reloading TLS server context (sidecar/tlsserver.py): real handshakes on loopback.

The certificate is rotated while a client keeps connecting: every handshake succeeds, and
from the rotation on the new certificate is served, without a restart.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from sidecar.tlsserver import ReloadingServerContext, TlsFileError, TlsFiles, load_context
from tests.support.tls import (
    Pki,
    SecretVolume,
    certificate_der,
    served_certificate,
    write_atomically,
)


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello\n")


async def _serve(context: ssl.SSLContext) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/", _hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
async def served(pki: Pki) -> AsyncIterator[tuple[ReloadingServerContext, int]]:
    pair = pki.server("tls")
    reloading = ReloadingServerContext(TlsFiles(str(pair.cert), str(pair.key)))
    runner, port = await _serve(reloading.context)
    yield reloading, port
    await runner.cleanup()


async def _served_der(pki: Pki, port: int) -> bytes:
    return await asyncio.to_thread(served_certificate, port, pki.client_context())


async def _poll(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_rotation_while_serving_switches_certificate_without_failed_requests(
    pki: Pki, served: tuple[ReloadingServerContext, int]
) -> None:
    reloading, port = served
    first = certificate_der(Path(reloading.files.cert_file))
    assert await _served_der(pki, port) == first

    stop = threading.Event()
    outcomes: list[str] = []

    def client_loop() -> None:  # new connections all along: each one a full handshake
        context = pki.client_context()
        while not stop.is_set():
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/", context=context, timeout=5
                ) as response:
                    outcomes.append(response.read().decode())
            except OSError as exc:
                outcomes.append(f"error: {exc}")

    thread = threading.Thread(target=client_loop)
    thread.start()
    try:
        await _poll(lambda: asyncio.sleep(0, len(outcomes) >= 5), "requests before rotation")
        rotated = pki.server("next")  # as cert-manager does: new files over the old ones
        write_atomically(Path(reloading.files.key_file), rotated.key.read_bytes())
        write_atomically(Path(reloading.files.cert_file), rotated.cert.read_bytes())
        second = certificate_der(rotated.cert)
        assert second != first

        async def new_cert_served() -> bool:
            return await _served_der(pki, port) == second

        await _poll(new_cert_served, "the rotated certificate to be served")
        count = len(outcomes)
        await _poll(lambda: asyncio.sleep(0, len(outcomes) >= count + 5), "requests after")
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)
    assert set(outcomes) == {"hello\n"}
    assert reloading.reloads >= 1
    assert reloading.reload_failures == 0


async def test_half_written_rotation_keeps_serving_the_old_certificate(
    pki: Pki, served: tuple[ReloadingServerContext, int]
) -> None:
    reloading, port = served
    first = certificate_der(Path(reloading.files.cert_file))
    rotated = pki.server("next")
    # the new certificate lands first, its key a moment later: in between nothing fits
    write_atomically(Path(reloading.files.cert_file), rotated.cert.read_bytes())
    assert await _served_der(pki, port) == first
    assert reloading.reload_failures == 1
    assert await _served_der(pki, port) == first  # not retried per handshake
    assert reloading.reload_failures == 1
    write_atomically(Path(reloading.files.key_file), rotated.key.read_bytes())
    assert await _served_der(pki, port) == certificate_der(rotated.cert)
    assert reloading.reloads == 1


async def test_client_certificate_required_refuses_a_client_without_one(
    tmp_path: Path, pki: Pki
) -> None:
    pair = pki.server("tls")
    files = TlsFiles(str(pair.cert), str(pair.key), str(pki.ca_file), client_cert_required=True)
    runner, port = await _serve(ReloadingServerContext(files).context)
    try:
        client = pki.client("prometheus")
        assert await asyncio.to_thread(
            served_certificate, port, pki.client_context(client)
        ) == certificate_der(pair.cert)
        stranger = Pki(tmp_path / "other")
        for context in (pki.client_context(), pki.client_context(stranger.client("x"))):
            with pytest.raises((ssl.SSLError, ConnectionResetError, urllib.error.URLError)):
                await asyncio.to_thread(_get, port, context)
    finally:
        await runner.cleanup()


def _get(port: int, context: ssl.SSLContext) -> bytes:
    # TLS 1.3: a refused client certificate surfaces on the first read, not in the handshake
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=context, timeout=5) as r:
        return bytes(r.read())


def test_bad_files_name_the_field(tmp_path: Path, pki: Pki) -> None:
    pair = pki.server("tls")
    other = pki.server("other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = str(tmp_path / "missing.pem")
    cases = [
        (TlsFiles(missing, str(pair.key)), "cert_file", "cannot read"),
        (TlsFiles(str(garbage), str(pair.key)), "cert_file", "no PEM certificate"),
        (TlsFiles(str(pair.cert), missing), "key_file", "cannot read"),
        (TlsFiles(str(pair.cert), str(garbage)), "key_file", "no PEM private key"),
        (TlsFiles(str(pair.cert), str(other.key)), "key_file", "not the private key"),
        (TlsFiles(str(pair.cert), str(pair.key), str(garbage)), "client_ca_file", "no PEM"),
        (TlsFiles(str(pair.cert), str(pair.key), missing), "client_ca_file", "cannot read"),
    ]
    for files, field, text in cases:
        with pytest.raises(TlsFileError) as caught:
            load_context(files)
        assert (caught.value.field, text in caught.value.problem) == (field, True), caught.value


async def test_a_rotated_client_ca_is_trusted_from_then_on(tmp_path: Path, pki: Pki) -> None:
    pair = pki.server("tls")
    ca_file = tmp_path / "client-ca.pem"
    old_clients = Pki(tmp_path / "old-clients")
    write_atomically(ca_file, old_clients.ca_file.read_bytes())
    files = TlsFiles(str(pair.cert), str(pair.key), str(ca_file), client_cert_required=True)
    runner, port = await _serve(ReloadingServerContext(files).context)
    try:
        old = pki.client_context(old_clients.client("prometheus"))
        assert await asyncio.to_thread(_get, port, old) == b"hello\n"
        new_clients = Pki(tmp_path / "new-clients")
        write_atomically(ca_file, new_clients.ca_file.read_bytes())
        new = pki.client_context(new_clients.client("prometheus"))
        assert await asyncio.to_thread(_get, port, new) == b"hello\n"
        with pytest.raises((ssl.SSLError, ConnectionResetError, urllib.error.URLError)):
            await asyncio.to_thread(_get, port, old)
    finally:
        await runner.cleanup()


async def test_a_secret_volume_update_is_picked_up(tmp_path: Path, pki: Pki) -> None:
    """The kubelet's way: the file names are symlinks that never change; ..data swaps."""
    volume = SecretVolume(tmp_path / "tls")
    first, second = pki.server("first"), pki.server("second")
    volume.write({"tls.crt": first.cert.read_bytes(), "tls.key": first.key.read_bytes()})
    files = TlsFiles(str(volume.path("tls.crt")), str(volume.path("tls.key")))
    reloading = ReloadingServerContext(files)
    runner, port = await _serve(reloading.context)
    try:
        assert await _served_der(pki, port) == certificate_der(first.cert)
        volume.write({"tls.crt": second.cert.read_bytes(), "tls.key": second.key.read_bytes()})
        assert await _served_der(pki, port) == certificate_der(second.cert)
        assert (reloading.reloads, reloading.reload_failures) == (1, 0)
    finally:
        await runner.cleanup()
