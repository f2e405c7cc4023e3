"""Virtual models: a call to ``assistant/NAME`` goes through memory, retrieval and prompt
assembly, then to the profile's base model pool like any other call.

:meth:`Assistants.prepare` turns the client's request into the base model's request (a
:class:`Turn`); the gateway sends it through the router (streamed or not, with retries,
metrics and audit as usual); :meth:`Assistants.finish` / :meth:`Assistants.finish_stream`
add the citations and the conversation id to what goes back and store the exchange
(:meth:`Assistants.remember`: conversation history, the recent tier) before the response
ends, and let the model update long-term memory in the background.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from enclave import sse
from enclave.assistants.prompt import (
    Source,
    assemble,
    last_user_text,
    sources_footer,
    system_prompt,
    text_of,
)
from enclave.errors import ConfigError, Conflict, InvalidRequest, ModelNotFound, NotFound
from enclave.profiles import PREFIX, AssistantProfile
from enclave.protocol import ModelCard
from enclave.vectors.queries import QueryVectors

if TYPE_CHECKING:
    from enclave.assistants.conversations import Conversations, ProfileRows
    from enclave.identity import Actor
    from enclave.knowledge.service import KnowledgeBases
    from enclave.memory.service import MemoryService
    from enclave.store.models_assistants import Conversation

log = logging.getLogger("enclave.assistants")

CONVERSATION_HEADER = "X-Enclave-Conversation"
MAX_CONVERSATION_ID = 128
PROFILE_TTL_S = 2.0  # profiles made on another replica show up within this

Chat = Callable[[str, list[dict[str, str]]], Awaitable[str]]  # (model, messages) -> text
Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass
class Turn:
    """One virtual-model call on its way."""

    profile: AssistantProfile
    body: dict[str, Any]  # what the base pool receives
    conversation: Conversation
    subject: str
    memory_subject: str | None
    question: str
    sources: list[Source]
    actor: Actor
    # the model's answer as it arrives; the Sources line is only in what the client gets, so
    # that stored history, recent turns and memory extraction never feed it back to a model
    answer: list[str] = field(default_factory=list)
    memory: MemoryService | None = None  # opened by prepare when the profile keeps memory
    # the answer's meta when stored (model, upstream, tokens, times), given by the gateway
    meta: Callable[[], dict[str, Any]] | None = None

    @property
    def conversation_id(self) -> str:
        return self.conversation.external_id

    def citations(self) -> list[dict[str, Any]]:
        return [s.citation() for s in self.sources] if self.profile.citations != "none" else []

    def footer(self) -> str:
        """The ``Sources:`` line for the answer so far (``markers`` style only)."""
        if self.profile.citations != "markers":
            return ""
        return sources_footer(self.sources, "".join(self.answer))

    def finish_response(self, result: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed answer: the footer appended, citations and conversation added."""
        choices = result.get("choices") or []
        message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
        if isinstance(message, dict):
            self.answer = [message.get("content") or ""]
            message["content"] = self.answer[0] + self.footer()
        result["model"] = self.profile.public
        result["conversation_id"] = self.conversation_id
        if self.profile.citations != "none":
            result["citations"] = self.citations()
        return result


