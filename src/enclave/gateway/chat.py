"""``POST /v1/chat/completions``: check, read images, route, relay the stream."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from enclave.assistants.service import CONVERSATION_HEADER, finish_stream
from enclave.errors import ContextLengthExceeded, InvalidRequest
from enclave.gateway.access import actor, may_use, principal_of
from enclave.gateway.body import parse, read_json
from enclave.gateway.calls import ClientGone, complete, open_stream, unless_disconnected
from enclave.gateway.record import call_record
from enclave.gateway.relay import close_stream, relay
from enclave.images import DecodedImage, decode_images, replace_images_with_text
from enclave.profiles import PREFIX
from enclave.protocol import ChatCompletionRequest
from enclave.router import CallRecord, Pool
from enclave.router.affinity import affinity_key

if TYPE_CHECKING:
    from enclave.assistants.service import Turn
    from enclave.gateway.services import Services

OCR_HEADER = "X-Enclave-OCR"
QUEUE_HEADER = "X-Enclave-Queue-Ms"
MEMBER_HEADER = "X-Enclave-Upstream"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
CLIENT_CLOSED = 499  # nginx's status for a client that hung up


async def chat_completions(request: Request, services: Services) -> Response:
    router = services.router  # this call's snapshot, whatever a reload does meanwhile
    limits = services.settings.limits
    body = await read_json(request, int(limits.max_body_bytes))
    chat = parse(ChatCompletionRequest, body)
    record = call_record(request)
    asked = body
    turn = await assistant_turn(request, services, chat.model, body)
    if turn is not None:  # a virtual model: memory, knowledge and prompt assembly first
        body = turn.body
        chat = parse(ChatCompletionRequest, body)
    pool = router.resolve(chat.model, "chat")
    public = pool.public if turn is None else turn.profile.public
    if turn is None:
        may_use(request, public)
    record.model, record.stream = public, bool(chat.stream)
    check_context(chat, pool)
    headers: dict[str, str] = {} if turn is None else {CONVERSATION_HEADER: turn.conversation_id}
    images = decode_images(
        chat, max_images=limits.max_images, max_image_bytes=int(limits.max_image_bytes)
    )
    keep_for_audit(record, services.settings.audit.content, asked, images)
    if images and not pool.vision:
        if services.ocr is None:
            raise InvalidRequest(f"model {pool.public} cannot read images and OCR is off")
        texts = await services.ocr.read_all([image.data for image in images])
        body = replace_images_with_text(chat, texts).wire()
        headers[OCR_HEADER] = str(len(images))
    key = affinity_key(router.settings.affinity, body, request.headers)
    if chat.stream:
        wants_usage = chat.wants_usage()
        opened, lease = await router.send(pool, body, open_stream(not wants_usage), record, key=key)
        headers |= STREAM_HEADERS | _routing_headers(record)
        started = request.state.started
        relayed = relay(
            opened, lease, record, public=public, started=started, strip_usage=not wants_usage
        )
        events: AsyncIterator[bytes] = relayed
        if turn is not None:
            events = finish_stream(turn, relayed, services.assistants.remember)
        # If the client is gone before the relay starts, its cleanup never runs: this does.
        cleanup = BackgroundTask(close_stream, opened, lease)
        return StreamingResponse(
            events, media_type="text/event-stream", headers=headers, background=cleanup
        )
    try:
        result, lease = await unless_disconnected(
            request, router.send(pool, body, complete("chat"), record, key=key)
        )
    except ClientGone:
        record.outcome = "client_disconnected"
        return Response(status_code=CLIENT_CLOSED)
    lease.done(True)
    record.usage(result.get("usage"))
    record.ttft_s = time.perf_counter() - request.state.started
    result["model"] = public
    if turn is not None:
        result = turn.finish_response(result)
        await services.assistants.remember(turn)
    return JSONResponse(result, headers=headers | _routing_headers(record))


async def assistant_turn(
    request: Request, services: Services, model: str, body: dict[str, Any]
) -> Turn | None:
    """The virtual-model call on its way, or ``None`` for a model pool."""
    if not model.startswith(PREFIX):
        return None
    may_use(request, model)
    profile = await services.assistants.resolve(model)
    assert profile is not None
    principal = principal_of(request)
    return await services.assistants.prepare(
        profile, body, owner=principal.user if principal else None,
        headers=request.headers, actor=actor(request),
    )  # fmt: skip


def keep_for_audit(
    record: CallRecord, policy: str, body: dict[str, Any], images: list[DecodedImage]
) -> None:
    """The images' SHA-256, and the messages as ``audit.content`` says (none/hash/full)."""
    record.images = [hashlib.sha256(image.data).hexdigest() for image in images]
    if policy == "none":
        return
    text = json.dumps(body.get("messages"), ensure_ascii=False, sort_keys=True)
    record.content = text if policy == "full" else hashlib.sha256(text.encode()).hexdigest()


def check_context(chat: ChatCompletionRequest, pool: Pool) -> None:
    """Refuse a completion length the model cannot hold, naming the limit."""
    limit = pool.context_length()
    wanted = chat.output_limit()
    if limit is None or wanted is None or wanted < limit:
        return
    field = "max_completion_tokens" if chat.max_completion_tokens else "max_tokens"
    raise ContextLengthExceeded(
        f"{field} is {wanted}, but the context length of {pool.public} is {limit} tokens, "
        f"prompt included; ask for fewer than {limit}",
        param=field,
    )


def _routing_headers(record: CallRecord) -> dict[str, str]:
    """Which member answered and how long the call queued for one."""
    return {MEMBER_HEADER: record.member or "", QUEUE_HEADER: f"{record.queue_s * 1000:.1f}"}
