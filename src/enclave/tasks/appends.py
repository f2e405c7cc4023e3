"""Writing many runs' events in one transaction (the worker's hot path).

Each append is guarded: it changes the run only while ``worker`` holds its lease. Events
are numbered from the run's ``last_event`` counter, bumped by the same statement.

Two ways to write a group of appends:

- **counted** (SQLite, whose driver reports the rows an ``executemany`` changed): the
  caller says which ``last_event`` it expects (``prev``: the worker is the only writer of
  its running run), so the run updates of the whole group are one ``executemany`` per set
  of columns, guarded by lease *and* counter, and the events one ``INSERT``. If any row
  did not match (a lost lease, a counter moved by someone else) the transaction is rolled
  back and the group is written one by one.
- **one by one**: an ``UPDATE … RETURNING last_event`` per append (the guard and the
  counter in one round trip), then one ``INSERT`` for all the group's events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from enclave.store.models_tasks import TaskEvent, TaskRun

EventSpec = tuple[str, dict[str, Any]]
RUNS = cast(Table, TaskRun.__table__)
EVENTS = cast(Table, TaskEvent.__table__)


@dataclass
class Append:
    run_id: str
    events: Sequence[EventSpec]
    now: datetime
    values: dict[str, Any]
    worker: str | None
    prev: int | None = None  # the run's last_event as its writer knows it
    done: asyncio.Future[int | None] | None = None


class Stale(Exception):
    """A counted write matched fewer rows than it should: write one by one instead."""


def settle(item: Append, last: int | None = None, *, error: BaseException | None = None) -> None:
    if item.done is None or item.done.done():
        return
    if isinstance(error, asyncio.CancelledError):
        item.done.cancel()
    elif error is not None:
        item.done.set_exception(error)
    else:
        item.done.set_result(last)


def event_rows(item: Append, last: int) -> list[dict[str, Any]]:
    first = last - len(item.events) + 1
    return [{"run_id": item.run_id, "seq": first + i, "at": item.now, "type": kind, "data": data}
            for i, (kind, data) in enumerate(item.events)]  # fmt: skip


def countable(batch: Sequence[Append]) -> bool:
    ids = {item.run_id for item in batch}
    return len(ids) == len(batch) and all(
        item.prev is not None and item.worker is not None for item in batch
    )


async def write_counted(conn: AsyncConnection, batch: Sequence[Append]) -> list[int | None]:
    """The counted way (see the module); raises :class:`Stale` (roll back!) on a miss."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    rows: list[dict[str, Any]] = []
    found: list[int | None] = []
    for item in batch:
        prev = cast(int, item.prev)
        last = prev + len(item.events)
        params = {**item.values, "last_event": last, "b_id": item.run_id, "b_prev": prev,
                  "b_worker": item.worker}  # fmt: skip
        groups.setdefault(tuple(sorted(params)), []).append(params)
        rows += event_rows(item, last)
        found.append(last)
    guarded = update(RUNS).where(
        RUNS.c.id == bindparam("b_id"), RUNS.c.last_event == bindparam("b_prev"),
        RUNS.c.lease_owner == bindparam("b_worker"), RUNS.c.status == "running",
    )  # fmt: skip
    for group in groups.values():
        done = await conn.execute(guarded, group)
        if done.rowcount != len(group):
            raise Stale
    if rows:
        await conn.execute(insert(EVENTS), rows)
    return found


async def write_each(conn: AsyncConnection, batch: Sequence[Append]) -> list[int | None]:
    """The one-by-one way: a guarded ``UPDATE … RETURNING`` each, one ``INSERT``."""
    rows: list[dict[str, Any]] = []
    found: list[int | None] = []
    for item in batch:
        last = await bump(conn, item)
        found.append(last)
        if last is not None:
            rows += event_rows(item, last)
    if rows:
        await conn.execute(insert(EVENTS), rows)
    return found


async def bump(conn: AsyncConnection, item: Append, *, queued: bool = False) -> int | None:
    """Set the item's values and count its events on the run, if the guard holds: the
    run's new ``last_event``, or ``None``."""
    query = update(RUNS).where(RUNS.c.id == item.run_id)
    if item.worker is not None:
        query = query.where(RUNS.c.lease_owner == item.worker, RUNS.c.status == "running")
    if queued:
        query = query.where(RUNS.c.status == "queued")
    query = query.values(last_event=RUNS.c.last_event + len(item.events), **item.values)
    last = (await conn.execute(query.returning(RUNS.c.last_event))).scalar_one_or_none()
    return None if last is None else int(last)
