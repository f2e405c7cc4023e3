"""Every query on the task tables (:mod:`enclave.store.models_tasks`); nobody else
writes SQL on them.

Claiming is a guarded UPDATE (``WHERE status = 'queued'``) so that a run is claimed once
whatever races: on PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED`` (replicas
never wait on each other's rows); on SQLite the transaction first takes the database's
write lock, so one process at a time claims. Each change of a running run made by its
worker is guarded by ``lease_owner``: a worker whose lease was taken over writes nothing.
Events are numbered per run from the run's ``last_event`` counter, bumped in the same
transaction that inserts them.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from enclave.errors import Conflict
from enclave.store.models_tasks import TaskDef, TaskEvent, TaskRun, TaskSchedule
from enclave.store.repos import Store
from enclave.tasks import appends
from enclave.tasks.appends import (
    EVENTS,
    RUNS,
    Append,
    Stale,
    bump,
    countable,
    event_rows,
    settle,
    write_counted,
    write_each,
)
from enclave.tasks.info import error_event

log = logging.getLogger("enclave.tasks")
EventSpec = appends.EventSpec  # what the worker and the steps write
TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
Firing = tuple[TaskSchedule, datetime | None, Sequence[TaskRun]]  # schedule, next, runs


@dataclass
class ClaimStats:
    """What this process's claims found (logged when a worker stops; the benchmark's
    evidence that workers do not get in each other's way)."""

    tries: int = 0  # claims that saw due runs and opened a write transaction
    runs: int = 0  # runs claimed
    empty: int = 0  # of the tries, those that claimed nothing (all taken or locked)

    def __str__(self) -> str:
        return f"claims: {self.tries} tries, {self.runs} runs, {self.empty} empty"


@dataclass(frozen=True)
class Reaped:
    run_id: str
    status: str  # queued (again) or failed
    owner: str | None


