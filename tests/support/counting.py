"""An upstream that counts what reached it (fixture ``counting_app``), so a test can
assert that nothing arrived that should not have. Used by the adversarial tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web

COUNTS = web.AppKey("counts", Counter[str])
BODIES = web.AppKey("bodies", Counter[bytes])
SEEN_HEADERS = web.AppKey("seen_headers", list[list[tuple[str, str]]])


@dataclass
class CountingApp:
    """An upstream that records every request it served."""

    url: str
    app: web.Application

    @property
    def total(self) -> int:
        """Requests that reached the app."""
        return sum(self.app[COUNTS].values())

    @property
    def bodies(self) -> Counter[bytes]:
        """How many times each POST body arrived."""
        return self.app[BODIES]

    @property
    def headers(self) -> list[list[tuple[str, str]]]:
        """The raw headers of every request, in arrival order."""
        return self.app[SEEN_HEADERS]


async def _any(request: web.Request) -> web.Response:
    body = await request.read()
    request.app[COUNTS][request.method] += 1
    request.app[SEEN_HEADERS].append(
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
    )
    if request.method == "POST":
        request.app[BODIES][body] += 1
    return web.Response(text=f"ok {len(body)}\n")


def counting_application() -> web.Application:
    """The counting app (any method, any path)."""
    app = web.Application(client_max_size=2**24)
    app[COUNTS] = Counter()
    app[BODIES] = Counter()
    app[SEEN_HEADERS] = []
    app.router.add_route("*", "/{tail:.*}", _any)
    return app


@pytest.fixture
async def counting_app(aiohttp_server) -> Callable[..., Awaitable[CountingApp]]:
    """Factory: start a counting app on loopback (server kwargs passed to aiohttp)."""

    async def start(**server_kwargs: object) -> CountingApp:
        app = counting_application()
        server = await aiohttp_server(app, **server_kwargs)
        return CountingApp(f"http://127.0.0.1:{server.port}", app)

    return start
