"""``POST /v1/chat/completions``: check, read images, forward, relay the stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import Request
from starlette.responses import Response

from enclave import sse
from enclave.errors import ContextLengthExceeded, EnclaveError, InvalidRequest, UpstreamError
from enclave.gateway.body import parse, read_json
from enclave.gateway.errors import envelope
from enclave.images import decode_images, replace_images_with_text
from enclave.protocol import ChatCompletionRequest
from enclave.upstream import ChatStream, Route

if TYPE_CHECKING:
    from enclave.gateway.services import Services

OCR_HEADER = "X-Enclave-OCR"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def chat_completions(request: Request, services: Services) -> Response:
    limits = services.settings.limits
    body = await read_json(request, int(limits.max_body_bytes))
    chat = parse(ChatCompletionRequest, body)
    route = services.registry.resolve(chat.model, "chat")
    request.state.model, request.state.upstream = route.public, route.upstream.name
    check_context(chat, route)
    headers: dict[str, str] = {}
    images = decode_images(
        chat, max_images=limits.max_images, max_image_bytes=int(limits.max_image_bytes)
    )
    if images and not route.upstream.vision:
        if services.ocr is None:
            raise InvalidRequest(f"model {route.public} cannot read images and OCR is off")
        texts = await services.ocr.read_all([image.data for image in images])
        body = replace_images_with_text(chat, texts).wire()
        headers[OCR_HEADER] = str(len(images))
    wire = {**body, "model": route.upstream_model}
    if chat.stream:
        stream = await route.upstream.open_chat_stream(wire)
        relayed = relay(stream, route, request)
        headers |= STREAM_HEADERS
        return StreamingResponse(relayed, media_type="text/event-stream", headers=headers)
    result = await route.upstream.chat(wire)
    result["model"] = route.public
    return JSONResponse(result, headers=headers)


def check_context(chat: ChatCompletionRequest, route: Route) -> None:
    """Refuse a completion length the model cannot hold, naming the limit."""
    limit = route.context_length()
    wanted = chat.output_limit()
    if limit is None or wanted is None or wanted < limit:
        return
    field = "max_completion_tokens" if chat.max_completion_tokens else "max_tokens"
    raise ContextLengthExceeded(
        f"{field} is {wanted}, but the context length of {route.public} is {limit} tokens, "
        f"prompt included; ask for fewer than {limit}",
        param=field,
    )


async def relay(stream: ChatStream, route: Route, request: Request) -> AsyncIterator[bytes]:
    """Pass upstream events on; a failure mid-stream ends with an OpenAI error event."""
    rename = route.upstream_model != route.public
    try:
        async for event in stream.events():
            if event.is_done:
                yield sse.DONE
                request.state.outcome = "done"
                return
            yield sse.encode(_renamed(event.data, route.public) if rename else event.data)
        raise UpstreamError(f"upstream {route.upstream.name} ended the stream without [DONE]")
    except EnclaveError as exc:
        request.state.outcome = "upstream_error"
        yield sse.encode_json(envelope(exc))
    except asyncio.CancelledError:
        request.state.outcome = "client_disconnected"
        raise
    finally:
        await stream.aclose()


def _renamed(data: str, public: str) -> str:
    try:
        chunk: Any = json.loads(data)
    except ValueError:
        return data
    if isinstance(chunk, dict) and "model" in chunk:
        chunk["model"] = public
        return json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
    return data
