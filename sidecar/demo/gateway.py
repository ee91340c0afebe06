"""A stand-in for the Causality gateway's ingest routes, and a client trickling events.

`add_gateway_routes` adds ``POST /v1/events/ingest`` and ``POST /v1/events/batch`` to an
aiohttp application, answering as the gateway does (protobuf JSON mapping or binary,
deduplication on the idempotency key, IDs, rejections, gRPC-gateway style errors).
`send_event_trickle` posts a mix of single events and batches, retries and events without
a key, through the proxy until told to stop, so every event metric shows on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import aiohttp
from aiohttp import hdrs, web
from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from sidecar.config import EventsConfig
from sidecar.demo import samples
from sidecar.events.codec import (
    MAX_BATCH_EVENTS,
    PAYLOAD_TYPES,
    DecodeError,
    Encoding,
    encoding_of,
)
from sidecar.gen.causality.v1 import events_pb2, service_pb2

__all__ = [
    "GATEWAY",
    "GatewayState",
    "add_gateway_routes",
    "create_gateway_app",
    "send_event_trickle",
    "uuid7",
]

PROTOBUF = "application/x-protobuf"
TRICKLE_INTERVAL_S = 0.5
GATEWAY_DEDUP_KEYS = 10_000


@dataclass
class GatewayState:
    """What the stand-in gateway remembers: seen idempotency keys and the bodies it got."""

    seen_keys: OrderedDict[str, str] = field(default_factory=OrderedDict)  # key -> event id
    bodies: list[bytes] = field(default_factory=list)  # as received, for tests
    keep_bodies: bool = False


GATEWAY = web.AppKey("causality_gateway", GatewayState)


def uuid7() -> str:
    """A UUID version 7 (Unix milliseconds, then random bits), as the gateway assigns."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def add_gateway_routes(app: web.Application, config: EventsConfig | None = None) -> None:
    """Register the two ingest routes (paths from `config`, default the gateway's)."""
    config = config or EventsConfig()
    app[GATEWAY] = GatewayState()
    app.router.add_post(config.ingest_path, ingest_event)
    app.router.add_post(config.batch_path, ingest_event_batch)


def create_gateway_app(*, keep_bodies: bool = False) -> web.Application:
    """An application with just the two routes (for tests and benchmarks)."""
    app = web.Application(client_max_size=64 * 2**20)
    add_gateway_routes(app)
    app[GATEWAY].keep_bodies = keep_bodies
    return app


class BadRequest(Exception):
    """A body the gateway refuses as a whole."""


class UnsupportedMediaType(Exception):
    """A Content-Type that is neither JSON nor protobuf."""


def _is_binary(request: web.Request) -> bool:
    # aiohttp's request.content_type says application/octet-stream when the header is
    # absent; the gateway reads an absent Content-Type as JSON, so look at the header.
    try:
        return encoding_of(request.headers.get(hdrs.CONTENT_TYPE)) is Encoding.PROTOBUF
    except DecodeError as exc:
        raise UnsupportedMediaType(str(exc)) from exc


async def _parse(request: web.Request, message: Message) -> bytes:
    body = await request.read()
    state = request.app[GATEWAY]
    if state.keep_bodies:
        state.bodies.append(body)
    binary = _is_binary(request)
    try:
        if binary:
            message.ParseFromString(body)
        else:
            json_format.Parse(body, message, ignore_unknown_fields=True)
    except (ProtobufDecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        raise BadRequest(f"invalid body: {exc}") from exc
    return body


def _answer(request: web.Request, message: Message, status: int = 200) -> web.Response:
    if _is_binary(request):  # the request's own encoding (already checked by _parse)
        body = message.SerializeToString()
        response = web.Response(status=status, body=body, content_type=PROTOBUF)
    else:
        response = web.json_response(json_format.MessageToDict(message), status=status)
    if "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, ""):
        response.enable_compression(web.ContentCoding.gzip)
    return response


def _error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"code": 3, "message": message}, status=status)  # INVALID_ARGUMENT


def _unsupported(exc: UnsupportedMediaType) -> web.Response:
    return _error(f"unsupported content type: {exc}", status=415)