class Assistants:
    def __init__(
        self,
        configured: Callable[[], list[AssistantProfile]],
        rows: ProfileRows,
        conversations: Conversations,
        *,
        knowledge: Callable[[], KnowledgeBases],
        memory: Callable[[], Awaitable[MemoryService]],
        chat: Chat,
        spawn: Spawn,
        query_vectors: Callable[[], QueryVectors] = QueryVectors,
    ) -> None:
        """``query_vectors`` makes what keeps a call's query vectors (the benchmark passes
        one that keeps none, to measure what embedding the question once saves)."""
        self._configured = configured
        self.rows = rows
        self.conversations = conversations
        self._knowledge = knowledge
        self._memory = memory
        self._chat = chat
        self._spawn = spawn
        self._query_vectors = query_vectors
        self._stored: dict[str, AssistantProfile] = {}
        self._loaded_at = float("-inf")

    # --- profiles -------------------------------------------------------------------------

    async def profiles(self) -> dict[str, tuple[AssistantProfile, str]]:
        """Every profile by name, with where it comes from (``config`` or ``api``)."""
        if time.monotonic() - self._loaded_at > PROFILE_TTL_S:
            await self._load()
        found = {p.name: (p, "api") for p in self._stored.values()}
        found |= {p.name: (p, "config") for p in self._configured()}
        return found

    async def _load(self) -> None:
        stored: dict[str, AssistantProfile] = {}
        for row in await self.rows.all():
            try:
                stored[row.name] = AssistantProfile.model_validate(row.spec)
            except ValueError as exc:  # saved by an older version, say
                log.warning("assistant %s in the database is not valid: %s", row.name, exc)
        self._stored, self._loaded_at = stored, time.monotonic()

    async def resolve(self, model: str) -> AssistantProfile | None:
        if not model.startswith(PREFIX):
            return None
        found = (await self.profiles()).get(model[len(PREFIX) :])
        if found is None:
            raise ModelNotFound(f"no assistant {model!r}", param="model")
        return found[0]

    async def put(self, profile: AssistantProfile) -> bool:
        if any(p.name == profile.name for p in self._configured()):
            raise Conflict(f"assistant {profile.name!r} is defined in the config file")
        created = await self.rows.put(profile.name, profile.model_dump(mode="json"))
        self._loaded_at = float("-inf")
        return created

    async def delete(self, name: str) -> None:
        if any(p.name == name for p in self._configured()):
            raise Conflict(f"assistant {name!r} is defined in the config file")
        await self.rows.delete(name)
        self._loaded_at = float("-inf")

    async def cards(self, context_length: Callable[[str], int | None]) -> list[ModelCard]:
        """``/v1/models`` entries, with the base model's context length."""
        found = await self.profiles()
        return [
            ModelCard(
                id=p.public, owned_by="enclave-assistant", max_model_len=context_length(p.model)
            )
            for p, _ in found.values()
        ]

    # --- a call -----------------------------------------------------------------------------

    async def prepare(
        self,
        profile: AssistantProfile,
        body: dict[str, Any],
        *,
        owner: str | None,
        headers: Mapping[str, str],
        actor: Actor,
    ) -> Turn:
        messages = body.get("messages") or []
        question = last_user_text(messages)
        subject = subject_of(owner, body.get("user"))
        external = conversation_id(body, headers)
        conversation = await self.conversations.open(
            subject, external, owner=owner, assistant=profile.public, title=question
        )
        conversation.assistant, conversation.kind = profile.public, "assistant"  # answering now
        memory_subject = memory_subject_of(profile, subject, external)
        memory = await self._memory() if memory_subject is not None else None
        queries = self._query_vectors()  # the question embedded once: memory and knowledge
        memories, recent = await _recall(
            memory, profile, memory_subject, external, question, queries=queries
        )
        sources = await self._retrieve(profile, question, queries)
        history = await self._history(profile, conversation, messages)
        client_system = [text_of(m) for m in messages if m.get("role") in ("system", "developer")]
        system = system_prompt(
            profile.system_prompt, client_system, memories=memories, recent=recent,
            sources=sources, citations=profile.citations,
        )  # fmt: skip
        wire = {k: v for k, v in body.items() if k not in ("metadata", "user")}
        wire |= {k: v for k, v in profile.defaults.items() if k not in body}
        wire["model"] = profile.model
        wire["messages"] = assemble(system, history, messages)
        return Turn(profile, wire, conversation, subject, memory_subject, question, sources, actor,
                    memory=memory)  # fmt: skip

    async def _retrieve(
        self, profile: AssistantProfile, question: str, queries: QueryVectors
    ) -> list[Source]:
        if not profile.knowledge or not question.strip():
            return []
        settings = profile.retrieval
        try:
            hits = await self._knowledge().search(
                profile.knowledge, question, k=settings.top_k, mode=settings.mode,
                queries=queries,
            )  # fmt: skip
        except NotFound as exc:  # a knowledge base of the profile is gone: say which
            raise ConfigError(
                f"{profile.public} is misconfigured: {exc.message}; create it with "
                "`enclave kb create` or take it out of the assistant's knowledge"
            ) from None
        kept = [hit for hit in hits if hit.score >= settings.min_score]
        return [
            Source(i, h.kb, h.document, h.heading, h.source, h.text, h.score)
            for i, h in enumerate(kept, 1)
        ]

    async def _history(
        self, profile: AssistantProfile, conversation: Conversation, messages: list[Any]
    ) -> list[dict[str, Any]]:
        """Stored turns, when the client sent only its new message (no assistant turn)."""
        if any(m.get("role") == "assistant" for m in messages):
            return []  # the client keeps the history itself
        rows = await self.conversations.history(conversation, profile.history)
        return [{"role": row.role, "content": row.content} for row in rows]

    # --- after the answer ---------------------------------------------------------------

    async def finish(self, turn: Turn, result: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed answer: the footer, citations and conversation id added, the
        exchange stored."""
        result = turn.finish_response(result)
        await self.remember(turn)
        return result

    async def finish_stream(
        self, turn: Turn, events: AsyncGenerator[bytes, None]
    ) -> AsyncIterator[bytes]:
        """The relayed stream with the answer collected, the footer and the citations
        added to the chunk that finishes the choice, and the exchange stored before
        ``[DONE]``."""
        try:
            async for raw in _finished(turn, events, self.remember):
                yield raw
        finally:
            await events.aclose()  # a client gone mid-stream: the relay lets go of the upstream

    async def remember(self, turn: Turn) -> None:
        """Store the exchange; let the model update long-term memory in the background. A
        failure here is logged: the client still gets its answer."""
        try:
            await self._remember(turn)
        except Exception:
            log.exception("storing the exchange of conversation %s failed", turn.conversation_id)

    async def _remember(self, turn: Turn) -> None:
        answer = "".join(turn.answer)
        meta = turn.meta() if turn.meta is not None else None
        await self.conversations.append(
            turn.conversation, turn.question, answer, turn.citations(), meta
        )
        memory = turn.memory
        if memory is None:
            return
        await memory.remember_exchange(turn.subject, turn.question, answer, turn.conversation_id)
        if turn.profile.extract and turn.question.strip():
            self._spawn(self._extract(memory, turn, answer))

    async def _extract(self, memory: MemoryService, turn: Turn, answer: str) -> None:
        exchange = [{"role": "user", "content": turn.question},
                    {"role": "assistant", "content": answer}]  # fmt: skip
        model = turn.profile.model

        async def chat(messages: list[dict[str, str]]) -> str:
            return await self._chat(model, messages)

        try:
            applied = await memory.extract_and_apply(turn.actor, turn.memory_subject or "",
                                                     exchange, chat)  # fmt: skip
        except Exception:
            log.exception("updating the memory of %s failed", turn.memory_subject)
            return
        if applied:
            log.info("memory of %s: %s", turn.memory_subject, [a.op for a in applied])


def subject_of(owner: str | None, user: object) -> str:
    """Whose conversation and memory: the key's user, or ``owner/customer`` when a service
    key names its end customer in OpenAI's ``user`` field."""
    customer = user.strip() if isinstance(user, str) else ""
    if len(customer) > 128:
        raise InvalidRequest("user is longer than 128 characters", param="user")
    base = owner or "local"
    return f"{base}/{customer}" if customer else base


def conversation_id(body: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """The client's id for the conversation (header, then ``metadata.conversation_id``),
    or a new one."""
    metadata = body.get("metadata")
    given = headers.get(CONVERSATION_HEADER.lower()) or (
        metadata.get("conversation_id") if isinstance(metadata, dict) else None
    )
    if given is None:
        return uuid.uuid4().hex
    text = str(given).strip()
    if not text or len(text) > MAX_CONVERSATION_ID:
        raise InvalidRequest(
            f"the conversation id must be 1 to {MAX_CONVERSATION_ID} characters",
            param="metadata.conversation_id",
        )
    return text


async def _recall(
    memory: MemoryService | None,
    profile: AssistantProfile,
    memory_subject: str | None,
    external: str,
    question: str,
    *,
    queries: QueryVectors,
) -> tuple[list[str], list[tuple[str, str]]]:
    """The memories and (``memory: user``) recent turns of other conversations the profile
    asks for; nothing with memory off."""
    if memory is None or memory_subject is None:
        return [], []
    recent = profile.recent if profile.memory == "user" else 0
    window = profile.recent + profile.history
    return await memory.recall(
        memory_subject, question, k=profile.memories, recent=recent, window=window,
        besides=external, queries=queries,
    )  # fmt: skip


def memory_subject_of(profile: AssistantProfile, subject: str, external: str) -> str | None:
    if profile.memory == "off":
        return None
    return subject if profile.memory == "user" else f"{subject}#{external}"


async def _finished(
    turn: Turn, events: AsyncIterator[bytes], remember: Callable[[Turn], Awaitable[None]]
) -> AsyncIterator[bytes]:
    finished = False
    async for raw in events:
        if raw == sse.DONE:
            if finished:
                await remember(turn)
            yield raw
            continue
        chunk = _chunk_of(raw)
        if chunk is None:
            yield raw
            continue
        choices = chunk.get("choices") or []
        for choice in choices:
            content = (choice.get("delta") or {}).get("content")
            if content:
                turn.answer.append(content)
        if choices and choices[0].get("finish_reason") is not None:
            finished = True
            yield from_footer(turn, chunk)
            chunk["conversation_id"] = turn.conversation_id
            if turn.profile.citations != "none":
                chunk["citations"] = turn.citations()
        yield sse.encode(json.dumps(chunk, ensure_ascii=False, separators=(",", ":")))


def from_footer(turn: Turn, chunk: dict[str, Any]) -> bytes:
    """A content chunk carrying the ``Sources:`` line (nothing when there is none)."""
    footer = turn.footer()
    if not footer:
        return b""
    extra: dict[str, Any] = {
        k: chunk[k] for k in ("id", "object", "created", "model") if k in chunk
    }
    extra["choices"] = [{"index": 0, "delta": {"content": footer}, "finish_reason": None}]
    return sse.encode(json.dumps(extra, ensure_ascii=False, separators=(",", ":")))


def _chunk_of(raw: bytes) -> dict[str, Any] | None:
    if not raw.startswith(b"data: {"):
        return None
    try:
        chunk = json.loads(raw[6:])
    except ValueError:
        return None
    return chunk if isinstance(chunk, dict) and "error" not in chunk else None
