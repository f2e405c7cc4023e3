"""A pool member: one upstream with its weight, cap, timeouts, breaker and health."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from enclave.router.breaker import Breaker
from enclave.upstream.base import Upstream


@dataclass(frozen=True, slots=True)
class MemberOptions:
    weight: float = 1.0
    max_concurrency: int = 0  # 0 = no cap
    first_byte_timeout_s: float = 120.0
    read_timeout_s: float = 60.0
    total_timeout_s: float = 1800.0
    stream_usage: bool = True
    context_length: int | None = None
    base_url: str = ""
    probe: bool = True  # active health checks over HTTP (not for in-process members)
    tool_blocks: bool = False  # read tool calls a small model wrote as JSON (the engine)
    standby: bool = False  # takes calls only while no primary member of its pool can


class Listener(Protocol):
    def pump(self) -> None: ...


class Counted(Protocol):
    in_flight: int  # leases taken through it and not given back


@dataclass(eq=False)
class Member:
    name: str
    upstream: Upstream
    options: MemberOptions
    breaker: Breaker
    healthy: bool = True  # the last active check passed (or none ran yet)
    outstanding: int = 0
    served: int = 0
    failures: int = 0
    last_error: str = ""
    discovered: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → model card
    public: list[str] = field(default_factory=list)  # the pools it is in
    context_fn: Callable[[], int | None] | None = None  # the engine knows its own
    listeners: weakref.WeakSet[Listener] = field(default_factory=weakref.WeakSet)

    @property
    def weight(self) -> float:
        return self.options.weight

    @property
    def vision(self) -> bool:
        return self.upstream.vision

    def ready(self) -> bool:
        return self.healthy and self.upstream.state().ready

    def usable(self) -> bool:
        return self.ready() and self.breaker.usable()

    def has_room(self) -> bool:
        cap = self.options.max_concurrency
        return cap == 0 or self.outstanding < cap

    def lease(self, upstream_model: str, pool: Counted | None = None) -> Lease:
        self.outstanding += 1
        self.served += 1
        self.breaker.dispatched()
        if pool is not None:
            pool.in_flight += 1
        return Lease(self, upstream_model, pool)

    def context_length(self, upstream_model: str) -> int | None:
        if self.options.context_length:
            return self.options.context_length
        if self.context_fn:
            return self.context_fn()
        card = self.discovered.get(upstream_model, {})
        value = card.get("max_model_len") or (card.get("meta") or {}).get("n_ctx")
        return value if isinstance(value, int) else None

    def checked(self, ok: bool, error: str = "") -> None:
        """The result of an active health check."""
        came_back = ok and not self.healthy
        self.healthy = ok
        if not ok:
            self.last_error = error
        if came_back:
            self.breaker.recovered()
        if came_back or not ok:
            self.notify()

    def notify(self) -> None:
        for pool in list(self.listeners):
            pool.pump()

    def state_name(self) -> str:
        state = self.upstream.state()
        if not state.ready:
            return state.state
        return "healthy" if self.healthy else "unhealthy"

    def view(self) -> dict[str, Any]:
        state = self.upstream.state()
        return {
            "name": self.name,
            "base_url": self.options.base_url,
            "state": self.state_name(),
            "breaker": self.breaker.current(),
            "outstanding": self.outstanding,
            "max_concurrency": self.options.max_concurrency,
            "weight": self.weight,
            "standby": self.options.standby,
            "models": self.public,
            "served": self.served,
            "failures": self.failures,
            "last_error": self.last_error,
            "detail": state.detail,
            **state.info,
        }


class Lease:
    """One request's hold on a member; ``done`` gives it back exactly once."""

    __slots__ = ("member", "pool", "queued_s", "released", "upstream_model")

    def __init__(self, member: Member, upstream_model: str, pool: Counted | None = None) -> None:
        self.member = member
        self.upstream_model = upstream_model
        self.pool = pool  # counts its calls in flight (the admin console shows them)
        self.queued_s = 0.0
        self.released = False

    def done(self, ok: bool | None, error: str = "", *, caller: str | None = None) -> bool:
        """``ok`` True: the member did its job; False: its fault; None: nobody's (client).

        A failure on ``caller``'s request (the upstream answered it with an error) may be
        that caller's alone; the result says whether it counted against the member."""
        if self.released:
            return True
        self.released = True
        member = self.member
        member.outstanding -= 1
        if self.pool is not None:
            self.pool.in_flight -= 1
        counted = True
        if ok is True:
            member.breaker.success()
        elif ok is False:
            member.failures += 1
            member.last_error = error
            counted = member.breaker.failure(caller if member.healthy else None)
        else:
            member.breaker.trial = False  # a half-open trial that proved nothing
        member.notify()
        return counted
