"""Schedules obey the owner's quotas and the shortest interval; purge leaves nothing old;
ad hoc definitions cannot pose as a task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from enclave.audit.writer import AuditWriter
from enclave.errors import InvalidRequest
from enclave.store.models import AuditRecord
from enclave.store.repos import Store
from enclave.tasks import service as service_module
from enclave.tasks.clock import ManualClock
from tests.storage.test_tasks_core import ANN, service, steps

T0 = datetime(2026, 3, 28, 5, 0, tzinfo=UTC)
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("clean_env")]


async def test_a_fire_over_the_owners_quota_is_skipped_and_the_schedule_moves_on(
    store: Store, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    writer = AuditWriter(store.sessions, b"k" * 32, strict=True)
    svc = service(store, tmp_path, clock=clock, audit=writer, per_user_queued=1)
    try:
        await svc.define(ANN, steps({"kind": "noop"}) | {"name": "x"})
        sched = await svc.add_schedule(ANN, {"task": "x", "every_s": 60})
        clock.set(T0 + timedelta(seconds=60))
        assert await svc.scheduler.tick() == 1
        clock.set(T0 + timedelta(seconds=120))
        assert await svc.scheduler.tick() == 0  # the first run is still queued: refused
        moved = await svc.get_schedule(ANN, sched.id)
        assert moved.next_run_at == T0 + timedelta(seconds=180)
    finally:
        await writer.aclose()
    async with store.sessions() as session:
        query = select(AuditRecord.action, AuditRecord.detail).order_by(AuditRecord.seq)
        fires = [d for a, d in (await session.execute(query)).all() if a == "task.schedule.fire"]
    assert len(fires) == 2
    assert "tasks.per_user_queued" in fires[1]["refused"][0]
    assert fires[1]["runs"] == []


@pytest.mark.parametrize("trigger", [{"every_s": 1}, {"every_s": 59.5}, {"cron": "* * * * * */10"}])
async def test_a_schedule_shorter_than_the_minimum_interval_is_refused(
    store: Store, tmp_path: Path, trigger: dict[str, Any]
) -> None:
    svc = service(store, tmp_path)
    await svc.define(ANN, steps({"kind": "noop"}) | {"name": "x"})
    with pytest.raises(InvalidRequest) as refused:
        await svc.add_schedule(ANN, {"task": "x", **trigger})
    assert refused.value.param == next(iter(trigger))
    assert "tasks.min_interval_s" in str(refused.value)


async def test_an_ad_hoc_definition_may_not_take_a_task_name(store: Store, tmp_path: Path) -> None:
    svc = service(store, tmp_path)
    await svc.define(ANN, steps({"kind": "noop"}) | {"name": "x"})
    for name in ("kb-ingest", "x"):
        with pytest.raises(InvalidRequest) as refused:
            await svc.submit(ANN, definition=steps({"kind": "noop"}) | {"name": name})
        assert refused.value.param == "definition.name"
    run = await svc.submit(ANN, task="x")
    await svc.repo.request_cancel(run.id, T0)
    again = await svc.retry(ANN, run.id)  # a retry repeats the task's snapshot: allowed
    assert again.task == "x"


async def test_purge_goes_on_until_no_old_run_is_left(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "PURGE_BATCH", 2)  # several batches from 5 runs
    clock = ManualClock(T0)
    svc = service(store, tmp_path, clock=clock, keep_days=1)
    runs = [await svc.submit(ANN, definition=steps({"kind": "noop"})) for _ in range(5)]
    for run in runs:
        await svc.repo.request_cancel(run.id, T0)
        (svc.outputs() / run.id).mkdir(parents=True)
    clock.set(T0 + timedelta(days=1, seconds=1))
    assert await svc.purge() == 5
    assert not any((svc.outputs() / run.id).exists() for run in runs)
