"""The task core on SQLite and PostgreSQL: runs, claims, leases, cancel, schedules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from enclave.audit.writer import AuditWriter
from enclave.config import Settings
from enclave.errors import NotFound, TooManyRequests
from enclave.identity import Actor
from enclave.store.models import AuditRecord
from enclave.store.models_tasks import TaskRun
from enclave.store.repos import Store, open_store
from enclave.taskconfig import TasksSettings
from enclave.tasks.clock import ManualClock
from enclave.tasks.info import Event, RunInfo
from enclave.tasks.repo import TaskRepo
from enclave.tasks.service import SYSTEM, Caller, TaskService

ANN = Caller(user="ann", admin=False, actor=Actor(user="ann"))
BOB = Caller(user="bob", admin=False, actor=Actor(user="bob"))
T0 = datetime(2026, 3, 28, 5, 0, tzinfo=UTC)
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("clean_env")]


def steps(*specs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    numbered = [{"id": f"s{i}", **spec} for i, spec in enumerate(specs)]
    return {"name": "t", "steps": numbered, **extra}


async def no_chat(body: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("no model calls here")


def service(
    store: Store, home: Path, clock: Any = None, audit: AuditWriter | None = None, **tasks: Any
) -> TaskService:
    settings = Settings(home=home, tasks=TasksSettings(**tasks))
    extra = {"clock": clock} if clock else {}
    return TaskService(
        store, lambda: settings, chat=no_chat, knowledge=lambda: None,  # type: ignore[arg-type,return-value]
        audit=audit, home=home, **extra,
    )  # fmt: skip


@pytest.fixture
async def tasks(store: Store, tmp_path: Path) -> AsyncIterator[TaskService]:
    started = service(store, tmp_path, per_user_queued=3)
    await started.start()
    try:
        yield started
    finally:
        await started.aclose()


async def finished(svc: TaskService, run: RunInfo, caller: Caller = SYSTEM) -> list[Event]:
    async with asyncio.timeout(60):
        return [event async for event in svc.follow(caller, run.id)]


async def test_noop_and_sleep_steps_run_to_a_result(tasks: TaskService) -> None:
    definition = steps({"kind": "noop"}, {"kind": "sleep", "seconds": 1.1, "title": "nap"})
    run = await tasks.submit(ANN, definition=definition)
    events = await finished(tasks, run, ANN)
    kinds = [(e.type, e.data.get("status")) for e in events if e.type != "progress"]
    assert kinds == [
        ("status", "queued"), ("status", "running"), ("step", "started"), ("step", "done"),
        ("step", "started"), ("step", "done"), ("result", None), ("status", "succeeded"),
    ]  # fmt: skip
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert any(e.data.get("message", "").startswith("slept 1") for e in events)
    done = await tasks.get_run(ANN, run.id)
    assert done.status == "succeeded"
    assert done.result == {"slept": 1.1}
    assert done.progress_percent == 100.0
    assert done.last_event == events[-1].id


async def test_a_failing_step_is_retried_when_asked_then_fails(tasks: TaskService) -> None:
    too_long = {"kind": "sleep", "seconds": 5, "progress": False}  # over the timeout: refused
    definition = steps(too_long, limits={"timeout_s": 1, "max_attempts": 2}, retry_on_error=True)
    events = await finished(tasks, await tasks.submit(ANN, definition=definition), ANN)
    statuses = [e.data["status"] for e in events if e.type == "status"]
    assert statuses == ["queued", "running", "queued", "running", "failed"]
    error = next(e for e in reversed(events) if e.type == "error")
    assert "tasks.limits.timeout_s" in error.data["message"]


async def test_a_run_over_its_timeout_fails_naming_the_limit(tasks: TaskService) -> None:
    nap = {"kind": "sleep", "seconds": 0.8, "progress": False}
    run = await tasks.submit(ANN, definition=steps(nap, nap, limits={"timeout_s": 1}))
    events = await finished(tasks, run, ANN)
    assert events[-1].data["status"] == "failed"
    assert events[-2].data == {"message": events[-2].data["message"], "error_type": "timeout"}
    assert "tasks.limits.timeout_s" in events[-2].data["message"]


async def test_cancel_stops_a_running_step(tasks: TaskService) -> None:
    run = await tasks.submit(ANN, definition=steps({"kind": "sleep", "seconds": 600}))
    async with asyncio.timeout(30):
        async for event in tasks.follow(ANN, run.id):
            if event.type == "step":
                break
    with pytest.raises(NotFound):
        await tasks.cancel(BOB, run.id)
    await tasks.cancel(ANN, run.id)
    events = await finished(tasks, run, ANN)
    assert events[-1].data["status"] == "cancelled"
    assert (await tasks.get_run(ANN, run.id)).status == "cancelled"


async def test_owners_see_their_runs_and_quotas_name_their_setting(tasks: TaskService) -> None:
    long = steps({"kind": "sleep", "seconds": 600, "progress": False})
    runs = [await tasks.submit(ANN, definition=long) for _ in range(3)]
    with pytest.raises(TooManyRequests, match=r"tasks\.per_user_queued") as caught:
        await tasks.submit(ANN, definition=long)
    assert caught.value.param == "tasks.per_user_queued"
    with pytest.raises(NotFound):
        await tasks.get_run(BOB, runs[0].id)
    assert (await tasks.list_runs(BOB))[0] == []
    mine, _ = await tasks.list_runs(ANN)
    assert {r.id for r in mine} == {r.id for r in runs}
    page, cursor = await tasks.list_runs(SYSTEM, limit=2)
    rest, _ = await tasks.list_runs(SYSTEM, limit=2, before=cursor)
    assert [r.id for r in page + rest] == [r.id for r in runs][::-1]
    for run in runs:
        await tasks.cancel(ANN, run.id)


async def test_a_run_is_claimed_once(database_url: str, store: Store) -> None:
    other = await open_store(database_url)
    try:
        first, second = TaskRepo(store), TaskRepo(other)
        svc = service(store, Path("/nonexistent"), clock=ManualClock(T0))
        for _ in range(30):
            row = svc._new_run(None, steps({"kind": "noop"}), {})
            await first.add_run(row, T0)
        until = T0 + timedelta(seconds=30)

        async def claim_all(repo: TaskRepo, worker: str) -> list[str]:
            got: list[str] = []
            while batch := await repo.claim(worker, T0, until, 4, 10):
                got += [row.id for row in batch]
            return got

        a, b = await asyncio.gather(claim_all(first, "w1"), claim_all(second, "w2"))
        assert len(a) + len(b) == 30
        assert not set(a) & set(b)
    finally:
        await other.aclose()


async def test_one_users_queue_does_not_hide_another_users_runs(
    store: Store, tmp_path: Path
) -> None:
    repo = TaskRepo(store)
    svc = service(store, tmp_path, clock=ManualClock(T0))
    for _ in range(20):
        await repo.add_run(svc._new_run("ann", steps({"kind": "noop"}), {}), T0)
    bobs = svc._new_run("bob", steps({"kind": "noop"}), {})
    bobs.not_before = bobs.created_at = T0 + timedelta(seconds=1)  # behind all of ann's
    await repo.add_run(bobs, T0)
    now, until = T0 + timedelta(seconds=2), T0 + timedelta(minutes=5)
    first = await repo.claim("w", now, until, 1, 1)  # ann's oldest: ann is at her limit
    second = await repo.claim("w", now, until, 1, 1)
    assert [row.owner for row in first] == ["ann"]
    assert [row.id for row in second] == [bobs.id]


async def test_a_model_call_cannot_answer_past_the_runs_token_budget(
    store: Store, tmp_path: Path
) -> None:
    asked: list[Any] = []

    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        asked.append(body.get("max_tokens"))
        return {"choices": [{"message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 30, "completion_tokens": 20}}  # fmt: skip

    settings = Settings(home=tmp_path, tasks=TasksSettings(limits={"max_tokens": 120}))
    svc = TaskService(
        store, lambda: settings, chat=chat, knowledge=lambda: None,  # type: ignore[arg-type,return-value]
        audit=None, home=tmp_path,
    )  # fmt: skip
    await svc.start()
    try:
        calls = [{"kind": "llm", "prompt": "hi", "max_tokens": 1000} for _ in range(3)]
        run = await svc.submit(SYSTEM, definition=steps(*calls))
        events = await finished(svc, run)
    finally:
        await svc.aclose()
    assert asked == [120, 70, 20]  # what was left of the budget, never the 1000 asked
    assert events[-1].data["status"] == "failed"  # the third call went over
    assert "tasks.limits.max_tokens" in next(e for e in events if e.type == "error").data["message"]


async def test_an_expired_lease_requeues_then_fails(store: Store, tmp_path: Path) -> None:
    repo = TaskRepo(store)
    row: TaskRun = service(store, tmp_path, clock=ManualClock(T0))._new_run(
        None, steps({"kind": "noop"}), {}
    )
    await repo.add_run(row, T0)
    for attempt, expected in [(1, "queued"), (2, "failed")]:
        now = T0 + timedelta(minutes=attempt)
        (claimed,) = await repo.claim("w", now, now + timedelta(seconds=5), 1, 1)
        assert claimed.attempt == attempt
        assert await repo.reap(now + timedelta(seconds=4)) == []
        assert await repo.append(row.id, [("log", {})], now, worker="other") is None
        assert [r.status for r in await repo.reap(now + timedelta(seconds=6))] == [expected]
        assert not await repo.renew(row.id, "w", now + timedelta(seconds=60))
    events = await repo.events(row.id)
    statuses = [(e.data["status"], e.data.get("reason")) for e in events if e.type == "status"]
    assert statuses == [
        ("queued", None), ("running", None), ("queued", "worker lost"), ("running", None),
        ("failed", "worker_lost"),
    ]  # fmt: skip


async def test_a_cron_schedule_fires_on_time_under_a_manual_clock(
    store: Store, tmp_path: Path
) -> None:
    clock = ManualClock(T0)  # Saturday 28 March 2026, 06:00 in Berlin
    svc = service(store, tmp_path, clock=clock, misfire_grace_s=30)
    body = {"task": "x", "cron": "0 7 * * *", "timezone": "Europe/Berlin", "missed": "skip"}
    await svc.define(ANN, steps({"kind": "noop"}) | {"name": "x"})
    sched = await svc.add_schedule(ANN, body)
    fire_times = [datetime(2026, 3, 28, 6, tzinfo=UTC), datetime(2026, 3, 29, 5, tzinfo=UTC)]
    assert sched.next_run_at == fire_times[0]
    for when in fire_times:
        clock.set(when - timedelta(seconds=1))
        assert await svc.scheduler.tick() == 0
        clock.set(when)
        assert await svc.scheduler.tick() == 1
        assert await svc.scheduler.tick() == 0  # fired once
    runs, _ = await svc.list_runs(ANN)
    assert sorted(r.id for r in runs) == sorted(r.id for r in runs if r.schedule == sched.id)
    rows = [await svc.repo.get_run(r.id) for r in runs]
    assert sorted(r.scheduled_for for r in rows if r and r.scheduled_for) == fire_times
    paused = await svc.pause(ANN, sched.id)
    clock.set(datetime(2026, 3, 30, 5, tzinfo=UTC))
    assert paused.paused
    assert await svc.scheduler.tick() == 0
    resumed = await svc.resume(ANN, sched.id)
    assert resumed.next_run_at == datetime(2026, 3, 31, 5, tzinfo=UTC)
    with pytest.raises(NotFound):
        await svc.get_schedule(BOB, sched.id)


async def test_old_runs_are_forgotten_with_their_files(store: Store, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    svc = service(store, tmp_path, clock=clock, keep_days=2)
    runs = [await svc.submit(ANN, definition=steps({"kind": "noop"})) for _ in range(2)]
    await svc.repo.request_cancel(runs[0].id, T0)  # finished at T0
    (svc.outputs() / runs[0].id).mkdir(parents=True)
    clock.set(T0 + timedelta(days=2, seconds=1))
    assert await svc.purge() == 1
    assert not (svc.outputs() / runs[0].id).exists()
    with pytest.raises(NotFound):
        await svc.get_run(ANN, runs[0].id)
    assert await svc.repo.events(runs[0].id) == []
    assert (await svc.get_run(ANN, runs[1].id)).status == "queued"


async def test_a_files_hint_reaches_the_run_and_a_retry(tasks: TaskService) -> None:
    hint = ["upload-1.md"]
    echo = {"kind": "sleep", "seconds": 0, "progress": "{{ run.files_hint[0] == 'upload-1.md' }}"}
    run = await tasks.submit(ANN, definition=steps(echo), files_hint=hint)
    assert (await finished(tasks, run, ANN))[-1].data["status"] == "succeeded"
    again = await tasks.retry(ANN, run.id)
    assert again.retry_of == run.id
    assert again.definition["files_hint"] == hint
    assert (await finished(tasks, again, ANN))[-1].data["status"] == "succeeded"


async def test_runs_steps_and_schedules_are_audited(store: Store, tmp_path: Path) -> None:
    writer = AuditWriter(store.sessions, b"k" * 32, strict=True)
    svc = service(store, tmp_path, audit=writer)
    await svc.start()
    try:
        await svc.define(ANN, steps({"kind": "noop"}) | {"name": "x"})
        await finished(svc, await svc.submit(ANN, task="x"), ANN)
        sched = await svc.add_schedule(ANN, {"task": "x", "every_s": 3600})
        await svc.pause(ANN, sched.id)
        await svc.remove_schedule(ANN, sched.id)
    finally:
        await svc.aclose()
        await writer.aclose()
    async with store.sessions() as session:
        query = select(AuditRecord.action, AuditRecord.user).order_by(AuditRecord.seq)
        rows = (await session.execute(query)).all()
    assert [tuple(row) for row in rows] == [
        ("task.define", "ann"), ("task.run.submit", "ann"), ("task.run.start", "ann"),
        ("task.step", "ann"), ("task.run.finish", "ann"), ("task.schedule.add", "ann"),
        ("task.schedule.pause", "ann"), ("task.schedule.remove", "ann"),
    ]  # fmt: skip
