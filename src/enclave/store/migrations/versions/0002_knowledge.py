"""Knowledge bases: kb, kb_documents, kb_chunks, and their search indexes per dialect.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The keyword and vector indexes are made with raw SQL for one dialect each (see
``enclave.store.models_knowledge``):

- SQLite: ``kb_fts``, FTS5 over ``kb_chunks.terms`` (external content) and the triggers
  that keep it in step;
- PostgreSQL: ``kb_chunks.terms_tsv`` (generated ``tsvector``) with a GIN index, and, when
  the pgvector extension can be had, ``kb_vectors`` (its per-knowledge-base HNSW indexes
  are made when a knowledge base is created). Without pgvector, vectors are searched in
  process, as on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SQLITE_FTS = (
    "CREATE VIRTUAL TABLE kb_fts USING fts5(terms, content='kb_chunks', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER kb_fts_insert AFTER INSERT ON kb_chunks BEGIN "
    "INSERT INTO kb_fts(rowid, terms) VALUES (new.id, new.terms); END",
    "CREATE TRIGGER kb_fts_delete AFTER DELETE ON kb_chunks BEGIN "
    "INSERT INTO kb_fts(kb_fts, rowid, terms) VALUES ('delete', old.id, old.terms); END",
    "CREATE TRIGGER kb_fts_update AFTER UPDATE OF terms ON kb_chunks BEGIN "
    "INSERT INTO kb_fts(kb_fts, rowid, terms) VALUES ('delete', old.id, old.terms); "
    "INSERT INTO kb_fts(rowid, terms) VALUES (new.id, new.terms); END",
)
PG_FULLTEXT = (
    "ALTER TABLE kb_chunks ADD COLUMN terms_tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', terms)) STORED",
    "CREATE INDEX ix_kb_chunks_terms_tsv ON kb_chunks USING gin (terms_tsv)",
)
PG_VECTORS = (
    "CREATE TABLE kb_vectors (chunk_id bigint PRIMARY KEY "
    "REFERENCES kb_chunks (id) ON DELETE CASCADE, kb_id integer NOT NULL, "
    "embedding vector NOT NULL)",
)


def when(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    _tables()
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    elif dialect == "postgresql":
        for statement in PG_FULLTEXT:
            op.execute(statement)
        if _pgvector():
            for statement in PG_VECTORS:
                op.execute(statement)


def _tables() -> None:
    op.create_table(
        "kb",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("embedder", sa.String(length=512), nullable=False),
        sa.Column("embedding_model", sa.String(length=256), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("chunk_overlap", sa.Integer(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        when("created_at"),
        when("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb")),
        sa.UniqueConstraint("name", name=op.f("uq_kb_name")),
    )
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kb_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        when("added_at"),
        sa.ForeignKeyConstraint(
            ["kb_id"], ["kb.id"], name=op.f("fk_kb_documents_kb_id_kb"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_documents")),
        sa.UniqueConstraint("kb_id", "source", name="uq_kb_documents_kb_id_source"),
    )
    op.create_index(op.f("ix_kb_documents_kb_id"), "kb_documents", ["kb_id"])
    op.create_table(
        "kb_chunks",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("kb_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("ord", sa.Integer(), nullable=False),
        sa.Column("heading", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["kb_id"], ["kb.id"], name=op.f("fk_kb_chunks_kb_id_kb"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["kb_documents.id"],
            name=op.f("fk_kb_chunks_document_id_kb_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_chunks")),
    )
    op.create_index(op.f("ix_kb_chunks_kb_id"), "kb_chunks", ["kb_id"])
    op.create_index(op.f("ix_kb_chunks_document_id"), "kb_chunks", ["document_id"])


def _pgvector() -> bool:
    """Whether pgvector is installed here, creating it if it is available and we may."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first():
        return True
    available = "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
    if not bind.execute(sa.text(available)).first():
        return False
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError:  # not allowed (needs a superuser): keyword + in-process vectors
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TABLE IF EXISTS kb_fts")
    elif dialect == "postgresql":
        op.execute("DROP TABLE IF EXISTS kb_vectors")
    op.drop_table("kb_chunks")  # its triggers and the GIN index go with it
    op.drop_index(op.f("ix_kb_documents_kb_id"), table_name="kb_documents")
    op.drop_table("kb_documents")
    op.drop_table("kb")
