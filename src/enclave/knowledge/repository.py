"""The knowledge bases' repository: the only code that queries the ``kb*`` tables.

:func:`kb_repo` picks the implementation for the store's database:

- :class:`SqliteKbRepo`: keyword search with FTS5 (``bm25``); no vector search in SQL —
  the service keeps an in-process index built from the stored embeddings;
- :class:`PostgresKbRepo`: keyword search with ``tsvector`` (``ts_rank``); vector search
  with pgvector's HNSW (one partial index per knowledge base, cosine distance) when the
  ``kb_vectors`` table exists, else in process as on SQLite.

Every change bumps the knowledge base's ``generation``, so that in-process indexes (in
this process or another one, e.g. the gateway while ``enclave kb add`` runs) know when to
catch up. Each call runs in its own transaction; what comes back is plain data.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from enclave.errors import Conflict, NotFound
from enclave.store.models_knowledge import KbChunk, KbDocument, KnowledgeBase
from enclave.store.repos import Clock, Sessions, Store, as_utc, utcnow

if TYPE_CHECKING:
    from enclave.vectors.embedding import Matrix

EF_SEARCH = 100  # pgvector HNSW: candidates kept per search (its default is 40)
ID_BATCH = 500  # ids per IN (...) list


@dataclass(frozen=True)
class KbSpec:
    """What a new knowledge base is made of."""

    name: str
    embedder: str  # "local" or an embeddings base URL
    embedding_model: str
    dims: int
    chunk_size: int
    chunk_overlap: int
    description: str = ""


@dataclass(frozen=True)
class KbInfo:
    id: int
    name: str
    description: str
    embedder: str
    embedding_model: str
    dims: int
    chunk_size: int
    chunk_overlap: int
    generation: int
    created_at: datetime
    updated_at: datetime
    documents: int
    chunks: int


@dataclass(frozen=True)
class DocInfo:
    id: int
    source: str  # absolute path, or an upload's name
    name: str
    kind: str
    sha256: str
    size: int
    chunks: int
    added_at: datetime


@dataclass(frozen=True)
class NewDocument:
    source: str
    name: str
    kind: str
    sha256: str
    size: int


@dataclass(frozen=True)
class NewChunk:
    ord: int
    heading: str
    text: str
    terms: str  # pre-segmented words, space-separated


@dataclass(frozen=True)
class StoredChunk:
    id: int
    ord: int
    heading: str
    text: str
    document: str  # file name
    source: str  # path or upload name


Scored = list[tuple[int, float]]  # (chunk id, score), best first


def _info(kb: KnowledgeBase, documents: int, chunks: int) -> KbInfo:
    return KbInfo(
        id=kb.id, name=kb.name, description=kb.description, embedder=kb.embedder,
        embedding_model=kb.embedding_model, dims=kb.dims, chunk_size=kb.chunk_size,
        chunk_overlap=kb.chunk_overlap, generation=kb.generation, created_at=kb.created_at,
        updated_at=kb.updated_at, documents=documents, chunks=chunks,
    )  # fmt: skip


def _doc(row: KbDocument) -> DocInfo:
    return DocInfo(
        id=row.id, source=row.source, name=row.name, kind=row.kind, sha256=row.sha256,
        size=row.size, chunks=row.chunks, added_at=row.added_at,
    )  # fmt: skip


def vector_bytes(row: Any) -> bytes:
    import numpy as np

    return np.asarray(row, dtype="<f4").tobytes()


class KbRepo:
    """What both databases share; keyword and vector search differ per dialect."""

    def __init__(self, store: Store, *, clock: Clock = utcnow) -> None:
        self._sessions: Sessions = store.sessions
        self._clock = clock

    # knowledge bases

    async def create(self, spec: KbSpec) -> KbInfo:
        """A new, empty knowledge base; :class:`Conflict` if the name is taken."""
        now = as_utc(self._clock())
        row = KnowledgeBase(
            name=spec.name, description=spec.description, embedder=spec.embedder,
            embedding_model=spec.embedding_model, dims=spec.dims, chunk_size=spec.chunk_size,
            chunk_overlap=spec.chunk_overlap, generation=0, created_at=now, updated_at=now,
        )  # fmt: skip
        try:
            async with self._sessions.begin() as session:
                if await _kb(session, spec.name) is not None:
                    raise _exists(spec.name)
                session.add(row)
                await session.flush()
                await self._created(session, row)
        except IntegrityError as exc:
            raise _exists(spec.name) from exc
        return _info(row, 0, 0)

    async def _created(self, session: AsyncSession, kb: KnowledgeBase) -> None:
        """Dialect-specific indexes of a new knowledge base."""

    async def get(self, name: str) -> KbInfo:
        async with self._sessions() as session:
            kb = await _kb(session, name)
            if kb is None:
                raise NotFound(f"no knowledge base named {name!r}", param="name")
            return (await self._infos(session, [kb]))[0]

    async def list(self) -> builtins.list[KbInfo]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(KnowledgeBase).order_by(KnowledgeBase.name))).all()
            return await self._infos(session, rows)

    async def _infos(
        self, session: AsyncSession, rows: Sequence[KnowledgeBase]
    ) -> builtins.list[KbInfo]:
        counted = await session.execute(
            select(KbDocument.kb_id, func.count(), func.coalesce(func.sum(KbDocument.chunks), 0))
            .where(KbDocument.kb_id.in_([r.id for r in rows]))
            .group_by(KbDocument.kb_id)
        )
        docs = {kb_id: (int(n), int(c)) for kb_id, n, c in counted}
        return [_info(r, *docs.get(r.id, (0, 0))) for r in rows]

    async def remove(self, name: str) -> None:
        """Delete a knowledge base with its documents and chunks."""
        async with self._sessions.begin() as session:
            kb = await _kb(session, name)
            if kb is None:
                raise NotFound(f"no knowledge base named {name!r}", param="name")
            await session.execute(delete(KbChunk).where(KbChunk.kb_id == kb.id))
            await session.execute(delete(KbDocument).where(KbDocument.kb_id == kb.id))
            await session.delete(kb)
            await self._removed(session, kb.id)

    async def _removed(self, session: AsyncSession, kb_id: int) -> None:
        """Dialect-specific clean-up after a knowledge base is gone."""

    # documents

    async def documents(self, kb_id: int) -> builtins.list[DocInfo]:
        async with self._sessions() as session:
            query = select(KbDocument).where(KbDocument.kb_id == kb_id).order_by(KbDocument.source)
            return [_doc(row) for row in (await session.scalars(query)).all()]

    async def hashes(self, kb_id: int) -> dict[str, str]:
        """``source → sha256`` of every document, to skip unchanged files."""
        async with self._sessions() as session:
            query = select(KbDocument.source, KbDocument.sha256).where(KbDocument.kb_id == kb_id)
            return dict((await session.execute(query)).all())

    async def replace_document(
        self, kb_id: int, doc: NewDocument, chunks: Sequence[NewChunk], vectors: Matrix
    ) -> DocInfo:
        """Store a document and its chunks, replacing what ``doc.source`` had before."""
        row = KbDocument(
            kb_id=kb_id, source=doc.source, name=doc.name, kind=doc.kind, sha256=doc.sha256,
            size=doc.size, chunks=len(chunks), added_at=as_utc(self._clock()),
        )  # fmt: skip
        try:
            async with self._sessions.begin() as session:
                await _delete_document(session, kb_id, doc.source)
                session.add(row)
                await session.flush()
                ids = await _insert_chunks(session, kb_id, row.id, chunks, vectors)
                await self._vectors_added(session, kb_id, ids, vectors)
                await self._bump(session, kb_id)
        except IntegrityError as exc:
            raise Conflict(f"{doc.source} is being added by another writer; retry") from exc
        return _doc(row)

    async def _vectors_added(
        self, session: AsyncSession, kb_id: int, ids: Sequence[int], vectors: Matrix
    ) -> None:
        """Dialect-specific vector index rows of new chunks."""

    async def remove_document(self, kb_id: int, source: str) -> None:
        async with self._sessions.begin() as session:
            if not await _delete_document(session, kb_id, source):
                raise NotFound(f"no document {source!r} in this knowledge base", param="source")
            await self._bump(session, kb_id)

    async def _bump(self, session: AsyncSession, kb_id: int) -> None:
        await session.execute(
            update(KnowledgeBase)
            .where(KnowledgeBase.id == kb_id)
            .values(generation=KnowledgeBase.generation + 1, updated_at=as_utc(self._clock()))
        )

    # chunks

    async def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        """The chunks of these ids with their documents' names (missing ids left out)."""
        found: dict[int, StoredChunk] = {}
        async with self._sessions() as session:
            for start in range(0, len(ids), ID_BATCH):
                query = (
                    select(KbChunk.id, KbChunk.ord, KbChunk.heading, KbChunk.text,
                           KbDocument.name, KbDocument.source)
                    .join(KbDocument, KbDocument.id == KbChunk.document_id)
                    .where(KbChunk.id.in_(ids[start : start + ID_BATCH]))
                )  # fmt: skip
                for row in await session.execute(query):
                    found[row[0]] = StoredChunk(*row)
        return found

    async def chunk_ids(self, kb_id: int) -> set[int]:
        async with self._sessions() as session:
            query = select(KbChunk.id).where(KbChunk.kb_id == kb_id)
            return set((await session.scalars(query)).all())

    async def embeddings(self, ids: Sequence[int], dims: int) -> tuple[builtins.list[int], Matrix]:
        """The stored vectors of ``ids``, as rows in the order of the returned ids."""
        import numpy as np

        got: builtins.list[int] = []
        blobs: builtins.list[bytes] = []
        async with self._sessions() as session:
            for start in range(0, len(ids), ID_BATCH):
                query = select(KbChunk.id, KbChunk.embedding).where(
                    KbChunk.id.in_(ids[start : start + ID_BATCH])
                )
                for chunk_id, blob in await session.execute(query):
                    got.append(chunk_id)
                    blobs.append(blob)
        matrix = np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32)
        return got, matrix.reshape(len(got), dims)

    # search

    async def keyword(self, kb_id: int, words: Sequence[str], k: int) -> Scored:
        """Chunks matching any of ``words`` (already segmented), by relevance."""
        raise NotImplementedError

    async def vector(self, kb: KbInfo, query: Matrix, k: int) -> Scored | None:
        """Nearest chunks by cosine, if this database searches vectors; else ``None``."""
        return None


