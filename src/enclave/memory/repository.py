"""Storage of the memory tiers: the only code that queries the memory tables.

:class:`MemoryRepo` reads and changes rows, each call in its own transaction, on SQLite
and PostgreSQL alike. The ``memories`` table is the source of truth; vector search sits
behind one interface, :class:`MemoryVectors`, with two implementations:

- :class:`InProcessVectors` (the embedded default): one :class:`VectorIndex` per user,
  built from the user's rows on first search and kept in step by every change. A user's
  ``generation`` (bumped in the same transaction as each change) tells a process that
  another process changed the rows, and the index is rebuilt.
- :class:`PgVectors` (PostgreSQL with pgvector): ``memory_vectors`` rows written in the
  same transaction as the memory, searched through the HNSW index for the embedder's
  dimensions, filtered by user.

Per user rather than one index with a filter: a query cannot reach another user's rows
at all, its cost grows with the user's own memories and not everyone's, small users get
exact search, and erasing a user drops one index.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from enclave.errors import NotFound
from enclave.store.models_memory import Memory, MemoryOwner, RecentTurn

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from enclave.store.repos import Store
    from enclave.vectors.index import VectorIndex

    Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class NewMemory:
    owner: str
    kind: str
    text: str
    source: str
    embedding: bytes
    embedder: str
    id: int | None = None  # restoring from the archive keeps the old id


def to_bytes(vector: Any) -> bytes:
    import numpy as np

    data: bytes = np.asarray(vector, dtype="<f4").reshape(-1).tobytes()
    return data


def from_bytes(blobs: Sequence[bytes]) -> Matrix:
    import numpy as np

    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.vstack([np.frombuffer(b, dtype="<f4") for b in blobs]).astype(np.float32)


class MemoryRepo:
    def __init__(self, store: Store) -> None:
        self.sessions = store.sessions
        self.dialect = store.engine.dialect.name

    # --- recent tier ---------------------------------------------------------------------

    async def add_turn(self, turn: RecentTurn, keep: int) -> RecentTurn:
        """Store a turn and trim the owner's turns to the newest ``keep``."""
        async with self.sessions.begin() as session:
            session.add(turn)
            await session.flush()
            oldest_kept = (
                select(RecentTurn.id).where(RecentTurn.owner == turn.owner)
                .order_by(RecentTurn.id.desc()).offset(keep - 1).limit(1).scalar_subquery()
            )  # fmt: skip
            await session.execute(
                delete(RecentTurn).where(
                    RecentTurn.owner == turn.owner, RecentTurn.id < oldest_kept
                )
            )
        return turn

    async def recent(
        self, owner: str, limit: int, conversation: str | None = None
    ) -> list[RecentTurn]:
        """The owner's newest ``limit`` turns, oldest first."""
        query = select(RecentTurn).where(RecentTurn.owner == owner)
        if conversation is not None:
            query = query.where(RecentTurn.conversation == conversation)
        async with self.sessions() as session:
            rows = await session.scalars(query.order_by(RecentTurn.id.desc()).limit(limit))
            return list(reversed(rows.all()))

    async def count_turns(self, owner: str) -> int:
        async with self.sessions() as session:
            query = select(func.count()).where(RecentTurn.owner == owner)
            return int((await session.execute(query)).scalar_one())

    # --- long-term tier ------------------------------------------------------------------

    async def insert(self, new: Sequence[NewMemory], when: datetime) -> tuple[list[Memory], int]:
        """Store memories (all of one owner); returns them and the owner's new generation."""
        rows = [_row(item, when) for item in new]
        async with self.sessions.begin() as session:
            session.add_all(rows)
            await session.flush()
            await self._pg_upsert(session, rows)
            generation = await _bump(session, new[0].owner)
        return rows, generation

    async def update(
        self, owner: str, memory_id: int, values: dict[str, Any]
    ) -> tuple[Memory, int]:
        async with self.sessions.begin() as session:
            row = await _owned(session, owner, memory_id)
            for name, value in values.items():
                setattr(row, name, value)
            await session.flush()
            await self._pg_upsert(session, [row])
            return row, await _bump(session, owner)

    async def delete(self, owner: str, ids: Sequence[int]) -> tuple[list[int], int]:
        """Delete the owner's memories among ``ids``; returns those deleted."""
        async with self.sessions.begin() as session:
            query = delete(Memory).where(Memory.owner == owner, Memory.id.in_(ids))
            gone = list((await session.scalars(query.returning(Memory.id))).all())
            return gone, await _bump(session, owner)

    async def get(self, owner: str, memory_id: int) -> Memory:
        async with self.sessions() as session:
            return await _owned(session, owner, memory_id)

    async def by_ids(self, owner: str, ids: Sequence[int]) -> dict[int, Memory]:
        async with self.sessions() as session:
            query = select(Memory).where(Memory.owner == owner, Memory.id.in_(ids))
            return {row.id: row for row in (await session.scalars(query)).all()}

    async def list(self, owner: str, limit: int, offset: int = 0) -> builtins.list[Memory]:
        """The owner's memories, newest first."""
        query = (
            select(Memory).where(Memory.owner == owner)
            .order_by(Memory.id.desc()).limit(limit).offset(offset)
        )  # fmt: skip
        async with self.sessions() as session:
            return builtins.list((await session.scalars(query)).all())

    async def vectors(self, owner: str) -> tuple[builtins.list[int], builtins.list[bytes]]:
        """Every memory id of the owner with its embedding (to build an index)."""
        query = select(Memory.id, Memory.embedding).where(Memory.owner == owner)
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
        return [row[0] for row in rows], [row[1] for row in rows]

    async def touch(self, ids: Sequence[int], when: datetime) -> None:
        """Mark memories as used by a search now (for the unused-for archive policy)."""
        if not ids:
            return
        async with self.sessions.begin() as session:
            await session.execute(
                update(Memory).where(Memory.id.in_(ids))
                .values(last_used_at=when, uses=Memory.uses + 1)
            )  # fmt: skip

    async def archive_due(
        self,
        created_before: datetime | None,
        unused_since: datetime | None,
        limit: int,
        keep: Callable[[builtins.list[Memory]], Awaitable[None]],
    ) -> dict[str, tuple[builtins.list[int], int]]:
        """One batch of :meth:`due` memories, ``keep`` (archived), then deleted, in ONE
        transaction: per owner, the ids deleted and the new generation; ``{}`` when none
        is due. The rows are claimed (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so gateway
        replicas applying the policy at the same time archive each memory once."""
        query = _due(created_before, unused_since, limit)
        if query is None:
            return {}
        async with self.sessions.begin() as session:
            rows = builtins.list(
                (await session.scalars(query.with_for_update(skip_locked=True))).all()
            )
            if not rows:
                return {}
            await keep(rows)  # archive first: a failure here deletes nothing
            owners: dict[str, builtins.list[int]] = {}
            for row in rows:
                owners.setdefault(row.owner, []).append(row.id)
            done = {}
            for owner in sorted(owners):  # one order for every replica's generation rows
                gone = delete(Memory).where(Memory.owner == owner, Memory.id.in_(owners[owner]))
                ids = builtins.list((await session.scalars(gone.returning(Memory.id))).all())
                done[owner] = (ids, await _bump(session, owner))
            return done

    async def erase(self, owner: str) -> tuple[int, int, int]:
        """Delete all the owner's memories and turns: (memories, turns, generation)."""
        async with self.sessions.begin() as session:
            memories = await session.execute(delete(Memory).where(Memory.owner == owner))
            turns = await session.execute(delete(RecentTurn).where(RecentTurn.owner == owner))
            generation = await _bump(session, owner)
        return _count(memories), _count(turns), generation

    async def generation(self, owner: str) -> int:
        async with self.sessions() as session:
            query = select(MemoryOwner.generation).where(MemoryOwner.owner == owner)
            return int((await session.execute(query)).scalar_one_or_none() or 0)

    # --- pgvector --------------------------------------------------------------------------

    async def has_pgvector(self) -> bool:
        if self.dialect != "postgresql":
            return False
        async with self.sessions() as session:
            found = await session.execute(text("SELECT to_regclass('memory_vectors')"))
            return found.scalar_one_or_none() is not None

    async def _pg_upsert(self, session: AsyncSession, rows: Sequence[Memory]) -> None:
        if self.dialect != "postgresql" or not await _pg_table(session):
            return
        statement = text(
            "INSERT INTO memory_vectors (memory_id, owner, dims, embedding) "
            "VALUES (:id, :owner, :dims, CAST(:vector AS vector)) ON CONFLICT (memory_id) "
            "DO UPDATE SET dims = EXCLUDED.dims, embedding = EXCLUDED.embedding"
        )
        params = [_pg_params(row) for row in rows]
        await session.execute(statement, params)


