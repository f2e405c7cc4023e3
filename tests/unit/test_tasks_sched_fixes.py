"""Fire times that must not repeat: odd intervals, the autumn DST change, long outages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import croniter as croniter_module
import pytest

from enclave.store.models_tasks import TaskSchedule
from enclave.tasks.scheduler import next_after, plan
from tests.unit.tasks_times import T0


def schedule(kind: str, **values: object) -> TaskSchedule:
    return TaskSchedule(
        **{"id": "sch_x", "kind": kind, "missed": "skip", "created_at": T0, **values}
    )


@pytest.mark.parametrize("every_s", [1.1, 2.2, 1.3, 7.7, 86400 / 7, 0.1 + 0.2])
def test_an_interval_always_moves_strictly_forward(every_s: float) -> None:
    every = schedule("interval", every_s=every_s, at=T0)
    when = T0
    for _ in range(200):
        following = next_after(every, when)
        assert following is not None
        assert following > when
        when = following


@pytest.mark.parametrize("every_s", [1.1, 7.7, 86400 / 7])
def test_plan_fires_each_time_once_and_moves_on(every_s: float) -> None:
    every = schedule("interval", every_s=every_s, at=T0, next_run_at=T0, missed="all")
    now = T0 + timedelta(seconds=every_s * 5)
    fire, following = plan(every, now, grace_s=3600, max_catch_up=10)
    assert len(fire) == len(set(fire))
    assert fire
    assert following is not None
    assert following > now


def test_a_daily_cron_fires_once_on_the_autumn_dst_change() -> None:
    # 01:30 happens twice in New York on 1 November 2026 (EDT, then EST): one run
    nightly = schedule("cron", cron="30 1 * * *", timezone="America/New_York")
    start = datetime(2026, 10, 31, 12, tzinfo=UTC)
    first = next_after(nightly, start)
    second = next_after(nightly, first)  # type: ignore[arg-type]
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert second == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)


@pytest.mark.parametrize(("missed", "count"), [("skip", 1), ("once", 2), ("all", 11)])
def test_a_long_outage_computes_only_what_the_policy_fires(
    monkeypatch: pytest.MonkeyPatch, missed: str, count: int
) -> None:
    calls = []
    for name in ("get_next", "get_prev"):
        real = getattr(croniter_module.croniter, name)

        def counted(self: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            calls.append(1)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(croniter_module.croniter, name, counted)
    minutely = schedule("cron", cron="* * * * *", timezone="UTC", next_run_at=T0, missed=missed)
    fire, _ = plan(minutely, T0 + timedelta(days=365, seconds=5), grace_s=60, max_catch_up=10)
    assert len(fire) == count
    assert len(calls) <= 2 * count + 4  # not a walk through a year of minutes
