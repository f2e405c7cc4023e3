"""``/api/tasks``, ``/api/runs``, ``/api/schedules``: agent tasks (docs/tasks-api.md).

The answers mirror what the task service's ``public()`` gives (the contract of issue
15, section 5); ``XPublic.of(info)`` validates that dict. Request bodies are checked
here for their shape (types, unknown fields: 400 naming the field); what they mean (a
task that exists, a cron expression, params of the right types) is the service's to
check, which names the field too.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class _Public(BaseModel):
    """What clients see; fields the service adds later pass through (``extra``)."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def of(cls, info: Any) -> Self:
        data = info.public() if hasattr(info, "public") else info
        return cls.model_validate(data)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- answers ----------------------------------------------------------------------------


class Progress(BaseModel):
    percent: float | None = None
    message: str | None = None


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class OutputFile(_Public):
    path: str
    bytes: int | None = None


class RunError(_Public):
    message: str = ""
    type: str | None = None


class RunPublic(_Public):
    """One run of a task (``object``: ``task.run``)."""

    id: str
    object: Literal["task.run"] = "task.run"
    task: str
    owner: str | None = None
    status: RunStatus
    params: dict[str, JsonValue] = Field(default_factory=dict)
    attempt: int = 0
    max_attempts: int = 1
    progress: Progress = Field(default_factory=Progress)
    result: JsonValue = None
    error: RunError | None = None
    files: list[OutputFile] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    schedule: str | None = None
    retry_of: str | None = None
    cancel_requested: bool = False
    last_event: int = 0
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None


class RunList(BaseModel):
    """A page of runs, newest first; ``next``: the ``before`` cursor of the next page."""

    data: list[RunPublic]
    next: str | None = None


class EventPublic(_Public):
    """One event of a run; the type's own fields (``percent``, ``message``, ``step``...)
    are flattened in beside these."""

    id: int
    run: str
    type: str
    at: str


class EventList(BaseModel):
    data: list[EventPublic]


class TaskPublic(_Public):
    """A task definition (``builtin``: a template shipped with enclave, read-only)."""

    name: str
    object: Literal["task"] = "task"
    builtin: bool = False
    owner: str | None = None
    description: str = ""
    params: dict[str, JsonValue] = Field(default_factory=dict)
    limits: dict[str, JsonValue] = Field(default_factory=dict)
    steps: list[dict[str, JsonValue]] = Field(default_factory=list)
    created_at: str | None = None


class TaskList(BaseModel):
    data: list[TaskPublic]


class TaskDeleted(BaseModel):
    name: str
    deleted: bool


class SchedulePublic(_Public):
    """A schedule (``object``: ``task.schedule``); ``trigger``: ``{"kind": "cron", "cron",
    "timezone"}``, ``{"kind": "interval", "every_s"}`` or ``{"kind": "once", "at"}``."""

    id: str
    object: Literal["task.schedule"] = "task.schedule"
    name: str | None = None
    task: str
    params: dict[str, JsonValue] = Field(default_factory=dict)
    owner: str | None = None
    trigger: dict[str, JsonValue]
    missed: Literal["skip", "once", "all"] = "skip"
    paused: bool = False
    next_run_at: str | None = None
    last_run_at: str | None = None
    last_run: str | None = None
    created_at: str


class ScheduleList(BaseModel):
    data: list[SchedulePublic]


class ScheduleDeleted(BaseModel):
    id: str
    deleted: bool


class Ticket(BaseModel):
    """A one-use ticket for ``/api/tasks/ws?ticket=``, good ``expires_in`` seconds."""

    ticket: str
    expires_in: float


# --- request bodies ---------------------------------------------------------------------


class TaskCreate(_Body):
    """A task definition (docs/tasks.md): checked whole by the service, which names the
    field it refuses (``steps[2].glob``, ``params.since_hours.type``...)."""

    name: str
    description: str = ""
    params: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)
    limits: dict[str, JsonValue] = Field(default_factory=dict)
    retry_on_error: bool = False
    result: str | None = None
    steps: list[dict[str, JsonValue]]


class RunCreate(BaseModel):
    """One of ``{"task", "params"?}``, ``{"definition", "params"?}`` (an ad hoc task) or
    ``{"command": NAME, ...params}`` (the reference's shape: every other field is a param)."""

    model_config = ConfigDict(extra="allow")

    task: str | None = None
    definition: dict[str, JsonValue] | None = None
    command: str | None = None
    params: dict[str, JsonValue] | None = None


class ScheduleCreate(_Body):
    """A schedule of ``task``: exactly one of ``cron`` (with ``timezone``), ``every_s``,
    ``at`` (ISO 8601 with a zone) or ``delay_s`` (once, that many seconds from now)."""

    task: str
    params: dict[str, JsonValue] | None = None
    name: str | None = None
    missed: Literal["skip", "once", "all"] | None = None
    timezone: str | None = None
    cron: str | None = None
    every_s: float | None = None
    at: str | None = None
    delay_s: float | None = None
