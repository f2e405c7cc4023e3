"""What the task service returns: :class:`TaskInfo`, :class:`RunInfo`,
:class:`ScheduleInfo`, :class:`Event`; ``public()`` gives each one's JSON (docs/tasks.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from enclave.store.models_tasks import TaskEvent, TaskRun, TaskSchedule

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TaskInfo:
    name: str
    builtin: bool
    owner: str | None
    description: str
    definition: dict[str, Any]
    created_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        found = {
            "name": self.name, "object": "task", "builtin": self.builtin, "owner": self.owner,
            "description": self.description, "params": self.definition.get("params", {}),
            "limits": self.definition.get("limits", {}), "steps": self.definition.get("steps", []),
        }  # fmt: skip
        if self.created_at is not None:
            found["created_at"] = iso(self.created_at)
        return found


@dataclass(frozen=True)
class RunInfo:
    id: str
    task: str
    owner: str | None
    status: str
    params: dict[str, Any]
    attempt: int
    max_attempts: int
    progress_percent: float | None
    progress_message: str | None
    result: Any
    error: dict[str, Any] | None
    files: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    schedule: str | None
    retry_of: str | None
    cancel_requested: bool
    last_event: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    definition: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def of(cls, row: TaskRun) -> RunInfo:
        return cls(
            id=row.id, task=row.task, owner=row.owner, status=row.status, params=row.params,
            attempt=row.attempt, max_attempts=row.max_attempts,
            progress_percent=row.progress_percent, progress_message=row.progress_message,
            result=row.result, error=row.error, files=list(row.files or []),
            prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens,
            schedule=row.schedule_id, retry_of=row.retry_of,
            cancel_requested=row.cancel_requested, last_event=row.last_event,
            created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
            definition=row.definition,
        )  # fmt: skip

    def public(self) -> dict[str, Any]:
        total = self.prompt_tokens + self.completion_tokens
        return {
            "id": self.id, "object": "task.run", "task": self.task, "owner": self.owner,
            "status": self.status, "params": self.params, "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "progress": {"percent": self.progress_percent, "message": self.progress_message},
            "result": self.result, "error": self.error, "files": self.files,
            "usage": {"prompt_tokens": self.prompt_tokens,
                      "completion_tokens": self.completion_tokens, "total_tokens": total},
            "schedule": self.schedule, "retry_of": self.retry_of,
            "cancel_requested": self.cancel_requested, "last_event": self.last_event,
            "created_at": iso(self.created_at), "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
        }  # fmt: skip


@dataclass(frozen=True)
class Event:
    id: int
    run: str
    type: str
    at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, row: TaskEvent) -> Event:
        return cls(id=row.seq, run=row.run_id, type=row.type, at=row.at, data=row.data)

    @property
    def terminal(self) -> bool:
        return self.type == "status" and self.data.get("status") in TERMINAL

    def public(self) -> dict[str, Any]:
        data = self.data
        if self.type == "error" and "type" in data:  # written before error_type was
            data = {k: v for k, v in data.items() if k != "type"} | {"error_type": data["type"]}
        return {**data, "id": self.id, "run": self.run, "type": self.type, "at": iso(self.at)}


def error_event(error: dict[str, Any]) -> dict[str, Any]:
    """An ``error`` event's data from a run's error ``{"message", "type"}``: the type goes
    under ``error_type``, as the event's own ``type`` is ``error``."""
    return {"message": error.get("message"), "error_type": error.get("type")}


@dataclass(frozen=True)
class ScheduleInfo:
    id: str
    name: str
    task: str
    params: dict[str, Any]
    owner: str | None
    trigger: dict[str, Any]
    missed: str
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_run: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: TaskSchedule) -> ScheduleInfo:
        trigger: dict[str, Any] = {"kind": row.kind}
        if row.kind == "cron":
            trigger |= {"cron": row.cron, "timezone": row.timezone or "UTC"}
        elif row.kind == "interval":
            trigger |= {"every_s": row.every_s}
        else:
            trigger |= {"at": iso(row.at)}
        return cls(
            id=row.id, name=row.name, task=row.task, params=row.params, owner=row.owner,
            trigger=trigger, missed=row.missed, paused=row.paused, next_run_at=row.next_run_at,
            last_run_at=row.last_run_at, last_run=row.last_run, created_at=row.created_at,
        )  # fmt: skip

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "task.schedule", "name": self.name, "task": self.task,
            "params": self.params, "owner": self.owner, "trigger": self.trigger,
            "missed": self.missed, "paused": self.paused, "next_run_at": iso(self.next_run_at),
            "last_run_at": iso(self.last_run_at), "last_run": self.last_run,
            "created_at": iso(self.created_at),
        }  # fmt: skip
