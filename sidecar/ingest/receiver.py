"""The OTLP/HTTP receiver: ``POST /v1/metrics`` as a straight line with fixed answers.

405 other methods, 415 other content types, 413 over ``max_body_bytes`` after
decompression (decompressed in a streaming way, so a gzip bomb allocates at most the
limit), 400 an undecodable body (nothing stored), 429 with Retry-After when the store is
full and nothing could be stored, else 200 with an ``ExportMetricsServiceResponse`` in
the request's encoding whose ``partial_success`` counts the rejected points and says why.
``/v1/traces`` and ``/v1/logs`` (where an SDK configured with ``OTEL_EXPORTER_OTLP_ENDPOINT``
sends its other signals) get a 404 that says this port takes metrics only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import hdrs, web
from google.protobuf.message import DecodeError as ProtobufDecodeError

from sidecar.ingest.codec import (
    GRPC_INVALID_ARGUMENT,
    GRPC_RESOURCE_EXHAUSTED,
    BodyTooLarge,
    BoundedDecompressor,
    CorruptBody,
    Encoding,
    UndecodableBody,
    decode_request,
    encode_response,
    encode_status,
    encoding_of,
)
from sidecar.ingest.instruments import IngestInstruments
from sidecar.ingest.jsonview import JsonShapeError
from sidecar.ingest.model import Batch
from sidecar.ingest.store import STORE_FULL, MetricStore, Outcome
from sidecar.ingest.translate import AttributeTooDeep, Translator
from sidecar.relabel.ingest import IngestRelabel

__all__ = ["INGEST_PATH", "SERVER_KWARGS", "IngestState", "create_ingest_app"]

log = logging.getLogger(__name__)

INGEST_PATH = "/v1/metrics"
OTHER_SIGNAL_PATHS = ("/v1/traces", "/v1/logs")
METRICS_ONLY = b"404: metrics only: traces and logs are not accepted here (POST /v1/metrics)\n"
# OTLP exporters log the status line, not the body (Python: "code: 404, reason: ...").
METRICS_ONLY_REASON = "Not Found (metrics only: traces and logs are not accepted here)"
READ_CHUNK = 64 * 1024
RETRY_AFTER_SECONDS = 30
# The app must be served with these: aiohttp would otherwise inflate gzip/deflate bodies
# itself, with no bound tied to ingest.max_body_bytes (and the handler would see them twice).
SERVER_KWARGS = {"auto_decompress": False}
EXPIRY_INTERVAL_MIN, EXPIRY_INTERVAL_MAX = 0.05, 30.0


@dataclass(frozen=True, slots=True)
class IngestState:
    """Everything the handler needs, stored on the app under `STATE`."""

    store: MetricStore
    translator: Translator
    instruments: IngestInstruments
    max_body_bytes: int
    relabel: IngestRelabel | None = None  # relabel rules before the store (sidecar.relabel)


STATE = web.AppKey("ingest_state", IngestState)
# the one thread that decodes and translates every push (`_decoding`)
DECODER = web.AppKey("ingest_decoder", ThreadPoolExecutor)


class _Refusal(Exception):
    """An answer other than 200, with its status, body and content type."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type


def create_ingest_app(state: IngestState) -> web.Application:
    """The ingest application: one route, any method (405 answered by the handler).

    Serve it with `SERVER_KWARGS` (``auto_decompress=False``): the handler decompresses.
    """
    app = web.Application()
    app[STATE] = state
    app.router.add_route("*", INGEST_PATH, handle_export)
    for path in OTHER_SIGNAL_PATHS:
        app.router.add_route("*", path, handle_other_signal)
    app.cleanup_ctx.append(_decoding)
    app.cleanup_ctx.append(_expiry_timer)
    return app


async def _decoding(app: web.Application) -> AsyncIterator[None]:
    """One worker thread decodes, translates and stores every push, in arrival order.

    On the event loop a push of 1,000 points took ~3 ms to decode and ~6 ms to store,
    during which no proxied request moved (at 32 connections, 10 such pushes a second put
    the proxy's p99 ~2 ms higher); in a thread it shares the core with the loop instead.
    One thread, not a pool: the translator's caches and the store are then only ever
    written by one thread, and the store's gate keeps scrapes from reading it meanwhile."""
    decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-decode")
    app[DECODER] = decoder
    yield
    decoder.shutdown(wait=False, cancel_futures=True)


