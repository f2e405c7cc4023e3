"""Settings of agent tasks (``tasks:`` in the config file; see docs/tasks.md).

Kept apart from :mod:`enclave.config` (which imports :class:`TasksSettings`) so that
neither module grows past the size we allow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ByteSize, Field, field_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class TaskLimits(_Section):
    """Bounds every run keeps; a task definition may lower them, never raise them."""

    timeout_s: float = Field(3600.0, gt=0, description="wall-clock seconds one attempt may run")
    max_attempts: int = Field(
        2, ge=1, le=10, description="attempts of one run: a run whose worker died (or, with "
        "retry_on_error, that failed) is queued again until this many"
    )  # fmt: skip
    max_tokens: int = Field(
        50_000, ge=1, description="prompt + completion tokens of every model call of one run"
    )
    max_steps: int = Field(50, ge=1, le=1000, description="steps in one task definition")
    agent_max_turns: int = Field(
        12, ge=1, le=200, description="model calls one agent step may make (each may call tools)"
    )
    agent_max_tool_calls: int = Field(
        50, ge=1, le=10_000, description="tool calls one agent step may run; past it the "
        "model is told so and asked for its answer"
    )  # fmt: skip
    max_read_bytes: ByteSize = Field(
        ByteSize(8 * 2**20), description="bytes one run may read from the file roots"
    )
    max_files: int = Field(
        500, ge=1, description="files one read step may match (after its since_hours filter)"
    )
    pattern_chars: int = Field(
        1000, ge=10, le=100_000, description="characters of a read's glob or match pattern"
    )
    pattern_globstars: int = Field(
        4, ge=1, le=32, description="'**' parts of one glob (consecutive ones count as one)"
    )
    pattern_seconds: float = Field(
        2.0, gt=0, description="seconds one read (or list) may spend matching its glob and "
        "match patterns; a pattern that backtracks past it fails"
    )  # fmt: skip
    max_write_bytes: ByteSize = Field(
        ByteSize(64 * 2**20), description="bytes one run may write to its output directory"
    )
    max_output_files: int = Field(
        1000, ge=1, description="files one run may hold in its output directory"
    )
    tool_result_chars: int = Field(
        8000, ge=100, description="characters of a tool's result the model reads back (the "
        "rest is cut, saying so)"
    )  # fmt: skip
    template_chars: int = Field(
        1_000_000, ge=100, description="characters the rendered templates of one step's "
        "options may have in all"
    )  # fmt: skip
    template_seconds: float = Field(
        2.0, gt=0, le=60, description="seconds the templates of one step's options may take "
        "to render (in a child process, killed past it)"
    )  # fmt: skip
    template_memory: ByteSize = Field(
        ByteSize(512 * 2**20), ge=64 * 2**20, description="address space of the child "
        "process that renders templates; a template needing more fails"
    )  # fmt: skip
    max_event_bytes: int = Field(
        16_384, ge=1024, description="size of one event's JSON (longer text is cut)"
    )
    max_events: int = Field(10_000, ge=10, description="events one run may record")


class TasksSettings(_Section):
    """Agent tasks: the worker, the scheduler, quotas, and what tasks may touch."""

    enabled: bool = Field(True, description="serve /api/tasks, /api/runs, /api/schedules")
    worker: bool = Field(True, description="run queued runs in this gateway process")
    concurrency: int = Field(2, ge=1, le=256, description="runs this process executes at once")
    poll_interval_s: float = Field(
        1.0, gt=0, le=60, description="how often an idle worker looks for queued runs made by "
        "another process (a run made here, or announced over Redis, wakes it at once)"
    )  # fmt: skip
    lease_s: float = Field(
        30.0, ge=2, description="a running run's lease; renewed every third of it; a run "
        "whose lease ran out (its worker died) is queued again or failed"
    )  # fmt: skip
    scheduler: bool = Field(True, description="fire due schedules from this process")
    tick_s: float = Field(0.25, gt=0, le=10, description="how often due schedules are fired")
    misfire_grace_s: float = Field(
        60.0, gt=0, description="a fire time later than this is missed (the gateway was "
        "down): the schedule's 'missed' policy decides"
    )  # fmt: skip
    max_catch_up: int = Field(
        10, ge=1, description="runs one schedule fires for missed times when missed='all'"
    )
    per_user_running: int = Field(2, ge=1, description="runs of one user executing at once")
    per_user_queued: int = Field(
        100, ge=1, description="runs of one user queued or running; one more gets 429"
    )
    per_user_daily: int = Field(1000, ge=1, description="runs one user may start per day")
    per_user_schedules: int = Field(50, ge=1, description="schedules one user may keep")
    min_interval_s: float = Field(
        60.0, ge=1, description="the shortest interval a schedule may fire at (every_s, and "
        "the gap between a cron expression's times)"
    )  # fmt: skip
    limits: TaskLimits = Field(default_factory=TaskLimits)
    output_dir: Path | None = Field(
        None, description="where runs write their results (one folder per run); default: "
        "HOME/task-output"
    )  # fmt: skip
    file_roots: dict[str, Path] = Field(
        default_factory=dict, description="folders tasks may read, by name (e.g. logs: "
        "/var/log/app); nothing outside them, no '..', no symlink out"
    )  # fmt: skip
    http_allowlist: list[str] = Field(
        default_factory=list, description="URL prefixes tasks may call (http step, http_get "
        "tool); default: none"
    )  # fmt: skip
    commands: dict[str, list[str]] = Field(
        default_factory=dict, description="programs tasks may run, by name: name → argv "
        "(no shell); default: none"
    )  # fmt: skip
    command_timeout_s: float = Field(60.0, gt=0, description="wall-clock seconds of one command")
    command_output_bytes: ByteSize = Field(
        ByteSize(2**20), description="bytes of a command's stdout (and of its stderr) kept; "
        "the rest is read and dropped"
    )  # fmt: skip
    http_timeout_s: float = Field(30.0, gt=0, description="wall-clock seconds of one HTTP call")
    http_max_bytes: ByteSize = Field(
        ByteSize(4 * 2**20), description="bytes of one HTTP response body; a longer one fails"
    )
    events: Literal["local", "redis"] = Field(
        "local", description="how replicas learn of new runs and events at once: 'redis' "
        "publishes on auth.redis_url; 'local' relies on polling across processes"
    )  # fmt: skip
    keep_days: int = Field(
        30, ge=1, description="finished runs, their events and output files kept this long"
    )
    ticket_ttl_s: float = Field(
        30.0, gt=0, le=600, description="life of a one-use WebSocket ticket"
    )
    ws_max_subscriptions: int = Field(
        100, ge=1, description="runs one /api/tasks/ws socket may follow at once"
    )
    max_followers_per_user: int = Field(
        20, ge=1, description="runs one user may follow live at once in one process "
        "(WebSocket subscriptions and SSE streams together; each polls the database)"
    )  # fmt: skip

    @field_validator("file_roots", "commands")
    @classmethod
    def _names(cls, value: dict[str, object]) -> dict[str, object]:
        import re

        bad = sorted(name for name in value if not re.match(NAME_PATTERN, name))
        if bad:
            raise ValueError(f"names must match {NAME_PATTERN}: {bad}")
        return value

    @field_validator("commands")
    @classmethod
    def _argv(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        empty = sorted(name for name, argv in value.items() if not argv)
        if empty:
            raise ValueError(f"a command needs its program: {empty}")
        return value

    def outputs(self, home: Path) -> Path:
        return self.output_dir or home / "task-output"
