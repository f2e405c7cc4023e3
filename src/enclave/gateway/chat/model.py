"""The model a chat call names, as an object the stages call without branching.

:class:`Plain` is a pool of the router: the request goes as it is (a call naming a
conversation has its exchange stored: :mod:`.keep`). :class:`Assistant` is
a virtual model in front of its profile's base pool: it prepares the prompt (memory,
knowledge, assembly; then its base pool) and finishes the answer (citations, the
conversation id; the exchange stored in history and memory).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from enclave.assistants.service import CONVERSATION_HEADER
from enclave.gateway.access import actor, principal_of
from enclave.gateway.body import parse
from enclave.gateway.chat import keep
from enclave.gateway.chat.intake import Asked
from enclave.protocol import ChatCompletionRequest
from enclave.router import Pool, Router

if TYPE_CHECKING:
    from enclave.assistants.conversations import Conversations
    from enclave.assistants.service import Assistants, Turn
    from enclave.profiles import AssistantProfile

# what a model makes of the request: the body for the pool, it parsed, the pool, headers
Prepared = tuple[dict[str, Any], ChatCompletionRequest, Pool, dict[str, str]]


class Plain:
    """A model pool: nothing to prepare; nothing to finish unless the call names a
    conversation (``X-Enclave-Conversation``), whose exchange it then stores."""

    __slots__ = ("conversations", "keeper", "pool", "request")

    def __init__(self, pool: Pool, request: Request, conversations: Conversations) -> None:
        self.pool = pool
        self.request = request
        self.conversations = conversations
        self.keeper: keep.Keeper | None = None

    @property
    def public(self) -> str:
        return self.pool.public

    async def prepare(self, asked: Asked, router: Router) -> Prepared:
        self.keeper = keeper = keep.open_keeper(
            self.request, self.conversations, self.pool.public, asked.body, asked.record
        )
        headers = {CONVERSATION_HEADER: keeper.conversation_id} if keeper else {}
        return asked.body, asked.chat, self.pool, headers

    def finish_stream(self, events: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
        if self.keeper is None:
            return events  # the fast path: the relay's events as they are
        return keep.kept(self.keeper, events)

    async def finish_response(self, result: dict[str, Any]) -> dict[str, Any]:
        if self.keeper is not None:
            self.keeper.finish_response(result)
            await self.keeper.store()
        return result


class Assistant:
    """A virtual model: memory, knowledge and prompt assembly before its base pool; the
    citations, the conversation id and the stored exchange after."""

    __slots__ = ("assistants", "profile", "request", "turn")
    turn: Turn  # set by prepare

    def __init__(self, assistants: Assistants, profile: AssistantProfile, request: Request):
        self.assistants = assistants
        self.profile = profile
        self.request = request

    @property
    def public(self) -> str:
        return self.profile.public

    async def prepare(self, asked: Asked, router: Router) -> Prepared:
        principal = principal_of(self.request)
        self.turn = turn = await self.assistants.prepare(
            self.profile, asked.body, owner=principal.user if principal else None,
            headers=self.request.headers, actor=actor(self.request),
        )  # fmt: skip
        record, started = asked.record, self.request.state.started
        turn.meta = lambda: keep.meta(record, self.profile.public, started)
        chat = parse(ChatCompletionRequest, turn.body)
        pool = router.resolve(chat.model, "chat")
        return turn.body, chat, pool, {CONVERSATION_HEADER: turn.conversation_id}

    def finish_stream(self, events: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
        return self.assistants.finish_stream(self.turn, events)

    async def finish_response(self, result: dict[str, Any]) -> dict[str, Any]:
        return await self.assistants.finish(self.turn, result)


Model = Plain | Assistant
