"""Conversations of plain-model calls: a call that names one (``X-Enclave-Conversation``)
has its exchange stored like an assistant's (the web console's chat).

The client sends the whole history in ``messages``; what is stored is the last user
message (its text parts, and a note of how many images it held) and the answer (the
non-streamed message, or the content deltas of the stream collected as they pass), with
the answer's ``meta``: model, upstream member, token counts, time to first token and
latency. A stream that is cut (the client hangs up, or the upstream fails mid-way)
stores what arrived, its ``meta.incomplete`` saying why. Whose the conversation is follows
the assistants' rules (:func:`enclave.assistants.service.subject_of`).

Only a call with the header comes here: without it the relay's stream passes through
untouched, no event parsed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request

from enclave import sse
from enclave.assistants.prompt import text_of
from enclave.assistants.service import CONVERSATION_HEADER, conversation_id, subject_of
from enclave.gateway.access import principal_of

if TYPE_CHECKING:
    from enclave.assistants.conversations import Conversations
    from enclave.router import CallRecord

log = logging.getLogger("enclave.gateway.chat")


def meta(record: CallRecord, public: str, started: float) -> dict[str, Any]:
    """What the console shows under an answer, from the call's record."""
    ttft = record.ttft_s
    return {
        "model": public,
        "upstream": record.member,
        "tokens_in": record.prompt_tokens,
        "tokens_out": record.completion_tokens,
        "ttft_ms": round(ttft * 1000, 1) if ttft is not None else None,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def question_of(messages: list[Any]) -> str:
    """The last user message's text, and how many images it held."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = text_of(message)
            content = message.get("content")
            parts = content if isinstance(content, list) else []
            images = sum(1 for p in parts if isinstance(p, dict) and p.get("type") == "image_url")
            if images:
                note = f"[{images} image{'s' if images > 1 else ''}]"
                text = f"{text}\n\n{note}" if text else note
            return text
    return ""


class Keeper:
    """One plain-model exchange on its way to its conversation. The conversation is opened
    (made if new) only when the answer is stored: nothing is written before the call, so
    the time to the first token does not wait for the database."""

    __slots__ = ("answer", "conversation_id", "conversations", "owner", "public", "question",
                 "record", "started", "stored", "subject")  # fmt: skip

    def __init__(
        self, conversations: Conversations, where: tuple[str, str, str | None], public: str,
        question: str, *, record: CallRecord, started: float,
    ) -> None:  # fmt: skip
        self.conversations = conversations
        self.subject, self.conversation_id, self.owner = where
        self.public = public
        self.question = question
        self.record = record
        self.started = started
        self.answer: list[str] = []
        self.stored = False

    async def store(self, incomplete: str | None = None) -> None:
        """Store the exchange once; a failure is logged, the client keeps its answer."""
        if self.stored:
            return
        self.stored = True
        about = meta(self.record, self.public, self.started)
        if incomplete is not None:
            about["incomplete"] = incomplete
        try:
            conversation = await self.conversations.open(
                self.subject, self.conversation_id, owner=self.owner, assistant=self.public,
                title=self.question, kind="model",
            )  # fmt: skip
            conversation.assistant, conversation.kind = self.public, "model"  # answering now
            await self.conversations.append(
                conversation, self.question, "".join(self.answer), [], about
            )
        except Exception:
            log.exception("storing the exchange of conversation %s failed", self.conversation_id)

    def collect(self, raw: bytes) -> None:
        """The content delta of a relayed event (choice 0)."""
        if not raw.startswith(b"data: {"):
            return
        try:
            chunk = json.loads(raw[6:])
        except ValueError:
            return
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not choices or not isinstance(choices[0], dict):
            return
        delta = choices[0].get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str):
            self.answer.append(content)

    def finish_response(self, result: dict[str, Any]) -> None:
        choices = result.get("choices") or []
        message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        self.answer = [content] if isinstance(content, str) else []


def open_keeper(
    request: Request, conversations: Conversations, public: str, body: dict[str, Any],
    record: CallRecord,
) -> Keeper | None:  # fmt: skip
    """The keeper of a call carrying ``X-Enclave-Conversation`` (its id and ``user`` checked
    here, before the call); None for any other."""
    if CONVERSATION_HEADER not in request.headers:
        return None
    principal = principal_of(request)
    owner = principal.user if principal else None
    where = (subject_of(owner, body.get("user")), conversation_id(body, request.headers), owner)
    messages = body.get("messages")
    question = question_of(messages if isinstance(messages, list) else [])
    started = request.state.started
    return Keeper(conversations, where, public, question, record=record, started=started)


async def kept(keeper: Keeper, events: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """The relayed stream, its answer collected and stored before ``[DONE]``; a stream
    cut short stores what arrived (shielded: a client gone cancels the response)."""
    try:
        async for raw in events:
            if raw == sse.DONE:
                await keeper.store()
            else:
                keeper.collect(raw)
            yield raw
    finally:
        if not keeper.stored:
            outcome = keeper.record.outcome
            why = outcome if outcome not in (None, "done") else "client_disconnected"
            with anyio.CancelScope(shield=True):
                await keeper.store(why)
        await events.aclose()
