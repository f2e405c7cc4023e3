"""Schedules: once, interval and cron (with a time zone), and what happens to missed times.

Every ``tasks.tick_s`` the scheduler reads the schedules that are due and fires each in
one transaction that inserts its runs and moves ``next_run_at`` on, guarded by the value
it read (:meth:`enclave.tasks.repo.TaskRepo.fire`): however many replicas tick, a time
fires once. A fire time older than ``tasks.misfire_grace_s`` is missed; the schedule's
``missed`` policy decides: ``skip`` none of them, ``once`` one run for all, ``all`` each
(at most ``tasks.max_catch_up``). Times run on an injectable :class:`Clock`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from enclave.store.models_tasks import TaskRun, TaskSchedule
from enclave.tasks.clock import Clock
from enclave.tasks.repo import TaskRepo

log = logging.getLogger("enclave.tasks")

MAX_WALK = 1000  # fire times walked through when catching up; past it, jump to now
MakeRun = Callable[[TaskSchedule, datetime], Awaitable[TaskRun]]
Fired = Callable[[TaskSchedule, list[TaskRun]], Awaitable[None]]


def next_after(schedule: TaskSchedule, after: datetime) -> datetime | None:
    """The schedule's first fire time strictly after ``after`` (``None``: no more)."""
    if schedule.kind == "cron":
        from croniter import croniter

        zone = ZoneInfo(schedule.timezone or "UTC")
        found = croniter(schedule.cron, after.astimezone(zone)).get_next(datetime)
        return found.astimezone(UTC)  # type: ignore[no-any-return]
    if schedule.kind == "interval":
        anchor = schedule.at or schedule.created_at
        every = float(schedule.every_s or 0)
        steps = math.floor((after - anchor).total_seconds() / every) + 1
        return anchor + timedelta(seconds=max(steps, 0) * every)
    return None


def plan(
    schedule: TaskSchedule, now: datetime, grace_s: float, max_catch_up: int
) -> tuple[list[datetime], datetime | None]:
    """The times to fire now, and the schedule's next fire time after them."""
    due: list[datetime] = []
    when = schedule.next_run_at
    while when is not None and when <= now and len(due) < MAX_WALK:
        due.append(when)
        when = next_after(schedule, when)
    if when is not None and when <= now:
        when = next_after(schedule, now)
    grace = timedelta(seconds=grace_s)
    on_time = [t for t in due if now - t <= grace]
    missed = [t for t in due if now - t > grace]
    caught = {"skip": [], "once": missed[-1:], "all": missed[-max_catch_up:]}[schedule.missed]
    return sorted(caught + on_time), when


class Scheduler:
    def __init__(
        self, repo: TaskRepo, clock: Clock, settings: Callable[[], tuple[float, float, int]],
        make_run: MakeRun, fired: Fired,
    ) -> None:  # fmt: skip
        """``settings()`` → (tick_s, misfire_grace_s, max_catch_up), read on every tick."""
        self._repo = repo
        self._clock = clock
        self._settings = settings
        self._make_run = make_run
        self._fired = fired

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("tasks: firing schedules failed")
            await self._clock.sleep(self._settings()[0])

    async def tick(self) -> int:
        """Fire every due schedule; the number of runs made."""
        _, grace_s, catch_up = self._settings()
        now = self._clock.now()
        made = 0
        for schedule in await self._repo.due(now):
            times, following = plan(schedule, now, grace_s, catch_up)
            runs: list[TaskRun] = []
            for when in times:
                try:
                    runs.append(await self._make_run(schedule, when))
                except Exception as exc:  # the task was removed, its params no longer fit
                    log.warning(
                        "tasks: schedule %s cannot start %s: %s", schedule.id, schedule.task, exc
                    )
            if await self._repo.fire(schedule, following, runs, now):
                made += len(runs)
                await self._fired(schedule, runs)
        return made
