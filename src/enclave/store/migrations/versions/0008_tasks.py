"""Agent tasks: stored definitions, runs (the queue), their events, schedules.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

``task_runs`` is both the queue and the record (claimed with a guarded UPDATE and a
lease; see :mod:`enclave.tasks.repo`); ``task_events`` numbers each run's events from 1;
the unique (``schedule_id``, ``scheduled_for``) keeps a schedule's time from firing twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def text(name: str, size: int | None = None, *, nullable: bool = False) -> sa.Column[object]:
    kind = sa.String(size) if size else sa.Text()
    return sa.Column(name, kind, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "task_defs",
        text("name", 64),
        text("owner", 128, nullable=True),
        text("description"),
        sa.Column("definition", sa.JSON(), nullable=False),
        when("created_at"),
        when("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_task_defs"),
    )
    _runs()
    op.create_table(
        "task_events",
        text("run_id", 32),
        sa.Column("seq", sa.Integer(), nullable=False),
        when("at"),
        text("type", 32),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["task_runs.id"],
            name="fk_task_events_run_id_task_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_task_events"),
    )
    _schedules()


def _runs() -> None:
    op.create_table(
        "task_runs",
        text("id", 32),
        text("task", 64),
        text("owner", 128, nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        text("status", 16),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        when("not_before"),
        text("lease_owner", 64, nullable=True),
        when("lease_until", nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        text("schedule_id", 32, nullable=True),
        when("scheduled_for", nullable=True),
        text("retry_of", 32, nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("progress_percent", sa.Float(), nullable=True),
        text("progress_message", nullable=True),
        sa.Column("last_event", sa.Integer(), nullable=False),
        when("created_at"),
        when("started_at", nullable=True),
        when("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_task_runs"),
        sa.UniqueConstraint("schedule_id", "scheduled_for", name="uq_task_runs_schedule_id"),
    )
    op.create_index("ix_task_runs_status_not_before", "task_runs", ["status", "not_before"])
    op.create_index("ix_task_runs_owner_created_at", "task_runs", ["owner", "created_at"])
    op.create_index("ix_task_runs_schedule_id", "task_runs", ["schedule_id"])


def _schedules() -> None:
    op.create_table(
        "task_schedules",
        text("id", 32),
        text("owner", 128, nullable=True),
        text("name", 128),
        text("task", 64),
        sa.Column("params", sa.JSON(), nullable=False),
        text("kind", 16),
        text("cron", 128, nullable=True),
        text("timezone", 64, nullable=True),
        sa.Column("every_s", sa.Float(), nullable=True),
        when("at", nullable=True),
        text("missed", 8),
        sa.Column("paused", sa.Boolean(), nullable=False),
        when("next_run_at", nullable=True),
        when("last_run_at", nullable=True),
        text("last_run", 32, nullable=True),
        when("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_task_schedules"),
    )
    op.create_index("ix_task_schedules_owner", "task_schedules", ["owner"])
    op.create_index("ix_task_schedules_next_run_at", "task_schedules", ["next_run_at"])


def downgrade() -> None:
    op.drop_table("task_schedules")
    op.drop_table("task_events")
    op.drop_table("task_runs")
    op.drop_table("task_defs")
