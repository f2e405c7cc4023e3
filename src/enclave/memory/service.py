"""The assistants' memory in three tiers, one service for the API, the CLI and assistants.

1. **recent**: each user's last ``memory.recent_size`` conversation turns (a ring buffer
   in ``memory_recent``, trimmed on insert): :meth:`MemoryService.remember_turn`,
   :meth:`MemoryService.recent`.
2. **long-term**: facts and preferences, embedded and found by meaning
   (:meth:`~MemoryService.search`); added by hand (:meth:`~MemoryService.add`) or by the
   model from a conversation turn (:meth:`~MemoryService.extract_and_apply`, see
   :mod:`enclave.memory.facts`).
3. **archive**: memories older than ``memory.archive_after_days`` or unused for
   ``memory.archive_unused_days`` move to the archive store
   (:meth:`~MemoryService.archive_due`) and can be restored.

An assistant reads what it is told in one :meth:`~MemoryService.recall` and keeps an
exchange with one :meth:`~MemoryService.remember_exchange`.

Every change made by a person or a model is audited (``memory.*`` records, with ids and
the user, never the text). One user's memories are never visible to another: every
method takes the owner, and the repository checks it on every row.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from enclave.errors import InvalidRequest
from enclave.memory.archive import Archived, id_of, key_of, open_archive, owner_prefix
from enclave.memory.facts import Operation, build_prompt, parse_operations
from enclave.memory.repository import (
    MemoryRepo,
    MemoryVectors,
    NewMemory,
    open_vectors,
    to_bytes,
)
from enclave.store.models_memory import Memory, RecentTurn
from enclave.store.repos import Clock, utcnow
from enclave.vectors.queries import QueryVectors

if TYPE_CHECKING:
    from enclave.audit.writer import AuditWriter
    from enclave.config import MemorySettings
    from enclave.identity import Actor
    from enclave.memory.archive import ArchiveStore
    from enclave.store.repos import Store
    from enclave.vectors.embedding import Embedder, Matrix

Chat = Callable[[list[dict[str, str]]], Awaitable[str]]
KINDS = ("fact", "preference")
ROLES = ("user", "assistant", "system", "tool")
MAX_TEXT = 2000
# Memories claimed per archive transaction. Each is written to the archive (an S3 PUT with
# memory.s3) while its row stays locked, so a batch is small: the transaction and its row
# locks last a few dozen writes, not hundreds.
ARCHIVE_BATCH = 50


@dataclass(frozen=True)
class Hit:
    memory: Memory
    score: float  # cosine similarity to the query


class Recalled(NamedTuple):
    """What :meth:`MemoryService.recall` found: memories, and recent (role, text) turns."""

    memories: list[str]
    recent: list[tuple[str, str]]


@dataclass(frozen=True)
class Applied:
    """An extraction operation after it was carried out (``id``: the memory touched)."""

    op: str
    id: int | None
    text: str


class MemoryService:
    def __init__(
        self,
        repo: MemoryRepo,
        vectors: MemoryVectors,
        embedder: Embedder,
        settings: MemorySettings,
        *,
        archive: ArchiveStore,
        audit: AuditWriter | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.repo = repo
        self.vectors = vectors
        self.embedder = embedder
        self.settings = settings
        self.archive = archive
        self.audit = audit
        self.clock = clock

    @classmethod
    async def open(
        cls,
        store: Store,
        embedder: Embedder,
        settings: MemorySettings,
        home: Path,
        audit: AuditWriter | None = None,
        *,
        archive: ArchiveStore | None = None,
        clock: Clock = utcnow,
    ) -> MemoryService:
        """The service on ``store``: pgvector where the database has it, else in process."""
        repo = MemoryRepo(store)
        vectors = await open_vectors(repo, settings.pg_ef_search)
        chosen = archive or open_archive(settings, home)
        return cls(repo, vectors, embedder, settings, archive=chosen, audit=audit, clock=clock)

    # --- recent -------------------------------------------------------------------------

    async def remember_turn(
        self, user: str, role: str, content: str, conversation: str | None = None
    ) -> RecentTurn:
        """Keep one turn; the user's oldest turns beyond ``recent_size`` are dropped."""
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        turn = RecentTurn(owner=user, role=role, content=content, conversation=conversation,
                          created_at=self.clock())  # fmt: skip
        return await self.repo.add_turn(turn, self.settings.recent_size)

    async def recent(
        self, user: str, limit: int = 20, conversation: str | None = None
    ) -> list[RecentTurn]:
        """The user's newest ``limit`` turns, oldest first (one conversation, or all)."""
        return await self.repo.recent(user, max(1, limit), conversation)

    async def remember_exchange(
        self, user: str, question: str, answer: str, conversation: str
    ) -> None:
        """Keep a question and its answer as the user's two newest turns."""
        await self.remember_turn(user, "user", question, conversation)
        await self.remember_turn(user, "assistant", answer, conversation)

    # --- long-term ----------------------------------------------------------------------

    async def add(
        self, actor: Actor, user: str, text: str, *, kind: str = "fact", source: str = "api"
    ) -> Memory:
        text, kind = _checked(text, kind)
        vector = await self.embedder.passages([text])
        return await self._insert(actor, self._new(user, text, kind, source, vector))

    def _new(self, user: str, text: str, kind: str, source: str, vector: Matrix) -> NewMemory:
        return NewMemory(user, kind, text, source, to_bytes(vector[0]), self.embedder.name)

    async def _insert(self, actor: Actor, new: NewMemory) -> Memory:
        (row,), generation = await self.repo.insert([new], self.clock())
        self.vectors.changed(new.owner, generation, [row], [])
        detail = {"user": new.owner, "id": row.id, "source": new.source}
        await self._audit(actor, "memory.add", detail)
        return row

    async def edit(
        self, actor: Actor, user: str, memory_id: int, text: str, *, kind: str | None = None
    ) -> Memory:
        current = await self.repo.get(user, memory_id)
        text, kind = _checked(text, kind or current.kind)
        vector = await self.embedder.passages([text])
        values = {"text": text, "kind": kind, "embedding": to_bytes(vector[0]),
                  "embedder": self.embedder.name, "updated_at": self.clock()}  # fmt: skip
        row, generation = await self.repo.update(user, memory_id, values)
        self.vectors.changed(user, generation, [row], [memory_id])
        await self._audit(actor, "memory.edit", {"user": user, "id": memory_id})
        return row

    async def delete(self, actor: Actor, user: str, memory_id: int) -> None:
        await self.repo.get(user, memory_id)  # NotFound for another user's id
        gone, generation = await self.repo.delete(user, [memory_id])
        self.vectors.changed(user, generation, [], gone)
        await self._audit(actor, "memory.delete", {"user": user, "id": memory_id})

    async def get(self, user: str, memory_id: int) -> Memory:
        return await self.repo.get(user, memory_id)

    async def list(self, user: str, limit: int = 100, offset: int = 0) -> builtins.list[Memory]:
        """The user's memories, newest first."""
        return await self.repo.list(user, max(1, limit), max(0, offset))

    async def search(
        self,
        user: str,
        query: str,
        k: int = 5,
        *,
        min_score: float = 0.0,
        touch: bool = True,
        queries: QueryVectors | None = None,
    ) -> builtins.list[Hit]:
        """The user's ``k`` memories nearest in meaning to ``query``, best first (its
        vector taken from ``queries`` when the call already embedded it)."""
        if not query.strip():
            raise InvalidRequest("an empty search query")
        if queries is not None:
            vector = await queries.of(self.embedder, query)
        else:
            vector = await self.embedder.query(query)
        found = await self.vectors.search(user, vector, max(1, k))
        rows = await self.repo.by_ids(user, [item for item, _ in found])
        hits = [Hit(rows[i], s) for i, s in found if i in rows and s >= min_score]
        if touch:
            await self.repo.touch([hit.memory.id for hit in hits], self.clock())
        return hits

    async def erase(self, actor: Actor, user: str) -> dict[str, int]:
        """Everything kept about ``user``: memories, recent turns and the archive."""
        memories, turns, _generation = await self.repo.erase(user)
        self.vectors.forget(user)
        keys = await asyncio.to_thread(self.archive.keys, owner_prefix(user))
        await asyncio.to_thread(self.archive.delete, keys)
        counts = {"memories": memories, "recent": turns, "archived": len(keys)}
        await self._audit(actor, "memory.erase", {"user": user, **counts})
        return counts

    async def recall(
        self,
        user: str,
        query: str,
        *,
        k: int,
        recent: int = 0,
        window: int = 0,
        besides: str = "",
        queries: QueryVectors | None = None,
    ) -> Recalled:
        """What an assistant is told about ``user`` before it answers ``query``: the ``k``
        memories nearest in meaning (none for an empty query), and the newest ``recent``
        turns among the user's last ``window`` that are not of the conversation
        ``besides`` (the one being answered, whose history goes in whole). The query's
        vector is shared through ``queries`` with the call's other searches."""
        memories: builtins.list[str] = []
        if k and query.strip():
            hits = await self.search(user, query, k, queries=queries)
            memories = [hit.memory.text for hit in hits]
        turns: builtins.list[tuple[str, str]] = []
        if recent:
            rows = await self.recent(user, window)
            turns = [(t.role, t.content) for t in rows if t.conversation != besides][-recent:]
        return Recalled(memories, turns)

    # --- extraction ---------------------------------------------------------------------

    async def extract_and_apply(
        self,
        actor: Actor,
        user: str,
        turn: Sequence[Mapping[str, str]],
        chat: Chat,
        *,
        related: int = 10,
    ) -> builtins.list[Applied]:
        """Ask the model (``chat``) what this turn changes in the user's memory, and do it."""
        said = " ".join(m.get("content", "") for m in turn if m.get("role") == "user").strip()
        hits = await self.search(user, said, related, touch=False) if said else []
        existing = [(hit.memory.id, hit.memory.text) for hit in hits]
        prompt = build_prompt(turn, existing, today=self.clock().date().isoformat())
        operations = parse_operations(await chat(prompt), existing)
        return [await self._apply(actor, user, operation) for operation in operations]

    async def _apply(self, actor: Actor, user: str, operation: Operation) -> Applied:
        if operation.op == "ADD":
            text, kind = _checked(operation.text, operation.kind)
            vector = await self.embedder.passages([text])
            kept = await self._kept_already(user, text, vector)
            if kept is not None:  # a model that re-adds what is known changes nothing
                return Applied("NONE", kept.id, kept.text)
            row = await self._insert(actor, self._new(user, text, kind, "extracted", vector))
            return Applied("ADD", row.id, row.text)
        assert operation.id is not None
        if operation.op == "UPDATE":
            row = await self.edit(actor, user, operation.id, operation.text)
            return Applied("UPDATE", row.id, row.text)
        await self.delete(actor, user, operation.id)
        return Applied("DELETE", operation.id, "")

    async def _kept_already(self, user: str, text: str, vector: Matrix) -> Memory | None:
        """The user's memory with the same words as ``text`` (case, spacing and a final
        full stop aside), found among its nearest vectors. Only the same words: e5 puts
        "prefers email to calls" and "prefers calls to email" at a cosine of 0.998."""
        found = await self.vectors.search(user, vector, 3)
        rows = await self.repo.by_ids(user, [item for item, _ in found])
        same = [row for row in rows.values() if _words(row.text) == _words(text)]
        return same[0] if same else None

    # --- archive ------------------------------------------------------------------------

    async def archive_due(self, actor: Actor) -> int:
        """Move what the policy says is old or unused to the archive; returns how many."""
        now = self.clock()
        after, unused = self.settings.archive_after_days, self.settings.archive_unused_days
        created_before = now - timedelta(days=after) if after else None
        unused_since = now - timedelta(days=unused) if unused else None
        moved = 0
        while done := await self.repo.archive_due(
            created_before, unused_since, ARCHIVE_BATCH, lambda rows: self._put(rows, now)
        ):
            for owner, (gone, generation) in done.items():
                self.vectors.changed(owner, generation, [], gone)
                moved += len(gone)
        if moved:
            await self._audit(actor, "memory.archive", {"moved": moved, "store": self.archive.name})
        return moved

    async def archive_ids(self, actor: Actor, user: str, ids: Sequence[int]) -> int:
        """Move these memories of ``user`` to the archive now."""
        rows = list((await self.repo.by_ids(user, ids)).values())
        moved = await self._move(rows, self.clock()) if rows else 0
        await self._audit(actor, "memory.archive", {"user": user, "ids": sorted(ids)})
        return moved

    async def archived(self, user: str) -> builtins.list[Archived]:
        keys = await asyncio.to_thread(self.archive.keys, owner_prefix(user))
        return [Archived.from_json(await asyncio.to_thread(self.archive.get, k)) for k in keys]

    async def restore(
        self, actor: Actor, user: str, ids: Sequence[int] | None = None
    ) -> builtins.list[Memory]:
        """Bring archived memories of ``user`` back (all of them when ``ids`` is None)."""
        keys = await asyncio.to_thread(self.archive.keys, owner_prefix(user))
        wanted = [k for k in keys if ids is None or id_of(k) in set(ids)]
        items = [Archived.from_json(await asyncio.to_thread(self.archive.get, k)) for k in wanted]
        live = await self.repo.by_ids(user, [item.id for item in items])
        fresh = [await self._revived(item) for item in items if item.id not in live]
        rows: builtins.list[Memory] = []
        if fresh:
            rows, generation = await self.repo.insert(fresh, self.clock())
            self.vectors.changed(user, generation, rows, [])
        await asyncio.to_thread(self.archive.delete, wanted)
        await self._audit(actor, "memory.restore", {"user": user, "ids": [r.id for r in rows]})
        return rows

    async def _put(self, rows: Sequence[Memory], now: datetime) -> None:
        for row in rows:
            data = Archived.of(row, now).to_json()
            await asyncio.to_thread(self.archive.put, key_of(row.owner, row.id), data)

    async def _move(self, rows: Sequence[Memory], now: datetime) -> int:
        """Archive first, then delete: a crash between leaves a copy, never a loss."""
        await self._put(rows, now)
        owners: dict[str, builtins.list[int]] = {}
        for row in rows:
            owners.setdefault(row.owner, []).append(row.id)
        for owner, ids in owners.items():
            gone, generation = await self.repo.delete(owner, ids)
            self.vectors.changed(owner, generation, [], gone)
        return len(rows)

    async def _revived(self, item: Archived) -> NewMemory:
        embedding = item.embedding
        if item.embedder != self.embedder.name:  # the embedder changed since: embed again
            embedding = to_bytes((await self.embedder.passages([item.text]))[0])
        return NewMemory(item.owner, item.kind, item.text, "restored", embedding,
                         self.embedder.name, id=item.id)  # fmt: skip

    # --- audit --------------------------------------------------------------------------

    async def _audit(self, actor: Actor, action: str, detail: dict[str, Any]) -> None:
        if self.audit is not None:
            await self.audit.write(actor.record(action, detail, at=self.clock()))


def _words(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".。!！")


def _checked(text: str, kind: str) -> tuple[str, str]:
    text = " ".join(text.split())
    if not text:
        raise InvalidRequest("a memory needs some text")
    if len(text) > MAX_TEXT:
        raise InvalidRequest(f"a memory is at most {MAX_TEXT} characters")
    if kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return text, kind
