"""The time tasks run by: the system's, or one a test moves by hand.

The scheduler and the worker read ``now()`` and wait with ``sleep()``; a test gives a
:class:`ManualClock` and calls the scheduler's ``tick()`` after moving it, so a cron
schedule is checked against exact times, never against the wall clock.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when told (tests). ``sleep`` returns once ``advance`` has
    moved the time past its end."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("give a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when.astimezone(UTC)

    async def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        async with self._moved:
            self._moved.notify_all()

    async def sleep(self, seconds: float) -> None:
        end = self._now + timedelta(seconds=seconds)
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= end)
