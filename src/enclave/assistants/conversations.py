"""Server-side conversations of virtual-model calls, and the profiles the admin API makes.

A conversation belongs to a *subject* (the key's user, or ``user/customer`` for a service
key that passes OpenAI's ``user`` field) and is found by the client's own id for it
(``X-Enclave-Conversation`` or ``metadata.conversation_id``), unique per subject. The
``owner`` is the key's user: it may list, read, export and delete its conversations
through ``/api/conversations``; administrators may act on anyone's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from enclave.errors import NotFound
from enclave.store.models_assistants import (
    AssistantProfileRow,
    Conversation,
    ConversationMessage,
)
from enclave.store.repos import Clock, utcnow

if TYPE_CHECKING:
    from enclave.store.repos import Store

TITLE_CHARS = 80


class Conversations:
    def __init__(self, store: Store, clock: Clock = utcnow) -> None:
        self.sessions = store.sessions
        self.clock = clock

    async def find(self, subject: str, external_id: str) -> Conversation | None:
        async with self.sessions() as session:
            found: Conversation | None = await session.scalar(
                select(Conversation).where(
                    Conversation.subject == subject, Conversation.external_id == external_id
                )
            )
            return found

    async def open(
        self, subject: str, external_id: str, *, owner: str | None, assistant: str, title: str
    ) -> Conversation:
        """The conversation, made if new (two calls racing to make it get the same one)."""
        found = await self.find(subject, external_id)
        if found is not None:
            return found
        now = self.clock()
        row = Conversation(
            external_id=external_id, subject=subject, owner=owner, assistant=assistant,
            title=" ".join(title.split())[:TITLE_CHARS], created_at=now, updated_at=now,
        )  # fmt: skip
        try:
            async with self.sessions() as session, session.begin():
                session.add(row)
        except IntegrityError:
            again = await self.find(subject, external_id)
            assert again is not None
            return again
        return row

    async def history(self, conversation: Conversation, limit: int) -> list[ConversationMessage]:
        """The newest ``limit`` messages, oldest first."""
        if limit <= 0:
            return []
        async with self.sessions() as session:
            rows = await session.scalars(
                select(ConversationMessage)
                .where(ConversationMessage.conversation_id == conversation.id)
                .order_by(ConversationMessage.id.desc())
                .limit(limit)
            )
            return list(reversed(rows.all()))

    async def append(
        self, conversation: Conversation, question: str, answer: str, citations: list[Any]
    ) -> None:
        """One exchange: the user's message and the answer, with its citations."""
        now = self.clock()
        async with self.sessions() as session, session.begin():
            session.add_all([
                ConversationMessage(conversation_id=conversation.id, role="user",
                                    content=question, citations=[], created_at=now),
                ConversationMessage(conversation_id=conversation.id, role="assistant",
                                    content=answer, citations=citations, created_at=now),
            ])  # fmt: skip
            row = await session.get(Conversation, conversation.id)
            if row is not None:
                row.updated_at = now

    # --- /api/conversations ---------------------------------------------------------------

    async def listing(
        self, owner: str | None, *, limit: int = 50, offset: int = 0, assistant: str | None = None
    ) -> list[tuple[Conversation, int]]:
        """Newest first, with their message counts; ``owner`` None: everyone's."""
        count = (
            select(func.count(ConversationMessage.id))
            .where(ConversationMessage.conversation_id == Conversation.id)
            .scalar_subquery()
        )
        query = select(Conversation, count).order_by(Conversation.updated_at.desc(),
                                                     Conversation.id.desc())  # fmt: skip
        if owner is not None:
            query = query.where(Conversation.owner == owner)
        if assistant is not None:
            query = query.where(Conversation.assistant == assistant)
        async with self.sessions() as session:
            rows = await session.execute(query.limit(limit).offset(offset))
            return [(row, int(n)) for row, n in rows.all()]

    async def get(
        self, owner: str | None, external_id: str, subject: str | None = None
    ) -> Conversation:
        query = select(Conversation).where(Conversation.external_id == external_id)
        if owner is not None:
            query = query.where(Conversation.owner == owner)
        if subject is not None:
            query = query.where(Conversation.subject == subject)
        async with self.sessions() as session:
            found = (await session.scalars(query.order_by(Conversation.id.desc()))).first()
        if found is None:
            raise NotFound(f"no conversation {external_id!r}")
        return found

    async def messages(self, conversation: Conversation) -> list[ConversationMessage]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(ConversationMessage)
                .where(ConversationMessage.conversation_id == conversation.id)
                .order_by(ConversationMessage.id)
            )
            return list(rows.all())

    async def delete(self, conversation: Conversation) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                delete(ConversationMessage).where(
                    ConversationMessage.conversation_id == conversation.id
                )
            )
            await session.execute(delete(Conversation).where(Conversation.id == conversation.id))


class ProfileRows:
    """Profiles made through ``/api/admin/assistants``."""

    def __init__(self, store: Store, clock: Clock = utcnow) -> None:
        self.sessions = store.sessions
        self.clock = clock

    async def all(self) -> list[AssistantProfileRow]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(AssistantProfileRow).order_by(AssistantProfileRow.name)
            )
            return list(rows.all())

    async def put(self, name: str, spec: dict[str, Any]) -> bool:
        """Create or replace; ``True`` when it was new."""
        now = self.clock()
        async with self.sessions() as session, session.begin():
            row = await session.get(AssistantProfileRow, name)
            if row is None:
                session.add(
                    AssistantProfileRow(name=name, spec=spec, created_at=now, updated_at=now)
                )
                return True
            row.spec, row.updated_at = spec, now
            return False

    async def delete(self, name: str) -> None:
        async with self.sessions() as session, session.begin():
            row = await session.get(AssistantProfileRow, name)
            if row is None:
                raise NotFound(f"no assistant {name!r} made through the API")
            await session.delete(row)