class TaskRepo:
    def __init__(self, store: Store) -> None:
        self._sessions = store.sessions
        self._engine = store.engine
        self.dialect = store.engine.dialect.name
        self._one_writer = asyncio.Lock()
        self._pending: builtins.list[Append] = []
        self._counted = store.engine.dialect.supports_sane_multi_rowcount
        self.claims = ClaimStats()
        # told each run's events once they are committed (the service hands them to
        # this process's followers): run id, the event rows, the run's last event number
        self.written: Callable[[str, builtins.list[dict[str, Any]], int], None] | None = None
        self._flusher: asyncio.Future[None] | None = None

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncSession]:
        """A write transaction. SQLite: one at a time in this process, so that our own
        connections never wait on each other in SQLite's busy handler (which sleeps)."""
        if self.dialect != "sqlite":
            async with self._sessions.begin() as session:
                yield session
            return
        async with self._one_writer, self._sessions.begin() as session:
            yield session

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction on a bare connection (no ORM session)."""
        if self.dialect != "sqlite":
            async with self._engine.begin() as conn:
                yield conn
            return
        async with self._one_writer, self._engine.begin() as conn:
            yield conn

    # -- definitions

    async def get_def(self, name: str) -> TaskDef | None:
        async with self._sessions() as session:
            return await session.get(TaskDef, name)

    async def list_defs(self) -> builtins.list[TaskDef]:
        async with self._sessions() as session:
            return builtins.list(
                (await session.scalars(select(TaskDef).order_by(TaskDef.name))).all()
            )

    async def add_def(self, row: TaskDef) -> None:
        try:
            async with self._writing() as session:
                if await session.get(TaskDef, row.name) is not None:
                    raise Conflict(f"a task named {row.name!r} exists", param="name")
                session.add(row)
        except IntegrityError as exc:
            raise Conflict(f"a task named {row.name!r} exists", param="name") from exc

    async def delete_def(self, name: str) -> bool:
        async with self._writing() as session:
            done = await session.execute(delete(TaskDef).where(TaskDef.name == name))
            return bool(getattr(done, "rowcount", 0))

    # -- runs

    async def add_run(self, run: TaskRun, now: datetime) -> None:
        """Insert ``run`` (queued) with its first event, ``status``."""
        async with self._writing() as session:
            await self._insert_run(session, run, now)

    async def add_runs(self, runs: Sequence[TaskRun], now: datetime) -> None:
        """Insert queued ``runs`` in one transaction (benchmarks, bulk submits)."""
        async with self._writing() as session:
            for run in runs:
                await self._insert_run(session, run, now)

    async def _insert_run(self, session: AsyncSession, run: TaskRun, now: datetime) -> None:
        run.last_event = 1
        session.add(run)
        await session.flush()
        data = {"status": run.status, "attempt": run.attempt}
        session.add(TaskEvent(run_id=run.id, seq=1, at=now, type="status", data=data))

    async def get_run(self, run_id: str) -> TaskRun | None:
        async with self._sessions() as session:
            return await session.get(TaskRun, run_id)

    async def list_runs(
        self, *, owner: str | None = None, any_owner: bool = True, status: str | None = None,
        task: str | None = None, limit: int = 50, before: str | None = None,
    ) -> builtins.list[TaskRun]:  # fmt: skip
        """Newest first; ``before`` is the id of the last run of the previous page."""
        query = select(TaskRun)
        if not any_owner:
            query = query.where(TaskRun.owner == owner)
        if status:
            query = query.where(TaskRun.status == status)
        if task:
            query = query.where(TaskRun.task == task)
        async with self._sessions() as session:
            if before:
                cursor = await session.get(TaskRun, before)
                if cursor is not None:
                    query = query.where(or_(
                        TaskRun.created_at < cursor.created_at,
                        and_(TaskRun.created_at == cursor.created_at, TaskRun.id < cursor.id),
                    ))  # fmt: skip
            query = query.order_by(TaskRun.created_at.desc(), TaskRun.id.desc()).limit(limit)
            return builtins.list((await session.scalars(query)).all())

    async def count_runs(
        self, owner: str | None, *, statuses: Sequence[str] = (), since: datetime | None = None
    ) -> int:
        query = select(func.count()).select_from(TaskRun).where(TaskRun.owner == owner)
        if statuses:
            query = query.where(TaskRun.status.in_(statuses))
        if since is not None:
            query = query.where(TaskRun.created_at >= since)
        async with self._sessions() as session:
            return int((await session.execute(query)).scalar_one())

    async def _any(self, query: Select[Any]) -> bool:
        """Whether ``query`` finds a row: read first, so that an idle worker never takes
        SQLite's write lock."""
        async with self._sessions() as session:
            return (await session.execute(query.limit(1))).first() is not None

    async def _write_lock(self, session: AsyncSession) -> None:
        """SQLite: take the write lock now, so what this transaction reads stays true."""
        if self.dialect == "sqlite":
            await session.execute(update(TaskRun).where(TaskRun.id == "").values(status="x"))

    async def claim(
        self, worker: str, now: datetime, lease_until: datetime, limit: int, per_user: int
    ) -> builtins.list[TaskRun]:
        """Up to ``limit`` queued runs that are due, now running under ``worker``'s lease,
        skipping users who already have ``per_user`` runs running."""
        due = select(TaskRun.id).where(TaskRun.status == "queued", TaskRun.not_before <= now)
        if not await self._any(due):
            return []
        async with self._writing() as session:
            await self._write_lock(session)
            counts = dict((await session.execute(
                select(TaskRun.owner, func.count()).where(TaskRun.status == "running")
                .group_by(TaskRun.owner)
            )).all())  # fmt: skip
            # Users already at their limit are left out here, not after the LIMIT: one
            # user's long queue must not hide everyone else's runs behind it.
            full = [owner for owner, n in counts.items() if owner is not None and n >= per_user]
            query = (
                select(TaskRun.id, TaskRun.owner, TaskRun.last_event)
                .where(TaskRun.status == "queued", TaskRun.not_before <= now)
                .where(or_(TaskRun.owner.is_(None), TaskRun.owner.not_in(full)))
                .order_by(TaskRun.not_before, TaskRun.created_at)
                .limit(limit * 4)
            )
            if self.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            chosen: dict[str, int] = {}
            for run_id, owner, last in (await session.execute(query)).all():
                if len(chosen) == limit:
                    break
                if owner is not None and counts.get(owner, 0) >= per_user:
                    continue
                counts[owner] = counts.get(owner, 0) + 1
                chosen[run_id] = last
            self.claims.tries += 1
            taken = await self._take(session, chosen, worker, now, lease_until) if chosen else []
            self.claims.runs += len(taken)
            self.claims.empty += not taken
            return taken

    async def _take(
        self, session: AsyncSession, chosen: dict[str, int], worker: str, now: datetime,
        lease_until: datetime,
    ) -> builtins.list[TaskRun]:  # fmt: skip
        """The claim's writes, a statement each for all ``chosen`` runs (id → the
        ``last_event`` read with them, under the write lock or ``FOR UPDATE``): running
        under ``worker``'s lease, with their ``status`` event."""
        conn = await session.connection()
        taking = update(RUNS).where(
            RUNS.c.id == bindparam("b_id"), RUNS.c.status == "queued",
            RUNS.c.last_event == bindparam("b_prev"),
        )  # fmt: skip
        values = {"status": "running", "lease_owner": worker, "lease_until": lease_until,
                  "started_at": now, "cancel_requested": False}  # fmt: skip
        params = [{**values, "b_id": run_id, "b_prev": last, "last_event": last + 1}
                  for run_id, last in chosen.items()]  # fmt: skip
        await conn.execute(taking, params)
        rows = await session.scalars(
            select(TaskRun).where(TaskRun.id.in_(builtins.list(chosen)),
                                  TaskRun.lease_owner == worker, TaskRun.status == "running")
            .execution_options(populate_existing=True)
        )  # fmt: skip
        found = {row.id: row for row in rows}
        taken = [found[run_id] for run_id in chosen if run_id in found]
        events = [{"run_id": row.id, "seq": row.last_event, "at": now, "type": "status",
                   "data": {"status": "running", "attempt": row.attempt, "worker": worker}}
                  for row in taken]  # fmt: skip
        if events:
            await conn.execute(insert(EVENTS), events)
        return taken

    async def renew(self, run_id: str, worker: str, until: datetime) -> bool:
        async with self._writing() as session:
            done = await session.execute(
                update(TaskRun)
                .where(TaskRun.id == run_id, TaskRun.lease_owner == worker,
                       TaskRun.status == "running")
                .values(lease_until=until)
            )  # fmt: skip
            return bool(getattr(done, "rowcount", 0))

    async def renew_many(self, run_ids: Sequence[str], worker: str, until: datetime) -> set[str]:
        """:meth:`renew` for all of a worker's runs in one statement; those renewed."""
        if not run_ids:
            return set()
        async with self._writing() as session:
            done = await session.execute(
                update(RUNS)
                .where(RUNS.c.id.in_(run_ids), RUNS.c.lease_owner == worker,
                       RUNS.c.status == "running")
                .values(lease_until=until)
                .returning(RUNS.c.id)
            )  # fmt: skip
            return set(done.scalars().all())

    async def cancel_flags(self, run_ids: Sequence[str]) -> set[str]:
        if not run_ids:
            return set()
        query = select(TaskRun.id).where(TaskRun.id.in_(run_ids), TaskRun.cancel_requested)
        async with self._sessions() as session:
            return set((await session.scalars(query)).all())

    async def append(
        self, run_id: str, events: Sequence[EventSpec], now: datetime,
        values: dict[str, Any] | None = None, *, worker: str | None = None,
        prev: int | None = None,
    ) -> int | None:  # fmt: skip
        """Record ``events`` (and set ``values`` on the run) in one transaction; the last
        event's number, or ``None`` when ``worker`` no longer holds the run's lease.
        ``prev``: the run's ``last_event`` as the caller knows it (a hint: a wrong one
        costs a retry, never a wrong number).

        The appends of all runs in flight are grouped into one transaction (group commit),
        each still guarded by its own lease (:mod:`enclave.tasks.appends`)."""
        item = Append(run_id, events, now, values or {}, worker, prev)
        item.done = asyncio.get_running_loop().create_future()
        self._pending.append(item)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await asyncio.shield(item.done)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            await self._write_batch(batch)

    async def _write_batch(self, batch: builtins.list[Append]) -> None:
        try:
            found = await self._write_group(batch)
        except Exception as exc:
            if len(batch) == 1:
                settle(batch[0], error=exc)
                return
            for item in batch:  # one by one: one bad append fails only itself
                await self._write_batch([item])
            return
        except BaseException as exc:  # cancelled: nobody may wait forever
            for item in batch:
                settle(item, error=exc)
            raise
        for item, last in zip(batch, found, strict=True):
            if last is not None and item.events and self.written is not None:
                try:
                    self.written(item.run_id, event_rows(item, last), last)
                except Exception:  # followers read the database instead
                    log.exception("tasks: handing over the events of %s failed", item.run_id)
            settle(item, last)

    async def _write_group(self, batch: builtins.list[Append]) -> builtins.list[int | None]:
        if self._counted and countable(batch):
            try:
                async with self._connected() as conn:
                    return await write_counted(conn, batch)
            except Stale:
                pass  # rolled back: some run's lease or counter is not what its writer knew
        async with self._connected() as conn:
            return await write_each(conn, batch)

    async def _append(
        self, session: AsyncSession | AsyncConnection, run_id: str, events: Sequence[EventSpec],
        now: datetime, values: dict[str, Any], *, worker: str | None = None,
        queued: bool = False,
    ) -> int | None:  # fmt: skip
        """One guarded append inside the caller's transaction."""
        conn = await session.connection() if isinstance(session, AsyncSession) else session
        item = Append(run_id, events, now, values, worker)
        last = await bump(conn, item, queued=queued)
        if last is not None and events:
            await conn.execute(insert(EVENTS), event_rows(item, last))
        return last

    async def request_cancel(self, run_id: str, now: datetime) -> bool:
        """A queued run is cancelled at once (``True``); a running one is flagged for its
        worker (``False``)."""
        error = {"message": "cancelled before it started", "type": "cancelled"}
        events: builtins.list[EventSpec] = [
            ("error", error_event(error)),
            ("status", {"status": "cancelled", "reason": "cancelled"}),
        ]
        async with self._writing() as session:
            values = {"status": "cancelled", "finished_at": now, "cancel_requested": True,
                      "error": error}  # fmt: skip
            if await self._append(session, run_id, events, now, values, queued=True):
                return True
            await session.execute(
                update(TaskRun).where(TaskRun.id == run_id, TaskRun.status == "running")
                .values(cancel_requested=True)
            )  # fmt: skip
            return False

    async def reap(self, now: datetime) -> builtins.list[Reaped]:
        """Runs whose lease ran out (their worker died): queued again while attempts
        remain, else failed."""
        query = select(TaskRun.id).where(TaskRun.status == "running", TaskRun.lease_until < now)
        reaped: builtins.list[Reaped] = []
        if not await self._any(query):
            return reaped
        async with self._writing() as session:
            await self._write_lock(session)
            if self.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for run_id in (await session.scalars(query)).all():
                row = await session.get(TaskRun, run_id)
                if row is None:
                    continue
                status = await self._lost(session, row, now)
                reaped.append(Reaped(run_id, status, row.owner))
        return reaped

    async def _lost(self, session: AsyncSession, row: TaskRun, now: datetime) -> str:
        cleared: dict[str, Any] = {"lease_owner": None, "lease_until": None}
        if row.attempt < row.max_attempts and not row.cancel_requested:
            values = {**cleared, "status": "queued", "attempt": row.attempt + 1, "not_before": now}
            event = {"status": "queued", "attempt": row.attempt + 1, "reason": "worker lost"}
            await self._append(session, row.id, [("status", event)], now, values)
            return "queued"
        error = {"message": "the worker running it was lost", "type": "worker_lost"}
        if row.cancel_requested:
            error = {"message": "cancelled", "type": "cancelled"}
        status = "cancelled" if row.cancel_requested else "failed"
        ended = {**cleared, "status": status, "error": error, "finished_at": now}
        final = {"status": status, "reason": error["type"]}
        events: builtins.list[EventSpec] = [("error", error_event(error)), ("status", final)]
        await self._append(session, row.id, events, now, ended)
        return status

    async def purge(self, before: datetime, limit: int = 1000) -> builtins.list[str]:
        """Delete up to ``limit`` runs that finished before ``before`` (their events with
        them); their ids (call again until none are left)."""
        query = select(TaskRun.id).where(TaskRun.status.in_(TERMINAL), TaskRun.finished_at < before)
        async with self._writing() as session:
            ids = builtins.list((await session.scalars(query.limit(limit))).all())
            if ids:
                await session.execute(delete(TaskEvent).where(TaskEvent.run_id.in_(ids)))
                await session.execute(delete(TaskRun).where(TaskRun.id.in_(ids)))
        return ids

    async def events(
        self, run_id: str, after: int = 0, limit: int = 500
    ) -> builtins.list[TaskEvent]:
        query = (
            select(TaskEvent).where(TaskEvent.run_id == run_id, TaskEvent.seq > after)
            .order_by(TaskEvent.seq).limit(limit)
        )  # fmt: skip
        async with self._sessions() as session:
            return builtins.list((await session.scalars(query)).all())

    # -- schedules

    async def add_schedule(self, row: TaskSchedule) -> None:
        async with self._writing() as session:
            session.add(row)

    async def get_schedule(self, sid: str) -> TaskSchedule | None:
        async with self._sessions() as session:
            return await session.get(TaskSchedule, sid)

    async def list_schedules(
        self, owner: str | None = None, *, any_owner: bool = True
    ) -> builtins.list[TaskSchedule]:
        query = select(TaskSchedule).order_by(TaskSchedule.created_at, TaskSchedule.id)
        if not any_owner:
            query = query.where(TaskSchedule.owner == owner)
        async with self._sessions() as session:
            return builtins.list((await session.scalars(query)).all())

    async def count_schedules(self, owner: str | None) -> int:
        query = select(func.count()).select_from(TaskSchedule).where(TaskSchedule.owner == owner)
        async with self._sessions() as session:
            return int((await session.execute(query)).scalar_one())

    async def delete_schedule(self, sid: str) -> None:
        async with self._writing() as session:
            await session.execute(delete(TaskSchedule).where(TaskSchedule.id == sid))

    async def set_paused(self, sid: str, paused: bool, next_run_at: datetime | None) -> None:
        async with self._writing() as session:
            await session.execute(
                update(TaskSchedule).where(TaskSchedule.id == sid)
                .values(paused=paused, next_run_at=next_run_at)
            )  # fmt: skip

    async def due(self, now: datetime, limit: int = 100) -> builtins.list[TaskSchedule]:
        query = (
            select(TaskSchedule)
            .where(TaskSchedule.next_run_at <= now, TaskSchedule.paused.is_(False))
            .order_by(TaskSchedule.next_run_at).limit(limit)
        )  # fmt: skip
        async with self._sessions() as session:
            return builtins.list((await session.scalars(query)).all())

    async def fire(
        self, schedule: TaskSchedule, new_next: datetime | None, runs: Sequence[TaskRun],
        now: datetime,
    ) -> bool:  # fmt: skip
        """Insert ``runs`` and move the schedule on to ``new_next``, in one transaction,
        only if nobody fired it first (its ``next_run_at`` is still what we read)."""
        return (await self.fire_many([(schedule, new_next, runs)], now))[0]

    async def fire_many(self, firings: Sequence[Firing], now: datetime) -> builtins.list[bool]:
        """:meth:`fire` for several schedules in one transaction (one tick's); which of
        them this call fired. A schedule fired by someone else is left out, not undone."""
        try:
            async with self._writing() as session:
                await self._write_lock(session)
                return [await self._fire(session, *firing, now) for firing in firings]
        except IntegrityError:
            if len(firings) == 1:
                return [False]
        return [(await self.fire_many([firing], now))[0] for firing in firings]

    async def _fire(
        self, session: AsyncSession, schedule: TaskSchedule, new_next: datetime | None,
        runs: Sequence[TaskRun], now: datetime,
    ) -> bool:  # fmt: skip
        if self.dialect == "postgresql":
            mine = await session.scalar(
                select(TaskSchedule.id).where(TaskSchedule.id == schedule.id)
                .with_for_update(skip_locked=True)
            )  # fmt: skip
            if mine is None:
                return False
        values: dict[str, Any] = {"next_run_at": new_next}
        if runs:
            values |= {"last_run_at": now, "last_run": runs[-1].id}
        done = await session.execute(
            update(TaskSchedule)
            .where(TaskSchedule.id == schedule.id,
                   TaskSchedule.next_run_at == schedule.next_run_at,
                   TaskSchedule.paused.is_(False))
            .values(**values)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        if not getattr(done, "rowcount", 0):
            return False
        for run in runs:
            await self._insert_run(session, run, now)
        return True