class SqliteKbRepo(KbRepo):
    async def keyword(self, kb_id: int, words: Sequence[str], k: int) -> Scored:
        if not words:
            return []
        match = " OR ".join(f'"{word}"' for word in words)
        query = text(
            "SELECT c.id, bm25(kb_fts) AS rank FROM kb_fts JOIN kb_chunks c ON c.id = kb_fts.rowid "
            "WHERE kb_fts MATCH :match AND c.kb_id = :kb ORDER BY rank, c.id LIMIT :k"
        )
        async with self._sessions() as session:
            rows = await session.execute(query, {"match": match, "kb": kb_id, "k": k})
            return [(int(i), -float(rank)) for i, rank in rows]


class PostgresKbRepo(KbRepo):
    _pgvector: bool | None = None

    async def keyword(self, kb_id: int, words: Sequence[str], k: int) -> Scored:
        if not words:
            return []
        query = text(
            "SELECT id, ts_rank(terms_tsv, q, 1) AS rank "
            "FROM kb_chunks, to_tsquery('simple', :q) AS q "
            "WHERE kb_id = :kb AND terms_tsv @@ q ORDER BY rank DESC, id LIMIT :k"
        )
        async with self._sessions() as session:
            rows = await session.execute(query, {"q": " | ".join(words), "kb": kb_id, "k": k})
            return [(int(i), float(rank)) for i, rank in rows]

    async def vector(self, kb: KbInfo, query: Matrix, k: int) -> Scored | None:
        if not await self._has_pgvector():
            return None
        # The knowledge base's id and dims are literals so that the planner can match the
        # partial HNSW index (a generic plan with parameters could not).
        cast = f"CAST(:q AS vector({int(kb.dims)}))"
        distance = f"embedding::vector({int(kb.dims)}) <=> {cast}"
        sql = text(
            f"SELECT chunk_id, 1 - ({distance}) AS score FROM kb_vectors "  # noqa: S608 (ints)
            f"WHERE kb_id = {int(kb.id)} ORDER BY {distance} LIMIT :k"
        )
        async with self._sessions.begin() as session:
            await session.execute(text(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, k)}"))
            rows = await session.execute(sql, {"q": _literal(query[0]), "k": k})
            return [(int(i), float(score)) for i, score in rows]

    async def _has_pgvector(self) -> bool:
        if self._pgvector is None:
            async with self._sessions() as session:
                found = await session.scalar(text("SELECT to_regclass('kb_vectors') IS NOT NULL"))
            self._pgvector = bool(found)
        return self._pgvector

    async def _created(self, session: AsyncSession, kb: KnowledgeBase) -> None:
        if await self._has_pgvector():
            await session.execute(text(
                f"CREATE INDEX {_hnsw_name(kb.id)} ON kb_vectors USING hnsw "
                f"((embedding::vector({int(kb.dims)})) vector_cosine_ops) "
                f"WHERE kb_id = {int(kb.id)}"
            ))  # fmt: skip

    async def _removed(self, session: AsyncSession, kb_id: int) -> None:
        if await self._has_pgvector():
            await session.execute(text(f"DROP INDEX IF EXISTS {_hnsw_name(kb_id)}"))

    async def _vectors_added(
        self, session: AsyncSession, kb_id: int, ids: Sequence[int], vectors: Matrix
    ) -> None:
        if not ids or not await self._has_pgvector():
            return
        rows = [{"id": i, "kb": kb_id, "v": _literal(v)} for i, v in zip(ids, vectors, strict=True)]
        await session.execute(
            text("INSERT INTO kb_vectors (chunk_id, kb_id, embedding) "
                 "VALUES (:id, :kb, CAST(:v AS vector))"),
            rows,
        )  # fmt: skip


