"""Fire times: cron in a time zone across a DST change, intervals, the missed policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from enclave.store.models_tasks import TaskSchedule
from enclave.tasks.scheduler import next_after, plan
from tests.unit.tasks_times import T0


def schedule(kind: str, **values: object) -> TaskSchedule:
    return TaskSchedule(
        **{"id": "sch_x", "kind": kind, "missed": "skip", "created_at": T0, **values}
    )


def test_cron_in_a_time_zone_follows_its_dst_change() -> None:
    # Europe/Berlin: 07:00 is 06:00Z in winter time, 05:00Z from Sunday 29 March 2026
    daily = schedule("cron", cron="0 7 * * *", timezone="Europe/Berlin")
    times = []
    when = T0
    for _ in range(4):
        when = next_after(daily, when)  # type: ignore[assignment]
        times.append(when)
    assert times == [
        datetime(2026, 3, 28, 6, tzinfo=UTC),
        datetime(2026, 3, 29, 5, tzinfo=UTC),
        datetime(2026, 3, 30, 5, tzinfo=UTC),
        datetime(2026, 3, 31, 5, tzinfo=UTC),
    ]


def test_a_cron_time_skipped_by_dst_fires_once_that_day() -> None:
    # 02:30 does not exist in Berlin on 29 March 2026: one run that day, none lost
    nightly = schedule("cron", cron="30 2 * * *", timezone="Europe/Berlin")
    start = datetime(2026, 3, 28, 12, tzinfo=UTC)
    first = next_after(nightly, start)
    second = next_after(nightly, first)  # type: ignore[arg-type]
    assert first == datetime(2026, 3, 29, 1, tzinfo=UTC)  # 03:00 summer time, that day
    assert second == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_intervals_keep_their_phase() -> None:
    every = schedule("interval", every_s=60.0, at=T0)
    assert next_after(every, T0) == T0 + timedelta(seconds=60)
    assert next_after(every, T0 + timedelta(seconds=61.5)) == T0 + timedelta(seconds=120)
    assert next_after(schedule("once", at=T0), T0 - timedelta(days=1)) is None


def test_due_times_within_the_grace_fire_and_missed_ones_follow_the_policy() -> None:
    every = schedule("interval", every_s=60.0, at=T0, next_run_at=T0)
    now = T0 + timedelta(minutes=30, seconds=10)  # 31 fire times due; grace covers the last 2
    expected_next = T0 + timedelta(minutes=31)
    for missed, count in [("skip", 0), ("once", 1), ("all", 10)]:
        every.missed = missed
        fire, following = plan(every, now, grace_s=70, max_catch_up=10)
        on_time = [T0 + timedelta(minutes=29), T0 + timedelta(minutes=30)]
        assert following == expected_next
        assert fire[-2:] == on_time, missed
        assert len(fire) == count + 2, missed
        if count:
            assert fire[-3] == T0 + timedelta(minutes=28)  # the latest missed one


def test_a_long_outage_jumps_to_now() -> None:
    minutely = schedule("cron", cron="* * * * *", timezone="UTC", next_run_at=T0, missed="once")
    now = T0 + timedelta(days=30, seconds=5)
    fire, following = plan(minutely, now, grace_s=60, max_catch_up=10)
    assert following == T0 + timedelta(days=30, minutes=1)
    # one catch-up run (the latest missed time) and the time within the grace
    assert fire == [T0 + timedelta(days=30, minutes=-1), T0 + timedelta(days=30)]
