"""``/api/conversations``: the server-side conversations of virtual-model calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from enclave.store.models_assistants import Conversation, ConversationMessage


class ConversationPublic(BaseModel):
    id: str
    assistant: str
    subject: str
    owner: str | None
    title: str
    created_at: str
    updated_at: str
    messages: int  # how many

    @classmethod
    def of(cls, row: Conversation, messages: int) -> ConversationPublic:
        return cls(
            id=row.external_id, assistant=row.assistant, subject=row.subject, owner=row.owner,
            title=row.title, created_at=row.created_at.isoformat(),
            updated_at=row.updated_at.isoformat(), messages=messages,
        )  # fmt: skip


class MessagePublic(BaseModel):
    role: str
    content: str
    citations: list[dict[str, Any]] | None
    created_at: str

    @classmethod
    def of(cls, row: ConversationMessage) -> MessagePublic:
        return cls(role=row.role, content=row.content, citations=row.citations,
                   created_at=row.created_at.isoformat())  # fmt: skip


class ConversationDetail(ConversationPublic):
    """One conversation with its messages."""

    data: list[MessagePublic]


class ConversationDeleted(BaseModel):
    id: str
    deleted: bool


def export(row: Conversation, messages: list[ConversationMessage]) -> dict[str, Any]:
    """The JSON export: the conversation, ``messages`` holding the messages themselves."""
    return ConversationPublic.of(row, len(messages)).model_dump() | {
        "messages": [MessagePublic.of(m).model_dump() for m in messages]
    }
