"""Stage 3: the prompt for the pool. The model prepares it (an assistant adds memory,
knowledge and history); then the checks every call gets, in this order: the context
length, the images (decoded, and read by OCR for a model without vision), and the
content the audit record keeps."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enclave.errors import ContextLengthExceeded, InvalidRequest
from enclave.gateway.calls import Endpoint
from enclave.gateway.chat.intake import Asked
from enclave.gateway.chat.model import Model
from enclave.images import DecodedImage, decode_images, image_params, replace_images_with_text
from enclave.protocol import ChatCompletionRequest, CompletionRequest
from enclave.router import CallRecord, Pool, Router

if TYPE_CHECKING:
    from enclave.config import LimitsSettings
    from enclave.gateway.services import Services

OCR_HEADER = "X-Enclave-OCR"


@dataclass(slots=True)
class Prompt:
    """What goes to the pool, and what the response carries back."""

    body: dict[str, Any]  # the wire request for the pool
    parsed: ChatCompletionRequest | CompletionRequest
    pool: Pool
    public: str  # the model's name as the client knows it
    record: CallRecord
    headers: dict[str, str]  # for the response
    endpoint: Endpoint = "chat"  # /v1/completions relays the same way


async def prompt(
    services: Services, router: Router, limits: LimitsSettings, asked: Asked, model: Model
) -> Prompt:
    body, chat, pool, headers = await model.prepare(asked, router)
    record = asked.record
    record.model, record.stream = model.public, bool(chat.stream)
    check_context(chat, pool)
    images = await checked_images(chat, limits)
    keep_for_audit(record, services.settings.audit.content, asked.body.get("messages"), images)
    if images and not pool.vision:
        if services.ocr is None:
            raise InvalidRequest(f"model {pool.public} cannot read images and OCR is off")
        texts = await services.ocr.read_all(images)
        body = replace_images_with_text(chat, texts).wire()
        headers[OCR_HEADER] = str(len(images))
    return Prompt(body, chat, pool, model.public, record, headers)


async def checked_images(chat: ChatCompletionRequest, limits: LimitsSettings) -> list[DecodedImage]:
    """The request's images, decoded and checked (Pillow reads headers and checks
    integrity) in a worker thread, off the event loop; a call without images stays on it."""
    if not image_params(chat):
        return []
    return await asyncio.to_thread(
        decode_images,
        chat,
        max_images=limits.max_images,
        max_image_bytes=int(limits.max_image_bytes),
        max_image_pixels=limits.max_image_pixels,
    )


def check_context(request: ChatCompletionRequest | CompletionRequest, pool: Pool) -> None:
    """Refuse a completion length the model cannot hold, naming the limit."""
    limit = pool.context_length()
    wanted = request.output_limit()
    if limit is None or wanted is None or wanted < limit:
        return
    chosen = isinstance(request, ChatCompletionRequest) and request.max_completion_tokens
    field = "max_completion_tokens" if chosen else "max_tokens"
    raise ContextLengthExceeded(
        f"{field} is {wanted}, but the context length of {pool.public} is {limit} tokens, "
        f"prompt included; ask for fewer than {limit}",
        param=field,
    )


def keep_for_audit(
    record: CallRecord, policy: str, content: object, images: list[DecodedImage]
) -> None:
    """The images' SHA-256, and the content (a chat's messages, a completion's prompt) as
    ``audit.content`` says (none/hash/full)."""
    record.images = [hashlib.sha256(image.data).hexdigest() for image in images]
    if policy == "none":
        return
    text = json.dumps(content, ensure_ascii=False, sort_keys=True)
    record.content = text if policy == "full" else hashlib.sha256(text.encode()).hexdigest()
