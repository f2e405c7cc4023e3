"""Users from the company directory: ``users.source``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

``local``: a user made with ``enclave users add`` or the admin API (password kept here as a
hash). ``ldap``: a user provisioned at its first sign-in with the company directory
(``auth.ldap``): no password here, the role set from its groups at each sign-in.
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
        "users",
        sa.Column("source", sa.String(16), nullable=False, server_default=sa.text("'local'")),
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("source")