def _accept(state: GatewayState, event: events_pb2.EventEnvelope) -> service_pb2.EventResult:
    """Store (here: remember) one event and say what became of it."""
    if not event.WhichOneof("payload"):
        return service_pb2.EventResult(
            status=service_pb2.EVENT_STATUS_REJECTED, error="payload is required"
        )
    key = event.idempotency_key
    if key and key in state.seen_keys:
        return service_pb2.EventResult(
            event_id=state.seen_keys[key], status=service_pb2.EVENT_STATUS_DUPLICATE
        )
    event_id = event.id or uuid7()
    if key:
        state.seen_keys[key] = event_id
        if len(state.seen_keys) > GATEWAY_DEDUP_KEYS:
            state.seen_keys.popitem(last=False)
    return service_pb2.EventResult(event_id=event_id, status=service_pb2.EVENT_STATUS_ACCEPTED)


async def ingest_event(request: web.Request) -> web.Response:
    """``POST /v1/events/ingest``: one `IngestEventRequest`."""
    message = service_pb2.IngestEventRequest()
    try:
        await _parse(request, message)
    except BadRequest as exc:
        return _error(str(exc))
    except UnsupportedMediaType as exc:
        return _unsupported(exc)
    if not message.HasField("event"):
        return _error("event is required")
    result = _accept(request.app[GATEWAY], message.event)
    if result.status == service_pb2.EVENT_STATUS_REJECTED:
        return _error(result.error)
    return _answer(
        request, service_pb2.IngestEventResponse(event_id=result.event_id, status=result.status)
    )


async def ingest_event_batch(request: web.Request) -> web.Response:
    """``POST /v1/events/batch``: 1 to 1000 events, each accepted or rejected."""
    message = service_pb2.IngestEventBatchRequest()
    try:
        await _parse(request, message)
    except BadRequest as exc:
        return _error(str(exc))
    except UnsupportedMediaType as exc:
        return _unsupported(exc)
    if not 1 <= len(message.events) <= MAX_BATCH_EVENTS:
        return _error(f"a batch holds 1 to {MAX_BATCH_EVENTS} events")
    state = request.app[GATEWAY]
    response = service_pb2.IngestEventBatchResponse()
    for index, event in enumerate(message.events):
        result = _accept(state, event)
        result.index = index
        response.results.append(result)
        if result.status == service_pb2.EVENT_STATUS_REJECTED:
            response.rejected_count += 1
        else:
            response.accepted_count += 1
    return _answer(request, response)


# ----------------------------------------------------------------------- the client


class _Trickle:
    """Builds the demo's event requests: new events, retries, no-key and no-payload ones."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._sent: list[events_pb2.EventEnvelope] = []
        self._seed = 0

    def _event(self) -> events_pb2.EventEnvelope:
        rng = self._rng
        if self._sent and rng.random() < 0.15:  # an SDK retry: same event, same key
            return rng.choice(self._sent)
        self._seed += 1
        roll = rng.random()
        kind = None if roll < 0.03 else rng.choice(PAYLOAD_TYPES)
        key = "" if roll > 0.95 else None
        event = samples.envelope(kind, idempotency_key=key, seed=self._seed)
        self._sent = [*self._sent[-49:], event]
        return event

    def request(self) -> tuple[str, bytes, str]:
        """(route, body, content type) of the next request."""
        binary = self._rng.random() < 0.3
        encoding = "protobuf" if binary else self._rng.choice(("json", "json-names"))
        content_type = PROTOBUF if binary else "application/json"
        if self._rng.random() < 0.4:
            return "ingest", samples.ingest_body(self._event(), encoding), content_type
        events = [self._event() for _ in range(self._rng.randint(2, 20))]
        return "batch", samples.batch_body(events, encoding), content_type


async def send_event_trickle(
    proxy_url: str,
    stop_event: asyncio.Event,
    *,
    config: EventsConfig | None = None,
    interval: float = TRICKLE_INTERVAL_S,
    seed: int | None = None,
) -> int:
    """POST events through the proxy every `interval` seconds until `stop_event` is set.

    Returns:
        The number of requests that got an answer.
    """
    config = config or EventsConfig()
    paths = {"ingest": config.ingest_path, "batch": config.batch_path}
    trickle = _Trickle(random.Random(seed))  # noqa: S311 - demo traffic, not crypto
    answered = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop_event.is_set():
            route, body, content_type = trickle.request()
            headers = {"Content-Type": content_type}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.post(proxy_url + paths[route], data=body, headers=headers) as r:
                    await r.read()
                    answered += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), interval)
    return answered


def _main() -> None:  # pragma: no cover - manual use: python -m sidecar.demo.gateway PORT
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    print(json.dumps({"gateway": f"http://127.0.0.1:{port}"}))
    web.run_app(create_gateway_app(), host="127.0.0.1", port=port)


if __name__ == "__main__":
    _main()
