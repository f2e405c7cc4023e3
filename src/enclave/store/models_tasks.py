"""Tables of agent tasks (gathered by :mod:`enclave.store.schema`).

Only :mod:`enclave.tasks.repo` queries them. ``task_runs`` is the queue and the record
of every run: a worker claims a queued run by setting ``status='running'`` with a lease
(``lease_owner``, ``lease_until``) in one guarded UPDATE; ``last_event`` is the run's
event counter, bumped in the same transaction that inserts ``task_events`` rows, so each
run's events are numbered 1, 2, 3... without gaps. ``task_schedules.next_run_at`` is
advanced in the transaction that inserts the fired runs; the unique
(``schedule_id``, ``scheduled_for``) makes a second firing of one time impossible.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from enclave.store.base import Base


class TaskDef(Base):
    __tablename__ = "task_defs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class TaskRun(Base):
    __tablename__ = "task_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "scheduled_for", name="uq_task_runs_schedule_id"),
        Index("ix_task_runs_status_not_before", "status", "not_before"),
        Index("ix_task_runs_owner_created_at", "owner", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    not_before: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    schedule_id: Mapped[str | None] = mapped_column(String(32), index=True)
    scheduled_for: Mapped[datetime | None]
    retry_of: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    progress_percent: Mapped[float | None] = mapped_column(Float)
    progress_message: Mapped[str | None] = mapped_column(Text)
    last_event: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class TaskEvent(Base):
    __tablename__ = "task_events"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("task_runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class TaskSchedule(Base):
    __tablename__ = "task_schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(128))
    task: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(16))  # once | interval | cron
    cron: Mapped[str | None] = mapped_column(String(128))
    timezone: Mapped[str | None] = mapped_column(String(64))
    every_s: Mapped[float | None] = mapped_column(Float)
    at: Mapped[datetime | None]
    missed: Mapped[str] = mapped_column(String(8))  # skip | once | all
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    next_run_at: Mapped[datetime | None] = mapped_column(index=True)
    last_run_at: Mapped[datetime | None]
    last_run: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
