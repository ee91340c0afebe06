"""The listener lifecycle every component follows, and an aiohttp implementation of it.

Start: every component binds its listeners, then the sidecar is ready. Stop (design §10):
readiness drops, the proxy serves on for the drain delay, then every component stops
accepting, in-flight work gets the drain timeout, then resources are released.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Sequence
from typing import Protocol

from aiohttp import web

from sidecar.config import Address

__all__ = ["AiohttpComponent", "Component", "StartError", "bind_problem", "bound_addresses"]

log = logging.getLogger(__name__)


class Component(Protocol):
    """A listener-owning part of the sidecar (proxy, ingest, admin)."""

    name: str

    async def start(self) -> None:
        """Bind every listener; raise OSError when an address cannot be bound."""

    @property
    def addresses(self) -> Sequence[Address]:
        """The addresses actually bound (ports resolved when 0 was asked for)."""

    @property
    def in_flight(self) -> int:
        """Requests currently being served."""

    async def stop(self, drain_timeout: float) -> int:
        """Stop accepting, wait up to ``drain_timeout`` for in-flight work, release all.

        Returns:
            How many in-flight requests were cut when the timeout ran out.
        """


class StartError(Exception):
    """A listener could not be bound; the message names the component and the key.

    ``cannot start admin: address 0.0.0.0:9464 is in use (admin.listen)``
    """

    def __init__(self, component: str, address: Address | str, key: str, exc: OSError) -> None:
        self.component = component
        self.key = key
        super().__init__(f"cannot start {component}: address {address} {bind_problem(exc)} ({key})")


_BIND_PROBLEMS = {
    errno.EADDRINUSE: "is in use",
    errno.EACCES: "is not allowed (permission denied: ports below 1024 need root or "
    "CAP_NET_BIND_SERVICE)",
    errno.EADDRNOTAVAIL: "is not an address of this host",
}


def bind_problem(exc: OSError) -> str:
    """Why a bind failed, said short: ``is in use``, ``is not an address of this host``."""
    if isinstance(exc, socket.gaierror):
        return f"cannot be resolved ({exc.strerror or exc})"
    known = _BIND_PROBLEMS.get(exc.errno or 0)
    if known is not None:
        return known
    return f"cannot be bound ({exc.strerror or exc})"


def bound_addresses(runner: web.BaseRunner) -> list[Address]:
    """The (host, port) pairs a runner's sites are listening on."""
    out: list[Address] = []
    for server in runner.sites:
        sock_server = getattr(server, "_server", None)
        for sock in getattr(sock_server, "sockets", None) or ():
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                host, port = sock.getsockname()[:2]
                out.append(Address(host, port))
    return out


class AiohttpComponent:
    """A component that serves one `web.Application` on one or more addresses."""

    # TLS on every listener when set before `start` (a sidecar.tlsserver context)
    ssl_context: ssl.SSLContext | None = None

    def __init__(
        self,
        name: str,
        app: web.Application,
        listen: Sequence[Address],
        *,
        optional_listen: Sequence[Address] = (),
        **runner_kwargs: object,
    ) -> None:
        self.name = name
        self.app = app
        self._listen = list(listen)
        self._optional = list(optional_listen)
        self._runner = web.AppRunner(app, handle_signals=False, **runner_kwargs)  # type: ignore[arg-type]

    async def start(self) -> None:
        """Bind the required addresses (errors propagate) and the optional ones (logged)."""
        await self._runner.setup()
        for address in self._listen:
            await web.TCPSite(
                self._runner,
                address.host,
                address.port,
                reuse_address=True,
                ssl_context=self.ssl_context,
            ).start()
        for address in self._optional:
            try:
                await web.TCPSite(
                    self._runner, address.host, address.port, ssl_context=self.ssl_context
                ).start()
            except OSError as exc:
                log.info("%s: optional listener %s not bound: %s", self.name, address, exc)

    @property
    def addresses(self) -> list[Address]:
        """Bound addresses."""
        return bound_addresses(self._runner)

    @property
    def in_flight(self) -> int:
        """Not counted: admin and ingest requests are short (the drain waits for them anyway)."""
        return 0

    async def stop(self, drain_timeout: float) -> int:
        """AppRunner.cleanup closes listeners, waits for handlers, then cancels them."""
        # aiohttp reads the runner's shutdown timeout at cleanup; it is set per stop here
        # because a config reload may have changed it since construction.
        # not 0: aiohttp's ceil_timeout(0) means "no timeout at all"
        self._runner._shutdown_timeout = max(drain_timeout, 0.001)
        try:
            await asyncio.wait_for(self._runner.cleanup(), drain_timeout + 5)
        except TimeoutError:
            log.warning("%s: cleanup did not finish within the drain timeout", self.name)
        return 0
