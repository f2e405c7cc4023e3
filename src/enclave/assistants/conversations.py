"""Server-side conversations of virtual-model calls (and of plain-model calls that name
one: the web console), and the profiles the admin API makes.

A conversation belongs to a *subject* (the key's user, or ``user/customer`` for a service
key that passes OpenAI's ``user`` field) and is found by the client's own id for it
(``X-Enclave-Conversation`` or ``metadata.conversation_id``), unique per subject. The
``owner`` is the key's user: it may list, read, export and delete its conversations
through ``/api/conversations``; administrators may act on anyone's.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from enclave.errors import InvalidRequest, NotFound
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
        self, subject: str, external_id: str, *, owner: str | None, assistant: str, title: str,
        kind: str = "assistant",
    ) -> Conversation:  # fmt: skip
        """The conversation, made if new (two calls racing to make it get the same one).
        ``assistant`` is the public name of the assistant or (``kind`` model) the model."""
        found = await self.find(subject, external_id)
        if found is not None:
            return found
        now = self.clock()
        row = Conversation(
            external_id=external_id, subject=subject, owner=owner, assistant=assistant,
            kind=kind, title=_title(title), created_at=now, updated_at=now,
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
        self, conversation: Conversation, question: str, answer: str, citations: list[Any],
        meta: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """One exchange: the user's message and the answer, with its citations and its
        ``meta``. The conversation now names the model or assistant it was opened with
        (``conversation.assistant``, ``kind``): the one that answered last."""
        now = self.clock()
        async with self.sessions() as session, session.begin():
            session.add_all([
                ConversationMessage(conversation_id=conversation.id, role="user",
                                    content=question, citations=[], created_at=now),
                ConversationMessage(conversation_id=conversation.id, role="assistant",
                                    content=answer, citations=citations, meta=meta,
                                    created_at=now),
            ])  # fmt: skip
            row = await session.get(Conversation, conversation.id)
            if row is not None:
                row.updated_at = now
                row.assistant, row.kind = conversation.assistant, conversation.kind
                if not row.title:  # opened by a call with no text (an image alone)
                    row.title = _title(question)

    # --- /api/conversations ---------------------------------------------------------------

    async def listing(
        self, owner: str | None, *, limit: int = 50, cursor: str | None = None,
        q: str | None = None, assistant: str | None = None,
    ) -> tuple[list[tuple[Conversation, int]], str | None]:  # fmt: skip
        """Newest first (``updated_at``, then ``id``), with their message counts, and the
        cursor of the next page (None on the last). Keyset pagination: a page costs the
        same however deep it is. ``owner`` None: everyone's; ``q``: a piece of the title,
        any case."""
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
        if q:
            query = query.where(func.lower(Conversation.title).contains(q.lower(), autoescape=True))
        if cursor:
            at, last = _decode_cursor(cursor)
            query = query.where(
                or_(Conversation.updated_at < at,
                    and_(Conversation.updated_at == at, Conversation.id < last))
            )  # fmt: skip
        async with self.sessions() as session:
            rows = (await session.execute(query.limit(limit + 1))).all()
        page = [(row, int(n)) for row, n in rows[:limit]]
        more = len(rows) > limit
        return page, _encode_cursor(page[-1][0]) if more and page else None

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

    async def count(self, conversation: Conversation) -> int:
        async with self.sessions() as session:
            found = await session.scalar(
                select(func.count(ConversationMessage.id)).where(
                    ConversationMessage.conversation_id == conversation.id
                )
            )
            return int(found or 0)

    async def rename(self, conversation: Conversation, title: str) -> Conversation:
        async with self.sessions() as session, session.begin():
            row = await session.get(Conversation, conversation.id)
            if row is None:
                raise NotFound(f"no conversation {conversation.external_id!r}")
            row.title = _title(title)
            row.updated_at = self.clock()
            return row

    async def truncate(self, conversation: Conversation, from_index: int) -> int:
        """Drop the messages from ``from_index`` (0-based) on; how many went."""
        async with self.sessions() as session, session.begin():
            first = await session.scalar(
                select(ConversationMessage.id)
                .where(ConversationMessage.conversation_id == conversation.id)
                .order_by(ConversationMessage.id)
                .offset(from_index)
                .limit(1)
            )
            if first is None:
                return 0
            gone = await session.execute(
                delete(ConversationMessage).where(
                    ConversationMessage.conversation_id == conversation.id,
                    ConversationMessage.id >= first,
                )
            )
            row = await session.get(Conversation, conversation.id)
            if row is not None:
                row.updated_at = self.clock()
            return int(getattr(gone, "rowcount", 0) or 0)

    async def delete(self, conversation: Conversation) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                delete(ConversationMessage).where(
                    ConversationMessage.conversation_id == conversation.id
                )
            )
            await session.execute(delete(Conversation).where(Conversation.id == conversation.id))


def _title(text: str) -> str:
    return " ".join(text.split())[:TITLE_CHARS]


def _encode_cursor(row: Conversation) -> str:
    raw = f"{row.updated_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    """``next_cursor`` of an earlier page, or a 400 naming the parameter."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, last = raw.split("|")
        when, number = datetime.fromisoformat(at), int(last)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor is not a next_cursor this API gave", param="cursor") from None
    if when.tzinfo is None or not 0 <= number < 2**63:
        raise InvalidRequest("cursor is not a next_cursor this API gave", param="cursor")
    return when, number


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