def _pg_params(row: Memory) -> dict[str, Any]:
    vector = from_bytes([row.embedding])[0]
    return {"id": row.id, "owner": row.owner, "dims": len(vector), "vector": pg_vector(vector)}


def pg_vector(vector: Any) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


async def _pg_table(session: AsyncSession) -> bool:
    found = await session.execute(text("SELECT to_regclass('memory_vectors')"))
    return found.scalar_one_or_none() is not None


def _row(item: NewMemory, when: datetime) -> Memory:
    row = Memory(
        owner=item.owner, kind=item.kind, text=item.text, source=item.source,
        embedding=item.embedding, embedder=item.embedder, created_at=when, updated_at=when,
        last_used_at=None, uses=0,
    )  # fmt: skip
    if item.id is not None:
        row.id = item.id
    return row


async def _owned(session: AsyncSession, owner: str, memory_id: int) -> Memory:
    row = await session.get(Memory, memory_id)
    if row is None or row.owner != owner:  # another user's memory does not exist for this one
        raise NotFound(f"no memory {memory_id} for {owner}")
    return row


def _due(created_before: datetime | None, unused_since: datetime | None, limit: int) -> Any:
    """The query of memories too old, or unused for too long (None: no policy)."""
    tests = []
    if created_before is not None:
        tests.append(Memory.created_at < created_before)
    if unused_since is not None:
        last = func.coalesce(Memory.last_used_at, Memory.created_at)
        tests.append(last < unused_since)
    if not tests:
        return None
    return select(Memory).where(or_(*tests)).order_by(Memory.id).limit(limit)


