"""Tables of the assistants' memory tiers (gathered by :mod:`enclave.store.schema`).

- ``memory_recent``: the recent tier, each user's last N conversation turns (a ring
  buffer trimmed on insert).
- ``memories``: the long-term tier, facts and preferences with their embedding as
  little-endian float32 bytes: the source of truth on every database. Ids are never
  reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), so an archived memory is
  restored under its own id.
- ``memory_owners``: one row per user whose memories changed, with a ``generation``
  bumped on every change, so that a process's in-process index notices another
  process's writes.

On PostgreSQL with pgvector, migration 0003 also makes ``memory_vectors`` (memory id →
``vector``, with an HNSW index per dimension) by hand; :data:`UNMANAGED` keeps it out of
autogenerate's comparison.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from enclave.store.base import Base

UNMANAGED = ("memory_vectors",)
Base.metadata.info.setdefault("unmanaged", set()).update(UNMANAGED)

BIGINT = BigInteger().with_variant(Integer, "sqlite")  # SQLite: INTEGER PRIMARY KEY = rowid


class RecentTurn(Base):
    __tablename__ = "memory_recent"
    __table_args__ = (Index("ix_memory_recent_owner_id", "owner", "id"),)

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    conversation: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Memory(Base):
    __tablename__ = "memories"
    __table_args__ = (
        Index("ix_memories_owner_id", "owner", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # fact | preference
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # api | cli | extracted | restored
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    embedder: Mapped[str] = mapped_column(String(256))  # the model that made ``embedding``
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]  # last found by a search
    uses: Mapped[int] = mapped_column(Integer, default=0)


class MemoryOwner(Base):
    __tablename__ = "memory_owners"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
