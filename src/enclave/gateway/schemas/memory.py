"""``/api/memories``: the assistants' memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from enclave.gateway.schemas import DbInt, iso

if TYPE_CHECKING:
    from enclave.memory.archive import Archived
    from enclave.memory.service import Hit
    from enclave.store.models_memory import Memory, RecentTurn


class MemoryCreate(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    kind: str = "fact"
    user: str | None = None


class MemoryUpdate(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    kind: str | None = None


class Selection(BaseModel):
    ids: list[DbInt] | None = None
    user: str | None = None


class MemoryPublic(BaseModel):
    id: int
    user: str
    kind: str
    text: str
    source: str
    created_at: str
    updated_at: str
    last_used_at: str | None

    @classmethod
    def of(cls, row: Memory) -> MemoryPublic:
        return cls(**_memory_fields(row))


class MemoryHit(MemoryPublic):
    """A memory found by meaning, with its cosine similarity to the query."""

    score: float

    @classmethod
    def found(cls, hit: Hit) -> MemoryHit:
        return cls(**_memory_fields(hit.memory), score=round(hit.score, 4))


def _memory_fields(row: Memory) -> dict[str, object]:
    return {
        "id": row.id, "user": row.owner, "kind": row.kind, "text": row.text,
        "source": row.source, "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(), "last_used_at": iso(row.last_used_at),
    }  # fmt: skip


class TurnPublic(BaseModel):
    id: int
    role: str
    content: str
    conversation: str | None
    created_at: str

    @classmethod
    def of(cls, turn: RecentTurn) -> TurnPublic:
        return cls(
            id=turn.id, role=turn.role, content=turn.content, conversation=turn.conversation,
            created_at=turn.created_at.isoformat(),
        )  # fmt: skip


class ArchivedPublic(BaseModel):
    id: int
    user: str
    kind: str
    text: str
    created_at: str
    archived_at: str

    @classmethod
    def of(cls, item: Archived) -> ArchivedPublic:
        return cls(id=item.id, user=item.owner, kind=item.kind, text=item.text,
                   created_at=item.created_at, archived_at=item.archived_at)  # fmt: skip


class MemoryDeleted(BaseModel):
    id: int
    deleted: bool


class Erased(BaseModel):
    user: str
    erased: dict[str, int]


class ArchivedCount(BaseModel):
    archived: int
