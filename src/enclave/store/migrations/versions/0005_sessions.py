"""Sessions and accounts: revocable web sessions, per-name login failures, user policies.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

``web_sessions``: one row per login (the refresh-token family), so that logout, refresh
reuse, a password change, disabling and a role change can revoke tokens. ``login_failures``:
the lockout counter, keyed by the name tried (existing or not). ``users`` gains the same
policy columns keys have. Web sessions issued before this revision carry no session id and
are refused: users log in again once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("models", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
    )
    for column in ("rpm", "tpm", "max_concurrency"):
        op.add_column("users", sa.Column(column, sa.Integer(), nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("refresh_jti", sa.String(64), nullable=False),
        when("created_at"),
        when("expires_at"),
        when("revoked_at", nullable=True),
        sa.Column("revoked_why", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_web_sessions_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "login_failures",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        when("last_failed_at"),
        sa.PrimaryKeyConstraint("name", name="pk_login_failures"),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_table("web_sessions")
    with op.batch_alter_table("users") as batch:
        for column in ("max_concurrency", "tpm", "rpm", "models"):
            batch.drop_column(column)