async def _bump(session: AsyncSession, owner: str) -> int:
    """The owner's next generation (an upsert: safe when two processes write at once)."""
    statement = text(
        "INSERT INTO memory_owners (owner, generation) VALUES (:owner, 1) "
        "ON CONFLICT (owner) DO UPDATE SET generation = memory_owners.generation + 1 "
        "RETURNING generation"
    )
    return int((await session.execute(statement, {"owner": owner})).scalar_one())


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# --- vector search ---------------------------------------------------------------------------


class MemoryVectors(Protocol):
    """Nearest memories of one owner; kept in step by :meth:`changed` after each write."""

    async def search(self, owner: str, query: Matrix, k: int) -> list[tuple[int, float]]: ...

    def changed(
        self, owner: str, generation: int, added: Sequence[Memory], removed: Sequence[int]
    ) -> None: ...

    def forget(self, owner: str) -> None: ...


class InProcessVectors:
    """One :class:`VectorIndex` per owner, rebuilt from the database when it is stale."""

    def __init__(self, repo: MemoryRepo) -> None:
        self.repo = repo
        self._indexes: dict[str, tuple[int, VectorIndex]] = {}

    async def search(self, owner: str, query: Matrix, k: int) -> list[tuple[int, float]]:
        generation = await self.repo.generation(owner)
        cached = self._indexes.get(owner)
        if cached is None or cached[0] != generation:
            cached = (generation, await self._build(owner))
            self._indexes[owner] = cached
        return cached[1].search(query, k)

    def changed(
        self, owner: str, generation: int, added: Sequence[Memory], removed: Sequence[int]
    ) -> None:
        """Apply a write we made; if another process wrote in between, rebuild later."""
        cached = self._indexes.get(owner)
        if cached is None:
            return
        if cached[0] != generation - 1:
            del self._indexes[owner]
            return
        index = cached[1]
        index.remove(removed)
        if added:
            index.add([row.id for row in added], from_bytes([row.embedding for row in added]))
        self._indexes[owner] = (generation, index)

    def forget(self, owner: str) -> None:
        self._indexes.pop(owner, None)

    async def _build(self, owner: str) -> VectorIndex:
        import asyncio

        from enclave.vectors.index import VectorIndex

        ids, blobs = await self.repo.vectors(owner)
        index = VectorIndex()
        if ids:
            await asyncio.to_thread(index.add, ids, from_bytes(blobs))
        return index


PG_SEARCH = (
    "SELECT memory_id, -((embedding::vector(DIMS)) <#> CAST(:q AS vector)) AS score "
    "FROM memory_vectors WHERE owner = :owner AND dims = DIMS "
    "ORDER BY (embedding::vector(DIMS)) <#> CAST(:q AS vector) LIMIT :k"
)


class PgVectors:
    """pgvector's HNSW over ``memory_vectors``, one partial index per dimension count."""

    def __init__(self, repo: MemoryRepo, ef_search: int = 200) -> None:
        self.repo = repo
        self.ef_search = ef_search
        self._indexed: set[int] = {384}  # made by migration 0003

    async def search(self, owner: str, query: Matrix, k: int) -> list[tuple[int, float]]:
        vector = query.reshape(-1)
        dims = len(vector)
        await self._ensure_index(dims)
        statement = text(PG_SEARCH.replace("DIMS", str(int(dims))))
        async with self.repo.sessions.begin() as session:
            await session.execute(text(f"SET LOCAL hnsw.ef_search = {max(self.ef_search, k)}"))
            await session.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
            rows = await session.execute(
                statement, {"q": pg_vector(vector), "owner": owner, "k": k}
            )
            return [(int(row[0]), float(row[1])) for row in rows]

    def changed(
        self, owner: str, generation: int, added: Sequence[Memory], removed: Sequence[int]
    ) -> None:
        """Nothing to do: the rows were written with the memories."""

    def forget(self, owner: str) -> None:
        """Nothing to do: the rows cascade with the memories."""

    async def _ensure_index(self, dims: int) -> None:
        if dims in self._indexed:
            return
        async with self.repo.sessions.begin() as session:
            await session.execute(
                text(
                    f"CREATE INDEX IF NOT EXISTS memory_vectors_hnsw_{dims} ON memory_vectors "
                    f"USING hnsw ((embedding::vector({dims})) vector_ip_ops) WHERE dims = {dims}"
                )
            )
        self._indexed.add(dims)


async def open_vectors(repo: MemoryRepo, ef_search: int = 200) -> MemoryVectors:
    """pgvector where the database has it (searched with ``ef_search``), else the
    in-process index."""
    if await repo.has_pgvector():
        return PgVectors(repo, ef_search)
    return InProcessVectors(repo)
