"""The router with scripted upstreams at the I/O seam: breaker, balancing, queue, retries."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from enclave.config import RouterSettings
from enclave.errors import (
    EnclaveError,
    InvalidRequest,
    NoHealthyUpstream,
    QueueFull,
    UpstreamError,
    UpstreamStatusError,
)
from enclave.router import CallRecord, Lease, Member, Pool, Router
from enclave.router.breaker import Breaker
from enclave.router.member import MemberOptions
from enclave.router.policy import choose, rendezvous, two_choices
from enclave.router.router import RetryBudget, Spec
from enclave.upstream import ChatStream, UpstreamState
from enclave.upstream.base import ALWAYS_READY


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- breaker ---------------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_and_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = Breaker(3, 5.0, clock=clock)
    breaker.failure()
    breaker.success()  # a success in between resets the count
    for _ in range(2):
        breaker.failure()
    assert breaker.current() == "closed"
    breaker.failure()
    assert (breaker.current(), breaker.usable()) == ("open", False)
    assert breaker.retry_in() == 5.0
    clock.now += 5
    assert breaker.usable()
    assert breaker.current() == "half_open"
    breaker.dispatched()
    assert not breaker.usable()  # only one trial at a time
    breaker.success()
    assert (breaker.current(), breaker.usable()) == ("closed", True)


def test_a_failed_trial_doubles_the_open_period_up_to_a_minute() -> None:
    clock = Clock()
    breaker = Breaker(1, 20.0, clock=clock)
    periods = []
    for _ in range(4):
        breaker.failure()
        periods.append(breaker.retry_in())
        clock.now += breaker.retry_in()
        assert breaker.usable()
        breaker.dispatched()
    assert periods == [20.0, 40.0, 60.0, 60.0]
    breaker.success()
    breaker.failure()
    assert breaker.retry_in() == 20.0  # success reset the period


def test_recovery_seen_by_active_checks_half_opens_at_once() -> None:
    breaker = Breaker(1, 30.0, clock=Clock())
    breaker.failure()
    assert not breaker.usable()
    breaker.recovered()
    assert breaker.current() == "half_open"
    assert breaker.usable()


# --- balancing -------------------------------------------------------------------------


@dataclass
class Cand:
    name: str
    weight: float = 1.0
    outstanding: int = 0


def test_two_choices_sends_to_the_less_loaded_and_respects_weight() -> None:
    rng = random.Random(7)
    busy, idle = Cand("busy", outstanding=9), Cand("idle")
    assert {two_choices([busy, idle], rng).name for _ in range(50)} == {"idle"}
    heavy, light = Cand("heavy", weight=3, outstanding=2), Cand("light", outstanding=1)
    # 3 / 3 = 1.0 per unit of weight against 2 / 1: the heavy member still wins
    assert two_choices([heavy, light], rng) is heavy


def test_two_choices_spreads_evenly_among_equals() -> None:
    rng = random.Random(1)
    members = [Cand(f"m{i}") for i in range(4)]
    counts = Counter(two_choices(members, rng).name for _ in range(4000))
    assert min(counts.values()) > 800


def test_affinity_keeps_a_key_on_one_member_until_it_is_overloaded() -> None:
    rng = random.Random(3)
    members = [Cand("a"), Cand("b"), Cand("c")]
    first = rendezvous(members, "conversation-42")
    assert {choose(members, rng, "conversation-42").name for _ in range(20)} == {first.name}
    spread = Counter(choose(members, rng, f"k{i}").name for i in range(900))
    assert min(spread.values()) > 200  # different keys still spread out
    first.outstanding = 10  # far above the others: the key falls back to balancing
    assert choose(members, rng, "conversation-42") is not first


def test_rendezvous_moves_only_the_keys_of_a_member_that_leaves() -> None:
    members = [Cand("a"), Cand("b"), Cand("c")]
    before = {f"k{i}": rendezvous(members, f"k{i}").name for i in range(300)}
    after = {key: rendezvous(members[:2], key).name for key in before}
    moved = [key for key in before if before[key] != after[key]]
    assert moved
    assert all(before[key] == "c" for key in moved)


# --- scripted upstreams ----------------------------------------------------------------


Script = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class Scripted:
    """An upstream at the I/O seam whose answers the test scripts."""

    name: str
    answers: list[Script | EnclaveError] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    vision: bool = False
    ready: UpstreamState = ALWAYS_READY

    def state(self) -> UpstreamState:
        return self.ready

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(body)
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, EnclaveError):
            raise answer
        if answer is not None:
            return await answer(body)
        return {"served_by": self.name, "model": body["model"]}

    async def open_chat_stream(self, body: dict[str, Any]) -> ChatStream:
        raise NotImplementedError

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def open_completions_stream(self, body: dict[str, Any]) -> ChatStream:
        raise NotImplementedError

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def models(self) -> list[dict[str, Any]]:
        return []


def member(upstream: Scripted, **options: Any) -> Member:
    return Member(upstream.name, upstream, MemberOptions(**options), Breaker(2, 5.0))


def make_router(*members: Member, **settings: Any) -> Router:
    specs = [Spec(m, chat={"m": f"{m.name}-model"}) for m in members]
    return Router(specs, RouterSettings(**settings), default_model=None)


async def call(lease: Lease, wire: dict[str, Any]) -> dict[str, Any]:
    return await lease.member.upstream.chat(wire)


async def send(router: Router, record: CallRecord | None = None) -> dict[str, Any]:
    result, lease = await router.send(router.resolve("m", "chat"), {}, call, record or CallRecord())
    lease.done(True)
    return result


def status_error(status: int) -> UpstreamStatusError:
    return UpstreamStatusError(f"failed with {status}", status=502 if status >= 500 else status)


@pytest.mark.anyio
async def test_a_5xx_is_retried_on_another_member_with_its_own_model_name() -> None:
    a, b = Scripted("a", [status_error(500)]), Scripted("b")
    router = make_router(member(a, weight=100), member(b, weight=0.01))
    record = CallRecord()
    result = await send(router, record)
    assert result == {"served_by": "b", "model": "b-model"}
    assert (record.attempts, record.retries, record.member) == (2, 1, "b")
    assert router.members["a"].failures == 1
    assert router.members["a"].outstanding == 0


@pytest.mark.anyio
async def test_a_client_error_is_not_retried() -> None:
    a, b = Scripted("a", [status_error(400)]), Scripted("b")
    router = make_router(member(a, weight=100), member(b, weight=0.01))
    with pytest.raises(UpstreamStatusError, match="failed with 400"):
        await send(router)
    assert b.calls == []
    assert router.members["a"].failures == 0


@pytest.mark.anyio
async def test_a_busy_429_goes_elsewhere_without_counting_against_the_member() -> None:
    a, b = Scripted("a", [status_error(429)]), Scripted("b")
    router = make_router(member(a, weight=100), member(b, weight=0.01))
    assert (await send(router))["served_by"] == "b"
    assert router.members["a"].failures == 0


@pytest.mark.anyio
async def test_when_every_member_failed_the_last_error_is_the_answer() -> None:
    a = Scripted("a", [UpstreamError("a is down")])
    b = Scripted("b", [UpstreamError("b is down")])
    router = make_router(member(a), member(b))
    with pytest.raises(UpstreamError, match=r"[ab] is down"):
        await send(router)
    assert len(a.calls) == len(b.calls) == 1


@pytest.mark.anyio
async def test_retries_stop_at_the_configured_number() -> None:
    upstreams = [Scripted(n, [UpstreamError(f"{n} down")]) for n in "abcd"]
    router = make_router(*(member(u) for u in upstreams), retries=1)
    with pytest.raises(UpstreamError):
        await send(router)
    assert sum(len(u.calls) for u in upstreams) == 2


def test_the_retry_budget_allows_a_share_of_requests_plus_a_reserve() -> None:
    budget = RetryBudget(0.2)
    assert sum(budget.withdraw() for _ in range(20)) == 10  # the reserve
    for _ in range(50):
        budget.deposit()
    assert sum(budget.withdraw() for _ in range(20)) == 10  # 50 x 0.2, capped by the reserve
    for _ in range(5):
        budget.deposit()
    assert sum(budget.withdraw() for _ in range(20)) == 1


@pytest.mark.anyio
async def test_failures_eject_a_member_and_its_traffic_moves() -> None:
    a = Scripted("a", [UpstreamError("down"), UpstreamError("down")])
    b = Scripted("b")
    router = make_router(member(a, weight=100), member(b, weight=0.01))
    for _ in range(2):
        assert (await send(router))["served_by"] == "b"
    assert router.members["a"].breaker.current() == "open"
    a.calls.clear()
    for _ in range(5):
        assert (await send(router))["served_by"] == "b"
    assert a.calls == []


@pytest.mark.anyio
async def test_no_usable_member_is_a_503_with_retry_after() -> None:
    a = Scripted("a")
    router = make_router(member(a))
    router.members["a"].checked(False, "refused")
    with pytest.raises(NoHealthyUpstream) as caught:
        await send(router)
    assert caught.value.status == 503
    assert caught.value.retry_after >= 1
    assert router.health()["status"] == "unavailable"
    router.members["a"].checked(True)
    assert (await send(router))["served_by"] == "a"


# --- the queue -------------------------------------------------------------------------


def pool_of(*members: Member, size: int = 2, wait: float = 5.0) -> Pool:
    entries = [(m, m.name) for m in members]
    return Pool("m", "chat", entries, queue_size=size, queue_timeout_s=wait, rng=random.Random(1))


@pytest.mark.anyio
async def test_a_full_member_queues_callers_first_come_first_served() -> None:
    only = member(Scripted("a"), max_concurrency=1)
    pool = pool_of(only, size=5)
    first = await pool.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        lease = await pool.acquire()
        order.append(n)
        await asyncio.sleep(0)
        lease.done(True)

    waiting = [asyncio.create_task(wait(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    assert (len(pool.waiters), only.outstanding) == (3, 1)
    first.done(True)
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2]
    assert only.outstanding == 0


@pytest.mark.anyio
async def test_a_full_queue_answers_429_at_once() -> None:
    pool = pool_of(member(Scripted("a"), max_concurrency=1), size=1)
    await pool.acquire()
    queued = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull, match=r"queue is full \(router.queue_size=1\)") as caught:
        await pool.acquire()
    assert caught.value.status == 429
    assert caught.value.headers()["Retry-After"] == "1"
    queued.cancel()


@pytest.mark.anyio
async def test_waiting_past_the_queue_timeout_is_a_429() -> None:
    pool = pool_of(member(Scripted("a"), max_concurrency=1), wait=0.05)
    await pool.acquire()
    with pytest.raises(QueueFull, match=r"stayed busy for router\.queue_timeout_s=0\.05 s"):
        await pool.acquire()
    assert not pool.waiters


@pytest.mark.anyio
async def test_a_caller_that_gives_up_in_the_queue_leaves_no_slot_taken() -> None:
    only = member(Scripted("a"), max_concurrency=1)
    pool = pool_of(only)
    lease = await pool.acquire()
    gone = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.01)
    lease.done(True)  # grants the slot to the waiter...
    gone.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert only.outstanding == 0
    assert not pool.waiters
    again = await pool.acquire()
    assert only.outstanding == 1
    again.done(True)


@pytest.mark.anyio
async def test_waiters_fail_fast_when_the_last_member_goes_down() -> None:
    only = member(Scripted("a"), max_concurrency=1)
    pool = pool_of(only)
    await pool.acquire()
    waiting = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.01)
    only.checked(False, "connection refused")
    with pytest.raises(NoHealthyUpstream):
        await waiting


@pytest.mark.anyio
async def test_a_loading_member_is_a_503_engine_loading() -> None:
    loading = UpstreamState("starting", ready=False, detail="loading model", retry_after=9)
    pool = pool_of(member(Scripted("engine", ready=loading)))
    with pytest.raises(EnclaveError) as caught:
        await pool.acquire()
    assert (caught.value.status, caught.value.code) == (503, "engine_loading")
    assert caught.value.headers() == {"Retry-After": "9"}


@pytest.mark.anyio
async def test_a_lease_is_given_back_once_whatever_happens() -> None:
    only = member(Scripted("a"))
    lease = only.lease("a")
    lease.done(False, "broke")
    lease.done(True)
    assert (only.outstanding, only.failures, only.last_error) == (0, 1, "broke")


@pytest.mark.anyio
async def test_an_invalid_request_from_upstream_keeps_the_member_healthy() -> None:
    a = Scripted("a", [InvalidRequest("bad")])
    router = make_router(member(a))
    with pytest.raises(InvalidRequest):
        await send(router)
    assert router.members["a"].breaker.current() == "closed"