def kb_repo(store: Store, *, clock: Clock = utcnow) -> KbRepo:
    """The repository for the store's database."""
    if store.engine.dialect.name == "postgresql":
        return PostgresKbRepo(store, clock=clock)
    return SqliteKbRepo(store, clock=clock)


def _hnsw_name(kb_id: int) -> str:
    return f"ix_kb_vectors_hnsw_{int(kb_id)}"


def _literal(row: Any) -> str:
    """pgvector's text form of a vector: ``[0.1,0.2,...]``."""
    return "[" + ",".join(repr(float(x)) for x in row) + "]"


async def _kb(session: AsyncSession, name: str) -> KnowledgeBase | None:
    found: KnowledgeBase | None = await session.scalar(
        select(KnowledgeBase).where(KnowledgeBase.name == name)
    )
    return found


def _exists(name: str) -> Conflict:
    return Conflict(f"a knowledge base named {name!r} exists already", param="name")


async def _delete_document(session: AsyncSession, kb_id: int, source: str) -> bool:
    doc_id = await session.scalar(
        select(KbDocument.id).where(KbDocument.kb_id == kb_id, KbDocument.source == source)
    )
    if doc_id is None:
        return False
    await session.execute(delete(KbChunk).where(KbChunk.document_id == doc_id))
    await session.execute(delete(KbDocument).where(KbDocument.id == doc_id))
    await session.flush()
    return True


async def _insert_chunks(
    session: AsyncSession, kb_id: int, doc_id: int, chunks: Sequence[NewChunk], vectors: Matrix
) -> list[int]:
    if not chunks:
        return []
    rows = [
        {"kb_id": kb_id, "document_id": doc_id, "ord": c.ord, "heading": c.heading,
         "text": c.text, "terms": c.terms, "embedding": vector_bytes(v)}
        for c, v in zip(chunks, vectors, strict=True)
    ]  # fmt: skip
    statement = insert(KbChunk).returning(KbChunk.id, sort_by_parameter_order=True)
    return list((await session.scalars(statement, rows)).all())
