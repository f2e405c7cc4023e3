"""The task service: what the API, the console and KB ingestion call (docs/tasks.md).

Definitions (built-in templates and stored ones), runs (submit, list, get, cancel,
retry, events, follow), output files and schedules, each checked against the
:class:`Caller`: owners see their own runs and schedules, admins all, another user's
is :class:`~enclave.errors.NotFound`. ``start()`` runs the worker, the scheduler and the
reaper of this process as asyncio tasks (each on its own switch in ``tasks:``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.errors import Conflict, Forbidden, InvalidRequest, NotFound, TooManyRequests
from enclave.identity import Actor
from enclave.store.models_tasks import TaskDef, TaskRun, TaskSchedule
from enclave.tasks import schedules as parse
from enclave.tasks.bus import LocalBus
from enclave.tasks.clock import SYSTEM_CLOCK, Clock
from enclave.tasks.definition import TaskDefinition, parse_definition, validate_params
from enclave.tasks.info import Event, RunInfo, ScheduleInfo, TaskInfo
from enclave.tasks.repo import ACTIVE, TaskRepo
from enclave.tasks.runctx import SUBMITTED
from enclave.tasks.scheduler import Scheduler, next_after
from enclave.tasks.worker import Runtime, Worker, reap_forever

if TYPE_CHECKING:
    from enclave.audit.writer import AuditWriter
    from enclave.config import Settings
    from enclave.knowledge.service import KnowledgeBases
    from enclave.store.repos import Store
    from enclave.taskconfig import TasksSettings

log = logging.getLogger("enclave.tasks")

Chat = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
DAY = timedelta(days=1)
FOLLOW_POLL_S = 1.0
PURGE_EVERY_S = 3600.0
PURGE_BATCH = 1000  # runs deleted per transaction; purge goes on until none are left
RESOLVED_S = 1.0  # how long a schedule's task definition is reused


@dataclass(frozen=True)
class Caller:
    """Who asks; the API builds it from the request's principal."""

    user: str | None  # None when authentication is off (sees everything)
    admin: bool
    actor: Actor
    models: tuple[str, ...] = ()  # the key's model patterns; () = all
    user_models: tuple[str, ...] = ()  # the user's; () = all (both must allow a model)

    def sees(self, owner: str | None) -> bool:
        return self.user is None or self.admin or owner == self.user


SYSTEM = Caller(user=None, admin=True, actor=Actor())


@functools.cache
def _builtins() -> dict[str, dict[str, Any]]:
    from enclave.tasks import templates

    return templates.builtin()  # YAML parsed once per process


def builtin_names() -> frozenset[str]:
    return frozenset(_builtins())


def builtin_template(name: str) -> dict[str, Any] | None:
    """The built-in template ``name``'s raw definition (a copy: callers may edit it)."""
    found = _builtins().get(name)
    return copy.deepcopy(found) if found is not None else None


def builtin_templates() -> dict[str, dict[str, Any]]:
    """The built-in task templates (``enclave.tasks.templates``), copies."""
    return copy.deepcopy(_builtins())


