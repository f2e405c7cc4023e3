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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from enclave.store.models_tasks import TaskRun, TaskSchedule
from enclave.tasks.clock import Clock
from enclave.tasks.repo import TaskRepo

log = logging.getLogger("enclave.tasks")

MAX_FOLD_SKIP = 10_000  # cron times passed over in a repeated (autumn DST) hour
MICROSECOND = timedelta(microseconds=1)
MakeRun = Callable[[TaskSchedule, datetime], Awaitable[TaskRun]]
Fired = Callable[[TaskSchedule, list[TaskRun], list[str]], Awaitable[None]]


def next_after(schedule: TaskSchedule, after: datetime) -> datetime | None:
    """The schedule's first fire time strictly after ``after`` (``None``: no more)."""
    if schedule.kind == "cron":
        return _cron_step(schedule, after, forward=True)
    if schedule.kind == "interval":
        anchor, every = _interval(schedule)
        # whole microseconds (timedelta // timedelta is exact): strictly after, always
        steps = max((after - anchor) // every + 1, 0)
        return anchor + every * steps
    return None


def _before(schedule: TaskSchedule, before: datetime) -> datetime | None:
    """The schedule's last fire time strictly before ``before`` (``None``: none)."""
    if schedule.kind == "cron":
        return _cron_step(schedule, before, forward=False)
    if schedule.kind == "interval":
        anchor, every = _interval(schedule)
        steps = -((anchor - before) // every) - 1
        return anchor + every * steps if steps >= 0 else None
    return None


def _interval(schedule: TaskSchedule) -> tuple[datetime, timedelta]:
    every = timedelta(seconds=float(schedule.every_s or 0))
    return schedule.at or schedule.created_at, max(every, MICROSECOND)


def _cron_step(schedule: TaskSchedule, start: datetime, *, forward: bool) -> datetime:
    """croniter in the schedule's zone; a wall time the autumn DST change repeats fires
    once, at its first occurrence (the repeat, ``fold=1``, is passed over, as cron does)."""
    from croniter import croniter

    zone = ZoneInfo(schedule.timezone or "UTC")
    times = croniter(schedule.cron, start.astimezone(zone))
    for _ in range(MAX_FOLD_SKIP):
        found: datetime = times.get_next(datetime) if forward else times.get_prev(datetime)
        found = found.astimezone(UTC)
        if not found.astimezone(zone).fold:
            return found
    return found


def plan(
    schedule: TaskSchedule, now: datetime, grace_s: float, max_catch_up: int
) -> tuple[list[datetime], datetime | None]:
    """The times to fire now, and the schedule's next fire time after now.

    Only what the policy needs is computed (never a walk through an outage): the times
    within the grace (at most ``max_catch_up``), and for missed ones none (``skip``), the
    latest (``once``) or the latest ``max_catch_up`` (``all``)."""
    first = schedule.next_run_at
    if first is None or first > now:
        return [], first
    following = next_after(schedule, now)
    cutoff = now - timedelta(seconds=grace_s)
    if schedule.kind == "once":
        on_time = first >= cutoff
        return ([first] if on_time or schedule.missed != "skip" else []), following
    fire: list[datetime] = []
    when: datetime | None = first if first >= cutoff else next_after(schedule, cutoff - MICROSECOND)
    while when is not None and when <= now and len(fire) < max_catch_up:
        fire.append(when)
        when = next_after(schedule, when)
    wanted = {"skip": 0, "once": 1, "all": max_catch_up}[schedule.missed]
    missed: list[datetime] = []
    when = _before(schedule, cutoff) if first < cutoff else None
    while when is not None and when >= first and len(missed) < wanted:
        missed.append(when)
        when = _before(schedule, when)
    return sorted(set(missed + fire)), following


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
        firings: list[tuple[TaskSchedule, datetime | None, list[TaskRun]]] = []
        refusals: list[list[str]] = []
        for schedule in await self._repo.due(now):
            times, following = plan(schedule, now, grace_s, catch_up)
            runs: list[TaskRun] = []
            refused: list[str] = []
            for when in times:
                try:
                    runs.append(await self._make_run(schedule, when))
                except Exception as exc:  # a quota, the task removed, its params no longer fit
                    refused.append(str(exc))
                    log.warning(
                        "tasks: schedule %s cannot start %s: %s", schedule.id, schedule.task, exc
                    )
            firings.append((schedule, following, runs))
            refusals.append(refused)
        if not firings:
            return 0
        made = 0
        fired_now = await self._repo.fire_many(firings, now)
        for (schedule, _, runs), refused, fired in zip(firings, refusals, fired_now, strict=True):
            if fired:  # the schedule moves on even when every run was refused
                made += len(runs)
                await self._fired(schedule, runs, refused)
        return made
