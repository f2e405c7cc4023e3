"""Stage 5: the response. The model finishes the answer (an assistant adds citations and
the conversation id, and stores the exchange: history, recent turns, memory); the
routing headers say which member and pool answered and how long the call queued. The access log
writes the call record (metrics, audit) once the response has gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from enclave.gateway.chat.model import Model, Plain
from enclave.gateway.chat.prepare import Prompt
from enclave.gateway.chat.relay import Streamed, close_stream
from enclave.router import CallRecord

QUEUE_HEADER = "X-Enclave-Queue-Ms"
MEMBER_HEADER = "X-Enclave-Upstream"
POOL_HEADER = "X-Enclave-Pool"  # the public model whose pool answered (a fallback's, maybe)
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def as_relayed(model: Model) -> bool:
    """Whether the client gets the relay's bytes as they are (then events read together
    may go out in one write): nothing reads them one by one on the way."""
    return isinstance(model, Plain) and model.keeper is None


def stream(model: Model, prompt: Prompt, streamed: Streamed) -> StreamingResponse:
    return sse_response(prompt, streamed, model.finish_stream(streamed.events))


def sse_response(
    prompt: Prompt, streamed: Streamed, events: AsyncIterator[bytes]
) -> StreamingResponse:
    """The events as the response, with the routing headers (also ``/v1/completions``'s)."""
    headers = prompt.headers | STREAM_HEADERS | routing_headers(prompt.record)
    # If the client is gone before the relay starts, its cleanup never runs: this does.
    cleanup = BackgroundTask(close_stream, streamed.opened, streamed.lease)
    return StreamingResponse(
        events, media_type="text/event-stream", headers=headers, background=cleanup
    )


async def complete(model: Model, prompt: Prompt, result: dict[str, Any]) -> JSONResponse:
    return json_response(prompt, await model.finish_response(result))


def json_response(prompt: Prompt, result: dict[str, Any]) -> JSONResponse:
    return JSONResponse(result, headers=prompt.headers | routing_headers(prompt.record))


def routing_headers(record: CallRecord) -> dict[str, str]:
    """Which member and pool answered and how long the call queued for one."""
    return {
        MEMBER_HEADER: record.member or "",
        POOL_HEADER: record.pool or "",
        QUEUE_HEADER: f"{record.queue_s * 1000:.1f}",
    }
