"""The worker's batched writes and the hand-over of events to followers, on SQLite and
PostgreSQL: a wrong ``last_event`` hint or a lost lease in a group costs a retry, never a
wrong number; a follower given events by its own process still gets those written
elsewhere, in order, once each."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from enclave.config import Settings
from enclave.store.repos import Store, open_store
from enclave.taskconfig import TasksSettings
from enclave.tasks.info import Event
from enclave.tasks.repo import TaskRepo
from enclave.tasks.service import SYSTEM, TaskService

T0 = datetime(2026, 3, 28, 5, 0, tzinfo=UTC)
NOOP = {"name": "t", "steps": [{"id": "s", "kind": "noop"}]}
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("clean_env")]


async def no_chat(body: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("no model calls here")


def idle_service(store: Store, home: Path) -> TaskService:
    settings = Settings(home=home, tasks=TasksSettings(worker=False, scheduler=False))
    return TaskService(
        store, lambda: settings, chat=no_chat, knowledge=lambda: None,  # type: ignore[arg-type,return-value]
        audit=None, home=home,
    )  # fmt: skip


async def claimed(svc: TaskService, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        row = svc._new_run(None, NOOP, {})
        await svc.repo.add_run(row, T0)
        ids.append(row.id)
    now = svc.clock.now() + timedelta(seconds=1)  # the runs are due from the clock's now
    taken = await svc.repo.claim("w", now, now + timedelta(seconds=60), count, 100)
    assert sorted(row.id for row in taken) == sorted(ids)
    assert {row.last_event for row in taken} == {2}  # queued, running
    return ids


async def numbers(repo: TaskRepo, run_id: str) -> list[int]:
    return [event.seq for event in await repo.events(run_id)]


async def test_a_group_with_a_wrong_hint_and_a_lost_lease_is_numbered_right(
    store: Store, tmp_path: Path
) -> None:
    svc = idle_service(store, tmp_path)
    good, stale, lost = await claimed(svc, 3)
    one = [("log", {"message": "x"})]
    found = await asyncio.gather(  # one group: appended before the flusher runs
        svc.repo.append(good, one, T0, worker="w", prev=2),
        svc.repo.append(stale, one + one, T0, worker="w", prev=1),  # the counter is 2
        svc.repo.append(lost, one, T0, worker="other", prev=2),
    )
    assert list(found) == [3, 4, None]
    assert await numbers(svc.repo, good) == [1, 2, 3]
    assert await numbers(svc.repo, stale) == [1, 2, 3, 4]
    assert await numbers(svc.repo, lost) == [1, 2]
    again = await asyncio.gather(  # right hints: the counted way, if the driver has it
        svc.repo.append(good, one, T0, {"progress_percent": 50.0}, worker="w", prev=3),
        svc.repo.append(stale, one, T0, worker="w", prev=4),
    )
    assert list(again) == [4, 5]
    run = await svc.repo.get_run(good)
    assert run is not None
    assert run.progress_percent == 50.0
    assert run.last_event == 4
    assert await numbers(svc.repo, stale) == [1, 2, 3, 4, 5]


async def test_a_follower_gets_events_written_elsewhere_in_order_once(
    database_url: str, store: Store, tmp_path: Path
) -> None:
    svc = idle_service(store, tmp_path)
    other_store = await open_store(database_url)
    try:
        elsewhere = TaskRepo(other_store)  # another process: hands nothing over
        (run_id,) = await claimed(svc, 1)
        seen: asyncio.Queue[Event] = asyncio.Queue()

        async def follow() -> None:
            async for event in svc.follow(SYSTEM, run_id):
                seen.put_nowait(event)

        follower = asyncio.create_task(follow())
        got = [await asyncio.wait_for(seen.get(), 30) for _ in range(2)]
        log = [("log", {"message": "here"})]
        await svc.repo.append(run_id, log, T0, worker="w", prev=2)  # handed over: 3
        got.append(await asyncio.wait_for(seen.get(), 30))
        await elsewhere.append(run_id, [("log", {"message": "there"})], T0, worker="w")  # 4
        await svc.repo.append(run_id, log, T0, worker="w", prev=3)  # stale hint: 5, a gap
        done: list[tuple[str, dict[str, Any]]] = [
            ("result", {"result": {}, "files": []}), ("status", {"status": "succeeded"}),
        ]  # fmt: skip
        await svc.repo.append(run_id, done, T0, {"status": "succeeded"}, worker="w", prev=5)
        await asyncio.wait_for(follower, 30)
        while not seen.empty():
            got.append(seen.get_nowait())
    finally:
        await other_store.aclose()
    assert [event.id for event in got] == [1, 2, 3, 4, 5, 6, 7]
    assert [event.data.get("message") for event in got if event.type == "log"] == [
        "here", "there", "here",
    ]  # fmt: skip
    assert got[-1].terminal
