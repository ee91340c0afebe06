"""The demo upstream: a small aiohttp app standing in for the pod's application.

Routes: ``/`` (hello), ``/users/{id}`` (JSON; ids above 1000 are 404), ``/slow``
(answers after ``?ms=`` milliseconds, default 200), ``/error`` (500), ``/stream`` (a
few server-sent events), ``/echo`` (POST: the body back) and the Causality gateway's two
ingest routes, answered as the gateway does (`sidecar.demo.gateway`).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from sidecar.demo.gateway import add_gateway_routes

__all__ = ["create_demo_app"]

MAX_SLOW_MS = 10_000
MAX_BODY_BYTES = 8 * 2**20  # room for 1000-event batches


async def index(request: web.Request) -> web.Response:
    """A plain greeting."""
    return web.Response(text="hello from the demo app\n")


async def user(request: web.Request) -> web.Response:
    """A JSON user, 404 above id 1000, 400 for a non-numeric id."""
    raw = request.match_info["id"]
    if not raw.isdigit():
        return web.json_response({"error": "id must be a number"}, status=400)
    if int(raw) > 1000:
        return web.json_response({"error": "no such user"}, status=404)
    return web.json_response({"id": int(raw), "name": f"user-{raw}"})


async def slow(request: web.Request) -> web.Response:
    """Answers after ?ms= milliseconds (bounded)."""
    try:
        ms = min(int(request.query.get("ms", "200")), MAX_SLOW_MS)
    except ValueError:
        return web.Response(status=400, text="ms must be an integer\n")
    await asyncio.sleep(ms / 1000)  # the route's purpose is to be slow
    return web.Response(text=f"slept {ms} ms\n")


async def error(request: web.Request) -> web.Response:
    """Always 500."""
    return web.Response(status=500, text="demo failure\n")


async def echo(request: web.Request) -> web.StreamResponse:
    """Streams the request body back with the request's content type."""
    response = web.StreamResponse()
    response.content_type = request.content_type
    await response.prepare(request)
    async for chunk in request.content.iter_any():
        await response.write(chunk)
    await response.write_eof()
    return response


async def stream(request: web.Request) -> web.StreamResponse:
    """Five server-sent events, 100 ms apart."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for i in range(5):
        await response.write(f"id: {i}\ndata: {json.dumps({'tick': i})}\n\n".encode())
        await asyncio.sleep(0.1)  # the stream's pacing
    await response.write_eof()
    return response


def create_demo_app() -> web.Application:
    """The demo application (the gateway's event routes are added when available)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/", index)
    app.router.add_get("/users/{id}", user)
    app.router.add_get("/slow", slow)
    app.router.add_get("/error", error)
    app.router.add_get("/stream", stream)
    app.router.add_post("/echo", echo)
    add_gateway_routes(app)  # POST /v1/events/ingest and /v1/events/batch, as the gateway
    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m sidecar.demo [HOST:PORT]``: serve the demo app alone (for tests)."""
    import sys

    from sidecar.config import Address

    address = Address.parse((argv if argv is not None else sys.argv[1:] or ["127.0.0.1:8080"])[0])
    web.run_app(create_demo_app(), host=address.host, port=address.port, print=None)
