"""Tables of the knowledge bases (gathered by :mod:`enclave.store.schema`).

``kb_chunks`` is the source of truth on every database: text, heading path, the words for
keyword search (``terms``, pre-segmented, see :mod:`enclave.knowledge.segment`) and the
embedding as little-endian float32 bytes. The search indexes are dialect-specific and made
by migration 0002 with raw SQL, outside these models (:data:`UNMANAGED` keeps them out of
autogenerate's comparison):

- SQLite: ``kb_fts``, an FTS5 table over ``kb_chunks.terms`` (external content, kept in
  step by triggers); vectors are searched in process (:mod:`enclave.vectors.index`).
- PostgreSQL: ``kb_chunks.terms_tsv``, a generated ``tsvector`` with a GIN index; with
  pgvector, ``kb_vectors`` (chunk id → ``vector``) with one HNSW index per knowledge base.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from enclave.store.base import Base

# Names that migrations create by hand for one dialect; prefixes cover FTS5's shadow
# tables (kb_fts_data, ...) and the per-knowledge-base indexes.
UNMANAGED = ("kb_fts", "kb_vectors", "terms_tsv", "ix_kb_chunks_terms_tsv")
Base.metadata.info.setdefault("unmanaged", set()).update(UNMANAGED)

BIGINT = BigInteger().with_variant(Integer, "sqlite")  # SQLite: INTEGER PRIMARY KEY = rowid


class KnowledgeBase(Base):
    __tablename__ = "kb"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    embedder: Mapped[str] = mapped_column(String(512))  # "local" or an embeddings base URL
    embedding_model: Mapped[str] = mapped_column(String(256))
    dims: Mapped[int] = mapped_column(Integer)
    chunk_size: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)  # bumped on every change
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class KbDocument(Base):
    __tablename__ = "kb_documents"
    __table_args__ = (UniqueConstraint("kb_id", "source", name="uq_kb_documents_kb_id_source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kb_id: Mapped[int] = mapped_column(ForeignKey("kb.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(1024))  # absolute path, or an upload's name
    name: Mapped[str] = mapped_column(String(256))  # file name, for citations
    kind: Mapped[str] = mapped_column(String(16))  # md, pdf, ...
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime]


class KbChunk(Base):
    __tablename__ = "kb_chunks"

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    kb_id: Mapped[int] = mapped_column(ForeignKey("kb.id", ondelete="CASCADE"), index=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("kb_documents.id", ondelete="CASCADE"), index=True
    )
    ord: Mapped[int] = mapped_column(Integer)  # position in the document
    heading: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    terms: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
