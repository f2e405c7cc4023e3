"""A schedule's POST body, checked: ``{"task", "params"?, "name"?, "missed"?,
"timezone"?}`` and exactly one of ``cron``, ``every_s``, ``at`` (ISO with a zone),
``delay_s``. Every refusal names its field."""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from enclave.store.models_tasks import TaskSchedule
from enclave.taskconfig import NAME_PATTERN
from enclave.tasks.definition import bad, known_fields

FIELDS = {"task", "params", "name", "missed", "timezone", "cron", "every_s", "at", "delay_s"}
TRIGGERS = ("cron", "every_s", "at", "delay_s")
MISSED = ("skip", "once", "all")
MIN_EVERY_S = 1.0
CRON_SAMPLES = 25  # fire times read to find a cron expression's shortest gap


@dataclass(frozen=True)
class ScheduleSpec:
    task: str
    params: dict[str, Any]
    name: str
    missed: str
    kind: str
    cron: str | None = None
    timezone: str | None = None
    every_s: float | None = None
    at: datetime | None = None


def schedule_body(data: Any, now: datetime, min_every_s: float = MIN_EVERY_S) -> ScheduleSpec:
    """The body checked; ``min_every_s`` is ``tasks.min_interval_s``."""
    if not isinstance(data, dict):
        raise bad("a schedule is a JSON object", "schedule")
    known_fields(data, FIELDS)
    task = data.get("task")
    if not isinstance(task, str) or not re.match(NAME_PATTERN, task):
        raise bad("the name of a task is required", "task")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise bad("must be an object", "params")
    name = data.get("name", task)
    if not isinstance(name, str) or not 0 < len(name) <= 128:
        raise bad("must be a string of 1 to 128 characters", "name")
    missed = data.get("missed", "skip")
    if missed not in MISSED:
        raise bad(f"must be one of {', '.join(MISSED)}", "missed")
    given = [key for key in TRIGGERS if data.get(key) is not None]
    if len(given) != 1:
        raise bad(f"give exactly one of {', '.join(TRIGGERS)}", given[1] if given else "cron")
    base = {"task": task, "params": params, "name": name, "missed": missed}
    return _trigger(given[0], data, now, base, min_every_s)


def _trigger(
    key: str, data: dict[str, Any], now: datetime, base: dict[str, Any], least: float
) -> ScheduleSpec:
    value = data[key]
    zone = data.get("timezone")
    if zone is not None and key != "cron":
        raise bad("only a cron schedule takes a time zone", "timezone")
    if key == "cron":
        cron = _cron(value, now, least)
        return ScheduleSpec(**base, kind="cron", cron=cron, timezone=_zone(zone))
    if key == "every_s":
        every = _seconds(value, "every_s", least, "tasks.min_interval_s")
        return ScheduleSpec(**base, kind="interval", every_s=every,
                            at=now + timedelta(seconds=every))  # fmt: skip
    if key == "delay_s":
        return ScheduleSpec(
            **base, kind="once", at=now + timedelta(seconds=_seconds(value, "delay_s", 0))
        )
    return ScheduleSpec(**base, kind="once", at=_at(value))


def _cron(value: Any, now: datetime, least: float) -> str:
    from croniter import croniter

    if not isinstance(value, str) or not croniter.is_valid(value):
        raise bad("must be a cron expression such as '0 7 * * *'", "cron")
    times = croniter(value, now)
    seen = [times.get_next(datetime) for _ in range(CRON_SAMPLES)]
    gap = min(later - earlier for earlier, later in itertools.pairwise(seen))
    if gap.total_seconds() < least:
        raise bad(
            f"fires {gap.total_seconds():g} seconds apart: tasks.min_interval_s is {least:g}",
            "cron",
        )  # fmt: skip
    return value


def _zone(value: Any) -> str:
    if value is None:
        return "UTC"
    if not isinstance(value, str):
        raise bad("must be an IANA time zone name such as 'Europe/Berlin'", "timezone")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise bad(f"unknown time zone {value!r}", "timezone") from exc
    return value


def _seconds(value: Any, param: str, least: float, setting: str | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < least:
        named = f" ({setting})" if setting else ""
        raise bad(f"must be a number of seconds, at least {least:g}{named}", param)
    return float(value)


def _at(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad("must be an ISO time such as 2026-12-06T07:00:00+08:00", "at") from exc
    if when.tzinfo is None:
        raise bad("give the time with its zone (e.g. ...Z or +08:00)", "at")
    return when.astimezone(UTC)


def schedule_row(spec: ScheduleSpec, owner: str | None, now: datetime) -> TaskSchedule:
    row = TaskSchedule(
        id="sch_" + secrets.token_hex(8), owner=owner, name=spec.name, task=spec.task,
        params=spec.params, kind=spec.kind, cron=spec.cron, timezone=spec.timezone,
        every_s=spec.every_s, at=spec.at, missed=spec.missed, paused=False, created_at=now,
    )  # fmt: skip
    if spec.kind == "cron":
        from enclave.tasks.scheduler import next_after

        row.next_run_at = next_after(row, now)
    else:
        row.next_run_at = spec.at
    return row
