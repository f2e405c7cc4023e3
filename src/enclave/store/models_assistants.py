"""Tables of the assistants: profiles made through the admin API, and the server-side
conversations of virtual-model calls (gathered by :mod:`enclave.store.schema`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from enclave.store.base import Base

BIGINT = BigInteger().with_variant(Integer, "sqlite")


class AssistantProfileRow(Base):
    """A profile made or changed through ``/api/admin/assistants`` (config-file ones are
    not stored)."""

    __tablename__ = "assistant_profiles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Conversation(Base):
    """One conversation with an assistant or a plain model (``kind``; ``assistant`` holds
    the public name of the one that answered last). ``subject`` is whose it is (the key's
    user, or ``user/customer`` for a service key passing OpenAI's ``user`` field); the
    client's own id for it (``X-Enclave-Conversation``) is unique per subject."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("subject", "external_id", name="uq_conversations_subject_external_id"),
        # the owner's listing, newest first, keyset on (updated_at, id)
        Index("ix_conversations_owner_updated_at_id", "owner", "updated_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(300), index=True)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)  # the key's user
    assistant: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="assistant", server_default="assistant")
    title: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ConversationMessage(Base):
    __tablename__ = "conversation_messages"

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    content: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # an answer's {model, upstream, tokens_in, tokens_out, ttft_ms, latency_ms}; None for
    # the user's messages
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=None)
    created_at: Mapped[datetime]
