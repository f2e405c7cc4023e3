"""Memory tiers: memory_recent, memories, memory_owners; on PostgreSQL, memory_vectors.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

On PostgreSQL with pgvector (see 0002, which creates the extension when it may),
``memory_vectors`` holds each memory's embedding as a ``vector`` with an HNSW index for
384 dimensions (the bundled e5); other dimensions get theirs when first used
(``enclave.memory.repository``). Elsewhere memories are searched in process.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PG_VECTORS = (
    "CREATE TABLE memory_vectors (memory_id bigint PRIMARY KEY "
    "REFERENCES memories (id) ON DELETE CASCADE, owner varchar(64) NOT NULL, "
    "dims integer NOT NULL, embedding vector NOT NULL)",
    "CREATE INDEX memory_vectors_owner ON memory_vectors (owner)",
    "CREATE INDEX memory_vectors_hnsw_384 ON memory_vectors "
    "USING hnsw ((embedding::vector(384)) vector_ip_ops) WHERE dims = 384",
)


def when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    _tables()
    if op.get_bind().dialect.name == "postgresql" and _pgvector():
        for statement in PG_VECTORS:
            op.execute(statement)


def _tables() -> None:
    op.create_table(
        "memory_recent",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("conversation", sa.String(length=128), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        when("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_recent")),
    )
    op.create_index("ix_memory_recent_owner_id", "memory_recent", ["owner", "id"])
    op.create_table(
        "memories",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("embedder", sa.String(length=256), nullable=False),
        when("created_at"),
        when("updated_at"),
        when("last_used_at", nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memories")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_memories_owner_id", "memories", ["owner", "id"])
    op.create_table(
        "memory_owners",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_memory_owners")),
    )


def _pgvector() -> bool:
    """Whether pgvector is installed (0002 installs it where it can)."""
    found = op.get_bind().execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'"))
    return found.first() is not None


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS memory_vectors")
    op.drop_table("memory_owners")
    op.drop_index("ix_memories_owner_id", table_name="memories")
    op.drop_table("memories")
    op.drop_index("ix_memory_recent_owner_id", table_name="memory_recent")
    op.drop_table("memory_recent")