async def _expiry_timer(app: web.Application) -> AsyncIterator[None]:
    """Expire idle series on a timer, whether or not anyone scrapes."""
    store = app[STATE].store
    horizon = min(store.limits.series_ttl, store.limits.worker_idle)
    interval = min(max(horizon / 4, EXPIRY_INTERVAL_MIN), EXPIRY_INTERVAL_MAX)

    async def run() -> None:
        while True:
            await asyncio.sleep(interval)
            async with store.gate.write():  # not while a scrape reads the store
                store.expire()

    task = asyncio.create_task(run(), name="ingest-expiry")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def handle_export(request: web.Request) -> web.Response:
    """``POST /v1/metrics``."""
    state = request.app[STATE]
    encoding = encoding_of(request.headers.get(hdrs.CONTENT_TYPE, ""))
    try:
        response = await _export(request, state, encoding)
    except _Refusal as refusal:
        response = web.Response(status=refusal.status, body=refusal.body)
        response.content_type = refusal.content_type
        if refusal.status == 405:
            response.headers[hdrs.ALLOW] = "POST"
        elif refusal.status == 429:
            response.headers[hdrs.RETRY_AFTER] = str(RETRY_AFTER_SECONDS)
    label = encoding.label if encoding is not None else "unknown"
    state.instruments.requests.add(1, {"encoding": label, "code": response.status})
    return response


async def handle_other_signal(request: web.Request) -> web.Response:
    """``/v1/traces``, ``/v1/logs``: 404 (OTLP exporters do not retry it), saying why, and
    counted in ``sidecar_otlp_requests_total{code="404"}`` so a misdirected SDK shows."""
    encoding = encoding_of(request.headers.get(hdrs.CONTENT_TYPE, ""))
    label = encoding.label if encoding is not None else "unknown"
    request.app[STATE].instruments.requests.add(1, {"encoding": label, "code": 404})
    return web.Response(
        status=404, reason=METRICS_ONLY_REASON, body=METRICS_ONLY, content_type="text/plain"
    )


async def _export(
    request: web.Request, state: IngestState, encoding: Encoding | None
) -> web.Response:
    if request.method != hdrs.METH_POST:
        raise _Refusal(405, b"405: only POST is allowed on /v1/metrics\n", "text/plain")
    if encoding is None:
        body = b"415: Content-Type must be application/x-protobuf or application/json\n"
        raise _Refusal(415, body, "text/plain")
    try:
        body = await _read_body(request, state.max_body_bytes)
        batch = await _decode(request.app[DECODER], body, encoding, state.translator)
    except BodyTooLarge as exc:
        raise _error(413, GRPC_INVALID_ARGUMENT, str(exc), encoding) from exc
    except CorruptBody as exc:  # bad compression, or an UndecodableBody
        raise _error(400, GRPC_INVALID_ARGUMENT, str(exc), encoding) from exc
    # stored in the decoder thread too, not while a scrape reads the store
    stored = functools.partial(_store, state, batch)
    outcome = await state.store.gate.write_off_loop(request.app[DECODER], stored)
    rejected = _merge_rejections(batch, outcome)
    _record(state.instruments, batch, outcome, rejected)
    if not outcome.accepted and set(rejected) == {STORE_FULL}:
        raise _error(429, GRPC_RESOURCE_EXHAUSTED, "metric store is full", encoding)
    body = encode_response(sum(rejected.values()), _explain(rejected), encoding)
    return web.Response(body=body, content_type=encoding.value)


def _error(status: int, code: int, message: str, encoding: Encoding) -> _Refusal:
    return _Refusal(status, encode_status(code, message, encoding), encoding.value)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """Read and decompress the body, never holding more than ``limit`` bytes of either."""
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(f"body is over {limit} bytes")
    decompressor = BoundedDecompressor(request.headers.get(hdrs.CONTENT_ENCODING, ""), limit)
    received = 0
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(f"body is over {limit} bytes")
        decompressor.feed(chunk)
    return decompressor.finish()


async def _decode(
    decoder: ThreadPoolExecutor, body: bytes, encoding: Encoding, translator: Translator
) -> Batch:
    """Decode and translate in the decoder thread, so the loop keeps answering."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(decoder, _translate, body, encoding, translator)


def _store(state: IngestState, batch: Batch) -> Outcome:
    """The batch relabelled (a dropped series is never stored) and stored."""
    if state.relabel is not None:
        state.relabel.apply(batch, state.store)
    return state.store.apply(batch)


def _translate(body: bytes, encoding: Encoding, translator: Translator) -> Batch:
    request = decode_request(body, encoding)
    try:
        return translator.translate(request)
    except JsonShapeError as exc:  # JSON is type-checked lazily, as the translator reads it
        raise UndecodableBody(f"cannot decode json body: {exc}") from exc
    except (AttributeTooDeep, RecursionError, ProtobufDecodeError) as exc:  # lazily parsed
        raise UndecodableBody(f"cannot decode body: {exc}") from exc


def _merge_rejections(batch: Batch, outcome: Outcome) -> dict[str, int]:
    rejected = dict(batch.rejected)
    for reason, count in outcome.rejected.items():
        rejected[reason] = rejected.get(reason, 0) + count
    return rejected


def _explain(rejected: dict[str, int]) -> str:
    return "; ".join(f"{count} {reason}" for reason, count in sorted(rejected.items()))


def _record(
    instruments: IngestInstruments, batch: Batch, outcome: Outcome, rejected: dict[str, int]
) -> None:
    instruments.received.add(batch.points)
    for reason, count in rejected.items():
        instruments.rejected.add(count, {"reason": reason})
    for metric, count in outcome.overflowed.items():
        instruments.overflow.add(count, {"metric": metric})
