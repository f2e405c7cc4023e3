"""A pool: the members that serve one public model, and the queue in front of them.

A request takes a lease on a member with room (see :mod:`enclave.router.policy`): a
primary member, or a ``standby`` one only while no primary member (outside those the
request already tried) is usable, like nginx's ``backup``. When
every usable member is at its cap the request waits, first come first served, in a
bounded queue; a full queue or a wait past ``queue_timeout_s`` is a 429 with
``Retry-After``. A member giving a lease back hands it straight to the next waiter.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from enclave.errors import EngineLoading, NoHealthyUpstream, QueueFull, RetryLater
from enclave.router.member import Lease, Member
from enclave.router.policy import choose

Kind = Literal["chat", "embeddings"]


@dataclass(eq=False)
class _Waiter:
    exclude: Collection[str]
    key: str | None
    future: asyncio.Future[Lease]
    since: float = field(default_factory=time.perf_counter)


class Pool:
    def __init__(
        self,
        public: str,
        kind: Kind,
        entries: list[tuple[Member, str]],
        *,
        queue_size: int,
        queue_timeout_s: float,
        rng: random.Random,
    ) -> None:
        self.public = public
        self.kind = kind
        self.members = [member for member, _ in entries]
        self.upstream_model = {member.name: model for member, model in entries}
        self.queue_size = queue_size
        self.queue_timeout_s = queue_timeout_s
        self.rng = rng
        self.waiters: deque[_Waiter] = deque()
        self.in_flight = 0  # leases taken here and not given back
        for member in self.members:
            member.listeners.add(self)

    @property
    def vision(self) -> bool:
        return all(member.vision for member in self.members)

    def context_length(self) -> int | None:
        known = [
            length
            for member in self.members
            if (length := member.context_length(self.upstream_model[member.name])) is not None
        ]
        return min(known) if known else None

    @property
    def has_standby(self) -> bool:
        return any(member.options.standby for member in self.members)

    def available(self) -> int:
        return sum(1 for member in self.members if member.usable())

    def others(self, exclude: Collection[str]) -> bool:
        """Whether a member outside ``exclude`` could take the request now or soon."""
        return any(m.name not in exclude and m.usable() for m in self.members)

    async def acquire(self, exclude: Collection[str] = (), key: str | None = None) -> Lease:
        """A lease on a member not in ``exclude``; waits in the queue when all are busy."""
        # Queued callers first; but a retry may be allowed a standby that the plain waiters
        # ahead of it (who see only the busy primaries) may not take, so it tries.
        jump = not self.waiters or (bool(exclude) and self.has_standby)
        lease = self._take(exclude, key) if jump else None
        if lease is not None:
            return lease
        if not self.others(exclude):
            raise self.unavailable(exclude)
        if len(self.waiters) >= self.queue_size:
            raise QueueFull(
                f"all members of {self.public} are busy and its queue is full "
                f"(router.queue_size={self.queue_size}); retry shortly",
                retry_after=self._retry_after(),
            )
        return await self._wait(_Waiter(exclude, key, asyncio.get_running_loop().create_future()))

    async def _wait(self, waiter: _Waiter) -> Lease:
        self.waiters.append(waiter)
        self.pump()
        granted = False
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                lease = await waiter.future
            granted = True
            return lease
        except TimeoutError:
            raise QueueFull(
                f"all members of {self.public} stayed busy for "
                f"router.queue_timeout_s={self.queue_timeout_s:g} s; retry shortly",
                retry_after=self._retry_after(),
            ) from None
        finally:
            if not granted:
                self._forget(waiter)

    def _forget(self, waiter: _Waiter) -> None:
        if waiter in self.waiters:
            self.waiters.remove(waiter)
        future = waiter.future
        if future.done() and not future.cancelled() and future.exception() is None:
            future.result().done(None)  # granted as we gave up: hand it on
        elif not future.done():
            future.cancel()

    def pump(self) -> None:
        """Grant free members to waiters, oldest first."""
        for waiter in list(self.waiters):
            if waiter.future.done():
                self.waiters.remove(waiter)
                continue
            lease = self._take(waiter.exclude, waiter.key)
            if lease is not None:
                self.waiters.remove(waiter)
                lease.queued_s = time.perf_counter() - waiter.since
                waiter.future.set_result(lease)
            elif not self.others(waiter.exclude):
                self.waiters.remove(waiter)
                waiter.future.set_exception(self.unavailable(waiter.exclude))
            elif not waiter.exclude and not self.has_standby:
                return  # nobody behind an unrestricted waiter can be served either

    def candidates(self, exclude: Collection[str] = ()) -> list[Member]:
        """The usable members outside ``exclude`` that may take calls now: the primaries,
        or the standbys while no primary is usable (busy primaries are waited for)."""
        usable = [m for m in self.members if m.name not in exclude and m.usable()]
        return [m for m in usable if not m.options.standby] or usable

    def _take(self, exclude: Collection[str], key: str | None) -> Lease | None:
        ready = [m for m in self.candidates(exclude) if m.has_room()]
        if not ready:
            return None
        member = choose(ready, self.rng, key)
        return member.lease(self.upstream_model[member.name], self)

    def unavailable(self, exclude: Collection[str] = ()) -> RetryLater:
        """The error for a pool none of whose members (outside ``exclude``) can serve."""
        rest = [m for m in self.members if m.name not in exclude]
        loading = [m for m in rest if m.healthy and not m.upstream.state().ready]
        if loading:
            state = loading[0].upstream.state()
            detail = f": {state.detail}" if state.detail else ""
            return EngineLoading(
                f"model server {loading[0].name} is {state.state}{detail}; retry shortly",
                retry_after=state.retry_after,
            )
        names = ", ".join(m.name for m in self.members)
        return NoHealthyUpstream(
            f"no healthy member can serve {self.public} now (members: {names}); retry shortly",
            retry_after=self._retry_after(),
        )

    def _retry_after(self) -> int:
        waits = [m.breaker.retry_in() for m in self.members if m.breaker.retry_in() > 0]
        return max(1, math.ceil(min(waits))) if waits else 1

    def view(self) -> dict[str, Any]:
        return {
            "model": self.public,
            "kind": self.kind,
            "members": [m.name for m in self.members],
            "standby": [m.name for m in self.members if m.options.standby],
            "available": self.available(),
            "queued": len(self.waiters),
        }
