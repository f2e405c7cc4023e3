"""Stage 1: read the body within ``limits.max_body_bytes`` and check it is a chat request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from enclave.gateway.body import parse, read_json
from enclave.gateway.record import call_record
from enclave.protocol import ChatCompletionRequest
from enclave.router import CallRecord

if TYPE_CHECKING:
    from enclave.config import LimitsSettings


@dataclass(slots=True)
class Asked:
    """The request as the client sent it."""

    body: dict[str, Any]
    chat: ChatCompletionRequest
    record: CallRecord  # what the access log, the metrics and the audit record say of it


async def read(request: Request, limits: LimitsSettings) -> Asked:
    body = await read_json(request, int(limits.max_body_bytes))
    return Asked(body, parse(ChatCompletionRequest, body), call_record(request))
