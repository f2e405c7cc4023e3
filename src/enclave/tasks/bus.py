"""Wake-ups: "something changed, read the database again".

The database is the source of truth; the bus only says *when* to look, so a lost
message costs at most one poll interval. Topics: ``runs`` (a run was queued),
``cancel`` (a cancel was asked for), ``run:<id>`` (the run has new events).
:class:`LocalBus` wakes waiters of this process; :class:`RedisBus` (``tasks.events:
redis``) also publishes to, and listens on, Redis pub/sub so other replicas wake too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("enclave.tasks")

CHANNEL = "enclave:tasks:"
PUBLISH_PENDING = 1000  # topics waiting to be published; past it a wake-up is dropped
PUBLISH_TIMEOUT_S = 1.0  # one publish; a slower Redis loses the wake-up (the poll finds it)


class Waiter:
    """A subscription to one topic; ``wait`` returns early when it was notified since the
    last ``wait`` (so a notification between reading and waiting is never missed).

    In process, a writer may also hand over what it wrote (:meth:`deliver`: a run's
    events, just committed), so that a follower need not read them back; ``stale`` tells
    it that something else changed, which only the database knows."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._items: list[Any] = []
        self._seen = 0  # the highest number handed over
        self.stale = False

    def wake(self, upto: int | None = None) -> None:
        """``upto``: what changed is numbered up to this (a wake-up for what was handed
        over already is dropped)."""
        if upto is None or upto > self._seen:
            self.stale = True
            self._event.set()

    def deliver(self, items: list[Any], last: int) -> None:
        self._items += items
        self._seen = max(self._seen, last)
        self._event.set()

    def take(self) -> list[Any]:
        """What was handed over since the last ``take``."""
        items, self._items = self._items, []
        return items

    async def wait(self, seconds: float) -> bool:
        """Whether a notification came (``False``: ``seconds`` passed)."""
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


class LocalBus:
    def __init__(self) -> None:
        self._waiters: dict[str, set[Waiter]] = {}

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    @contextlib.contextmanager
    def subscribe(self, topic: str) -> Iterator[Waiter]:
        waiter = Waiter()
        self._waiters.setdefault(topic, set()).add(waiter)
        try:
            yield waiter
        finally:
            found = self._waiters.get(topic)
            if found is not None:
                found.discard(waiter)
                if not found:
                    del self._waiters[topic]

    def wake(self, topic: str, upto: int | None = None) -> None:
        for waiter in self._waiters.get(topic, ()):
            waiter.wake(upto)

    def deliver(self, topic: str, items: list[Any], last: int) -> None:
        """Hand ``items`` (numbered up to ``last``) to this process's waiters on ``topic``."""
        for waiter in self._waiters.get(topic, ()):
            waiter.deliver(items, last)

    def listening(self, topic: str) -> bool:
        return topic in self._waiters

    async def notify(self, topic: str, upto: int | None = None) -> None:
        self.wake(topic, upto)


Bus = LocalBus


class RedisBus(LocalBus):
    """Also tells the other replicas, over Redis pub/sub on ``auth.redis_url``."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._redis: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[str, None] = {}  # topics to publish, in order, each once
        self._ready = asyncio.Event()

    async def start(self) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(self._url)
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._publish())]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._redis is not None:
            await self._redis.aclose()

    async def notify(self, topic: str, upto: int | None = None) -> None:
        """Wake this process's waiters now; the other replicas' in the background (an
        event write never waits on Redis: the database stays the truth)."""
        self.wake(topic, upto)
        if topic in self._pending or len(self._pending) < PUBLISH_PENDING:
            self._pending[topic] = None
            self._ready.set()

    async def _publish(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                topic = next(iter(self._pending))
                del self._pending[topic]
                try:
                    async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                        await self._redis.publish(CHANNEL + topic, b"")
                except Exception as exc:  # the poll still finds it
                    log.warning("tasks: publishing to Redis failed: %r", exc)

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.psubscribe(CHANNEL + "*")
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        channel = message["channel"]
                        text = channel.decode() if isinstance(channel, bytes) else str(channel)
                        self.wake(text.removeprefix(CHANNEL))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("tasks: Redis subscription lost (%s); retrying", exc)
                await asyncio.sleep(1.0)