class TaskService:
    def __init__(
        self, store: Store, settings: Callable[[], Settings], *, chat: Chat,
        knowledge: Callable[[], KnowledgeBases], audit: AuditWriter | None, home: Path,
        clock: Clock = SYSTEM_CLOCK, bus: LocalBus | None = None,
    ) -> None:  # fmt: skip
        self.repo = TaskRepo(store)
        self._store = store
        self.repo.written = self._written
        self._settings = settings
        self._audit_writer = audit
        self.home = home
        self.clock = clock
        self.bus = bus or _bus(settings())
        self.runtime = Runtime(
            repo=self.repo, bus=self.bus, clock=clock, settings=self.tasks_settings,
            outputs=self.outputs, chat=chat, knowledge=knowledge, audit=self._audit_owner,
        )  # fmt: skip
        self.worker = Worker(self.runtime)
        self.scheduler = Scheduler(
            self.repo, clock, self._schedule_settings, self._scheduled_run, self._fired
        )
        self._loops: list[asyncio.Task[None]] = []
        self._resolved_cache: dict[str, tuple[float, dict[str, Any], TaskDefinition]] = {}
        self._following: dict[str, int] = {}  # live followers by user, in this process

    def tasks_settings(self) -> TasksSettings:
        return self._settings().tasks

    def outputs(self) -> Path:
        return self.tasks_settings().outputs(self.home)

    def _schedule_settings(self) -> tuple[float, float, int]:
        tasks = self.tasks_settings()
        return tasks.tick_s, tasks.misfire_grace_s, tasks.max_catch_up

    async def start(self) -> None:
        await self.bus.start()
        tasks = self.tasks_settings()
        loops: list[Awaitable[None]] = []
        if tasks.worker:
            loops.append(self.worker.run())
        if tasks.scheduler:
            loops.append(self.scheduler.run())
        if tasks.worker or tasks.scheduler:
            loops += [reap_forever(self.runtime), self._purge_forever()]
        self._loops = [asyncio.ensure_future(loop) for loop in loops]

    async def aclose(self) -> None:
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loop
        self._loops = []
        await self.bus.aclose()

    async def purge(self) -> int:
        """Forget runs finished more than ``tasks.keep_days`` ago, with their events and
        output files; how many."""
        before = self.clock.now() - timedelta(days=self.tasks_settings().keep_days)
        count = 0
        while gone := await self.repo.purge(before, PURGE_BATCH):
            folders = [self.outputs() / run_id for run_id in gone]
            await asyncio.to_thread(_remove_folders, folders)
            count += len(gone)
        return count

    async def _purge_forever(self) -> None:
        while True:
            try:
                await self.purge()
            except Exception:
                log.exception("tasks: forgetting old runs failed")
            await asyncio.sleep(PURGE_EVERY_S)

    async def _audit(self, actor: Actor, action: str, detail: dict[str, Any]) -> None:
        if self._audit_writer is not None:
            await self._audit_writer.write(actor.record(action, detail))

    async def _audit_owner(self, action: str, owner: str | None, detail: dict[str, Any]) -> None:
        await self._audit(Actor(user=owner), action, detail)

    # -- definitions

    async def list_tasks(self, caller: Caller) -> list[TaskInfo]:
        found = {name: TaskInfo(name, True, None, str(raw.get("description", "")), raw)
                 for name, raw in builtin_templates().items()}  # fmt: skip
        for row in await self.repo.list_defs():
            found.setdefault(row.name, _task_info(row))
        return [found[name] for name in sorted(found)]

    async def get_task(self, caller: Caller, name: str) -> TaskInfo:
        raw = builtin_template(name)
        if raw is not None:
            return TaskInfo(name, True, None, str(raw.get("description", "")), raw)
        row = await self.repo.get_def(name)
        if row is None:
            raise NotFound(f"no task named {name!r}", param="task")
        return _task_info(row)

    async def define(self, caller: Caller, data: dict[str, Any]) -> TaskInfo:
        defn = parse_definition(data, base=self.tasks_settings().limits)
        if defn.name in builtin_names():
            raise Conflict(f"{defn.name!r} is a built-in task", param="name")
        now = self.clock.now()
        row = TaskDef(name=defn.name, owner=caller.user, description=defn.description,
                      definition=defn.raw, created_at=now, updated_at=now)  # fmt: skip
        await self.repo.add_def(row)
        await self._audit(caller.actor, "task.define", {"name": defn.name})
        return _task_info(row)

    async def undefine(self, caller: Caller, name: str) -> None:
        if name in builtin_names():
            raise Forbidden(f"{name!r} is a built-in task and cannot be removed", param="name")
        row = await self.repo.get_def(name)
        if row is None:
            raise NotFound(f"no task named {name!r}", param="task")
        if not caller.sees(row.owner):
            raise Forbidden(f"task {name!r} belongs to another user", param="name")
        await self.repo.delete_def(name)
        await self._audit(caller.actor, "task.undefine", {"name": name})

    async def _definition(self, name: str) -> dict[str, Any]:
        raw = builtin_template(name)
        if raw is not None:
            return raw
        row = await self.repo.get_def(name)
        if row is None:
            raise NotFound(f"no task named {name!r}", param="task")
        return row.definition

    # -- runs

    async def submit(
        self, caller: Caller, *, task: str | None = None, params: dict[str, Any] | None = None,
        definition: dict[str, Any] | None = None, files_hint: Any = None,
    ) -> RunInfo:  # fmt: skip
        """Queue a run of the task ``task`` or of the ad hoc ``definition``. ``files_hint``
        (JSON-able) is kept in the run's definition snapshot as ``files_hint``."""
        if (task is None) == (definition is None):
            raise InvalidRequest("give either task or definition", param="task")
        if definition is not None and not isinstance(definition, dict):
            raise InvalidRequest("definition: must be an object", param="definition")
        if definition is not None:
            raw = {"name": "adhoc", **definition}
            await self._not_a_task_name(raw["name"])
        else:
            raw = await self._definition(str(task))
        return await self._queue(caller, raw, params, files_hint, None)

    async def _not_a_task_name(self, name: Any) -> None:
        """An ad hoc definition may not pose as a built-in or stored task (its runs would
        show up as that task's, e.g. as a knowledge-base upload)."""
        if not isinstance(name, str):
            return  # parse_definition names the field
        if name in builtin_names() or await self.repo.get_def(name) is not None:
            raise InvalidRequest(
                f"definition.name: {name!r} is the name of a task; run it by name, or give "
                "the ad hoc definition another name", param="definition.name",
            )  # fmt: skip

    async def _queue(
        self, caller: Caller, raw: dict[str, Any], params: dict[str, Any] | None,
        files_hint: Any, retry_of: str | None,
    ) -> RunInfo:  # fmt: skip
        if files_hint is not None:
            raw = {**raw, "files_hint": files_hint}
        if caller.models or caller.user_models:  # RunCtx.chat refuses other models
            raw = {**raw, "models_allowed": {"key": list(caller.models),
                                             "user": list(caller.user_models)}}  # fmt: skip
        await self._quotas(caller.user)
        row = self._new_run(caller.user, raw, params)
        row.retry_of = retry_of
        await self.repo.add_run(row, self.clock.now())
        await self.bus.notify("runs")
        await self._audit(caller.actor, "task.run.submit",
                          {"run": row.id, "task": row.task, "retry_of": retry_of})  # fmt: skip
        return RunInfo.of(row)

    def _parse(self, raw: dict[str, Any]) -> TaskDefinition:
        snapshot = {k: v for k, v in raw.items() if k not in SUBMITTED}
        return parse_definition(snapshot, base=self.tasks_settings().limits)

    def _new_run(
        self, owner: str | None, raw: dict[str, Any], params: dict[str, Any] | None,
        defn: TaskDefinition | None = None,
    ) -> TaskRun:  # fmt: skip
        defn = defn or self._parse(raw)
        values = validate_params(defn, params)
        limits = defn.effective_limits(self.tasks_settings().limits)
        now = self.clock.now()
        return TaskRun(
            id="run_" + secrets.token_hex(8), task=defn.name, owner=owner, params=values,
            definition=raw, status="queued", attempt=1, max_attempts=limits.max_attempts,
            not_before=now, cancel_requested=False, prompt_tokens=0, completion_tokens=0,
            files=[], last_event=0, created_at=now,
        )  # fmt: skip

    async def _quotas(self, user: str | None) -> None:
        if user is None:
            return
        tasks = self.tasks_settings()
        queued = await self.repo.count_runs(user, statuses=ACTIVE)
        if queued >= tasks.per_user_queued:
            raise TooManyRequests(
                f"{user} has {queued} runs queued or running: tasks.per_user_queued is "
                f"{tasks.per_user_queued}", param="tasks.per_user_queued",
            )  # fmt: skip
        today = await self.repo.count_runs(user, since=self.clock.now() - DAY)
        if today >= tasks.per_user_daily:
            raise TooManyRequests(
                f"{user} started {today} runs in the last 24 hours: tasks.per_user_daily is "
                f"{tasks.per_user_daily}", param="tasks.per_user_daily",
            )  # fmt: skip

    async def list_runs(
        self, caller: Caller, *, status: str | None = None, task: str | None = None,
        owner: str | None = None, limit: int = 50, before: str | None = None,
    ) -> tuple[list[RunInfo], str | None]:  # fmt: skip
        """A page of runs, newest first, and the cursor of the next page (or ``None``)."""
        limit = max(1, min(int(limit), 500))
        everyone = caller.user is None or caller.admin
        if not everyone and owner is not None and owner != caller.user:
            return [], None
        rows = await self.repo.list_runs(
            owner=owner if everyone else caller.user, any_owner=everyone and owner is None,
            status=status, task=task, limit=limit, before=before,
        )  # fmt: skip
        runs = [RunInfo.of(row) for row in rows]
        return runs, (runs[-1].id if len(runs) == limit else None)

    async def _row(self, caller: Caller, run_id: str) -> TaskRun:
        row = await self.repo.get_run(run_id)
        if row is None or not caller.sees(row.owner):
            raise NotFound(f"no run {run_id!r}", param="run")
        return row

    async def get_run(self, caller: Caller, run_id: str) -> RunInfo:
        return RunInfo.of(await self._row(caller, run_id))

    async def cancel(self, caller: Caller, run_id: str) -> RunInfo:
        """Cancel a queued run at once, a running one within a second (the step's call in
        flight is dropped); a finished run is returned as it is."""
        row = await self._row(caller, run_id)
        if row.status in ACTIVE:
            await self.repo.request_cancel(run_id, self.clock.now())
            await self.bus.notify("cancel")
            await self.bus.notify(f"run:{run_id}")
            await self._audit(caller.actor, "task.run.cancel", {"run": run_id})
        return await self.get_run(caller, run_id)

    async def retry(self, caller: Caller, run_id: str) -> RunInfo:
        """A new run of the same definition and params, ``retry_of`` this one."""
        row = await self._row(caller, run_id)
        if row.status in ACTIVE:
            raise Conflict(f"run {run_id} is still {row.status}", param="run")
        raw = row.definition
        snapshot = {k: v for k, v in raw.items() if k not in SUBMITTED}
        return await self._queue(caller, snapshot, row.params, raw.get("files_hint"), run_id)

    async def events(
        self, caller: Caller, run_id: str, *, after: int = 0, limit: int = 500
    ) -> list[Event]:
        await self._row(caller, run_id)
        rows = await self.repo.events(run_id, max(0, after), max(1, min(limit, 5000)))
        return [Event.of(row) for row in rows]

    async def follow(self, caller: Caller, run_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        """The run's events after ``after``: those recorded, then new ones as they come
        (a wake-up, or a poll each second), ending with the terminal ``status`` event."""
        await self._row(caller, run_id)
        with self._follower(caller), self.bus.subscribe(f"run:{run_id}") as wake:
            read = True
            while True:
                if read:  # what comes in from now on is kept for after the read
                    wake.take()
                    wake.stale = False
                    events = [Event.of(row) for row in await self.repo.events(run_id, after, 500)]
                else:  # this process wrote them: handed over, not read back
                    events = [event for event in wake.take() if event.id > after]
                    if any(event.id != after + 1 + n for n, event in enumerate(events)):
                        read = True  # a gap (written elsewhere): the database has them
                        continue
                for event in events:
                    after = event.id
                    yield event
                    if event.terminal:
                        return
                if read and len(events) == 500:
                    continue
                if read and not events:
                    run = await self.repo.get_run(run_id)
                    if run is None or (run.status not in ACTIVE and after >= run.last_event):
                        return
                # a wake-up since the read is not lost; a poll when none comes
                read = not await wake.wait(FOLLOW_POLL_S) or wake.stale

    def _written(self, run_id: str, rows: list[dict[str, Any]], last: int) -> None:
        """Hand a run's just committed events to this process's followers (as the
        database gives them back: JSON data)."""
        topic = f"run:{run_id}"
        if not self.bus.listening(topic):
            return
        events = [Event(id=row["seq"], run=run_id, type=row["type"], at=row["at"],
                        data=json.loads(json.dumps(row["data"]))) for row in rows]  # fmt: skip
        self.bus.deliver(topic, events, last)

    def check_followers(self, caller: Caller) -> None:
        """429 naming ``tasks.max_followers_per_user`` when the caller follows that many
        runs live in this process already (WebSocket subscriptions and SSE streams)."""
        if caller.user is None:
            return
        limit = self.tasks_settings().max_followers_per_user
        now = self._following.get(caller.user, 0)
        if now >= limit:
            raise TooManyRequests(
                f"{caller.user} follows {now} runs live already: "
                f"tasks.max_followers_per_user is {limit}", param="tasks.max_followers_per_user",
            )  # fmt: skip

    @contextlib.contextmanager
    def _follower(self, caller: Caller) -> Iterator[None]:
        self.check_followers(caller)
        user = caller.user or ""
        self._following[user] = self._following.get(user, 0) + 1
        try:
            yield
        finally:
            self._following[user] -= 1
            if not self._following[user]:
                del self._following[user]

    async def output_file(self, caller: Caller, run_id: str, path: str) -> Path:
        """The run's output file ``path`` (relative); :class:`NotFound` for anything else
        (absolute, ``..``, a symlink out, missing)."""
        from enclave.tasks import safety

        await self._row(caller, run_id)
        try:  # absolute, '..', a NUL, a symlink out, a name the system refuses: all 404
            found = safety.resolve_under(self.outputs() / run_id, path, setting=safety.OUTPUT)
            if path and found.is_file():
                return found
        except (InvalidRequest, Forbidden, OSError, ValueError):
            pass
        raise NotFound(f"no output file {path!r}", param="path")

    # -- schedules

    async def add_schedule(self, caller: Caller, data: dict[str, Any]) -> ScheduleInfo:
        tasks = self.tasks_settings()
        spec = parse.schedule_body(data, self.clock.now(), tasks.min_interval_s)
        raw = await self._definition(spec.task)
        validate_params(self._parse(raw), spec.params)
        if caller.user is not None:
            count = await self.repo.count_schedules(caller.user)
            if count >= tasks.per_user_schedules:
                raise TooManyRequests(
                    f"{caller.user} keeps {count} schedules: tasks.per_user_schedules is "
                    f"{tasks.per_user_schedules}", param="tasks.per_user_schedules",
                )  # fmt: skip
        row = parse.schedule_row(spec, caller.user, self.clock.now())
        await self.repo.add_schedule(row)
        await self._audit(caller.actor, "task.schedule.add",
                          {"schedule": row.id, "task": row.task, "kind": row.kind})  # fmt: skip
        return ScheduleInfo.of(row)

    async def list_schedules(self, caller: Caller) -> list[ScheduleInfo]:
        everyone = caller.user is None or caller.admin
        rows = await self.repo.list_schedules(caller.user, any_owner=everyone)
        return [ScheduleInfo.of(row) for row in rows]

    async def _schedule(self, caller: Caller, sid: str) -> TaskSchedule:
        row = await self.repo.get_schedule(sid)
        if row is None or not caller.sees(row.owner):
            raise NotFound(f"no schedule {sid!r}", param="schedule")
        return row

    async def get_schedule(self, caller: Caller, sid: str) -> ScheduleInfo:
        return ScheduleInfo.of(await self._schedule(caller, sid))

    async def remove_schedule(self, caller: Caller, sid: str) -> None:
        await self._schedule(caller, sid)
        await self.repo.delete_schedule(sid)
        await self._audit(caller.actor, "task.schedule.remove", {"schedule": sid})

    async def pause(self, caller: Caller, sid: str) -> ScheduleInfo:
        row = await self._schedule(caller, sid)
        await self.repo.set_paused(sid, True, row.next_run_at)
        await self._audit(caller.actor, "task.schedule.pause", {"schedule": sid})
        return await self.get_schedule(caller, sid)

    async def resume(self, caller: Caller, sid: str) -> ScheduleInfo:
        """Runs on from now: the times passed while paused are not made up."""
        row = await self._schedule(caller, sid)
        following = row.next_run_at
        if row.kind != "once":
            following = next_after(row, self.clock.now())
        await self.repo.set_paused(sid, False, following)
        await self._audit(caller.actor, "task.schedule.resume", {"schedule": sid})
        return await self.get_schedule(caller, sid)

    async def _resolved(self, name: str) -> tuple[dict[str, Any], TaskDefinition]:
        """The task ``name``, raw and parsed, read at most once a second (schedules)."""
        now = time.monotonic()
        hit = self._resolved_cache.get(name)
        if hit is not None and now - hit[0] < RESOLVED_S:
            return hit[1], hit[2]
        raw = await self._definition(name)
        found = self._resolved_cache[name] = (now, raw, self._parse(raw))
        return found[1], found[2]

    async def _scheduled_run(self, schedule: TaskSchedule, when: datetime) -> TaskRun:
        """A run the schedule fires; the owner's quotas refuse it like a submit would (the
        scheduler skips it, the fire's audit record names the quota)."""
        await self._quotas(schedule.owner)
        raw, defn = await self._resolved(schedule.task)
        raw = await self._owner_models(schedule.owner, raw)
        row = self._new_run(schedule.owner, raw, schedule.params, defn)
        row.schedule_id = schedule.id
        row.scheduled_for = when
        return row

    async def _owner_models(self, owner: str | None, raw: dict[str, Any]) -> dict[str, Any]:
        """A scheduled run may use the models its owner may use now (the user's patterns;
        the key that made the schedule is not kept)."""
        from enclave.store.repos import UserRepo

        user = await UserRepo(self._store).get(owner) if owner else None
        if user is None or not user.models:
            return raw
        return {**raw, "models_allowed": {"key": [], "user": list(user.models)}}

    async def _fired(self, schedule: TaskSchedule, runs: list[TaskRun], refused: list[str]) -> None:
        if runs:
            await self.bus.notify("runs")
        detail: dict[str, Any] = {"schedule": schedule.id, "runs": [run.id for run in runs]}
        if refused:
            detail["refused"] = refused
        await self._audit(Actor(user=schedule.owner), "task.schedule.fire", detail)


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _task_info(row: TaskDef) -> TaskInfo:
    return TaskInfo(row.name, False, row.owner, row.description, row.definition, row.created_at)


def _bus(settings: Settings) -> LocalBus:
    if settings.tasks.events == "redis":
        from enclave.tasks.bus import RedisBus

        return RedisBus(settings.auth.redis_url)
    return LocalBus()
