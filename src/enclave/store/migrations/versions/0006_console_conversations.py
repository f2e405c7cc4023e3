"""Conversations for the web console: plain models too, answer metadata, a listing index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

``conversations.kind`` says whether an assistant or a plain model answers (rows before
this revision are assistants'). ``conversation_messages.meta`` keeps, per answer, the
model, the upstream member, the token counts, the time to first token and the latency.
The index on (owner, updated_at, id) serves the keyset-paginated listing, newest first.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column("kind", sa.String(16), nullable=False, server_default="assistant"),
    )
    op.add_column("conversation_messages", sa.Column("meta", sa.JSON(), nullable=True))
    op.create_index(
        "ix_conversations_owner_updated_at_id", "conversations", ["owner", "updated_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_owner_updated_at_id", table_name="conversations")
    with op.batch_alter_table("conversation_messages") as batch:
        batch.drop_column("meta")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("kind")
