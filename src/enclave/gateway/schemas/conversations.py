"""``/api/conversations``: the server-side conversations of assistant calls, and of
plain-model calls that name one (``X-Enclave-Conversation``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from enclave.store.models_assistants import Conversation, ConversationMessage


class ConversationPublic(BaseModel):
    id: str
    assistant: str  # the model or assistant that answered last (as ``model``; kept)
    model: str  # its public name: a pool's, or ``assistant/NAME``
    kind: str  # "model" | "assistant"
    subject: str
    owner: str | None
    title: str
    created_at: str
    updated_at: str
    messages: int  # how many

    @classmethod
    def of(cls, row: Conversation, messages: int) -> ConversationPublic:
        return cls(
            id=row.external_id, assistant=row.assistant, model=row.assistant, kind=row.kind,
            subject=row.subject, owner=row.owner, title=row.title,
            created_at=row.created_at.isoformat(), updated_at=row.updated_at.isoformat(),
            messages=messages,
        )  # fmt: skip


class ConversationPage(BaseModel):
    """A page of the listing, newest first; ``next_cursor`` asks for the next (null: none)."""

    data: list[ConversationPublic]
    next_cursor: str | None


class MessagePublic(BaseModel):
    index: int  # 0-based position in the conversation (``from_index`` of a truncation)
    role: str
    content: str
    citations: list[dict[str, Any]] | None
    # an answer's {model, upstream, tokens_in, tokens_out, ttft_ms, latency_ms} (and
    # ``incomplete`` when its stream was cut); null for the user's messages
    meta: dict[str, Any] | None
    created_at: str

    @classmethod
    def of(cls, row: ConversationMessage, index: int) -> MessagePublic:
        return cls(index=index, role=row.role, content=row.content, citations=row.citations,
                   meta=row.meta, created_at=row.created_at.isoformat())  # fmt: skip


class ConversationRename(BaseModel):
    title: str = Field(min_length=1, max_length=1000)


class MessagesTruncated(BaseModel):
    id: str
    from_index: int
    deleted: int  # how many messages went


class ConversationDetail(ConversationPublic):
    """One conversation with its messages."""

    data: list[MessagePublic]


class ConversationDeleted(BaseModel):
    id: str
    deleted: bool


def export(row: Conversation, messages: list[ConversationMessage]) -> dict[str, Any]:
    """The JSON export: the conversation, ``messages`` holding the messages themselves."""
    return ConversationPublic.of(row, len(messages)).model_dump() | {
        "messages": [MessagePublic.of(m, i).model_dump() for i, m in enumerate(messages)]
    }
