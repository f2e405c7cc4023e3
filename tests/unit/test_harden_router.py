"""One caller's failing requests must not eject a pool member for everyone (issue 13 §1):
the breaker counts distinct callers, the caller alone is slowed down."""

from __future__ import annotations

from typing import Any

import pytest

from enclave.config import RouterSettings
from enclave.errors import CallerBackoff, EnclaveError, UpstreamError, UpstreamStatusError
from enclave.router import CallRecord, Member, Router
from enclave.router.breaker import Breaker
from enclave.router.member import MemberOptions
from enclave.router.router import Spec
from enclave.router.strikes import Strikes
from tests.unit.test_router import Clock, Scripted, call


def poison() -> UpstreamStatusError:
    return UpstreamStatusError("upstream a answered 500", status=500)


def test_one_callers_failures_do_not_open_the_breaker_two_callers_do() -> None:
    breaker = Breaker(3, 5.0, callers=2, window_s=60.0, clock=Clock())
    assert [breaker.failure("key:A") for _ in range(5)] == [False] * 5
    assert breaker.current() == "closed"
    assert breaker.failure("key:B") is True
    assert breaker.current() == "open"


def test_failures_naming_no_caller_open_it_as_before() -> None:
    breaker = Breaker(3, 5.0, callers=2, clock=Clock())
    for _ in range(3):
        breaker.failure()
    assert breaker.current() == "open"


def test_only_failures_within_the_window_count_as_distinct_callers() -> None:
    clock = Clock()
    breaker = Breaker(2, 5.0, callers=2, window_s=10.0, clock=clock)
    breaker.failure("key:A")
    clock.now += 11
    breaker.failure("key:A")
    assert breaker.failure("key:A") is False  # B's old failure, were there one, is gone
    clock.now += 11
    breaker.failure("key:B")
    assert breaker.current() == "closed"  # A's failures are out of the window


def test_a_half_open_trial_failing_on_one_callers_request_does_not_reopen() -> None:
    clock = Clock()
    breaker = Breaker(1, 5.0, callers=2, clock=clock)
    breaker.failure()
    clock.now += 5
    assert breaker.usable()
    breaker.dispatched()
    breaker.success()
    breaker.failure()  # open again (the member's own failure)
    clock.now += 5
    breaker.usable()
    breaker.dispatched()
    breaker.recent.clear()
    assert breaker.failure("key:A") is False
    assert breaker.current() == "half_open"
    assert breaker.usable()  # another trial may go


def test_strikes_back_off_and_double_and_a_success_clears_them() -> None:
    clock = Clock()
    strikes = Strikes(3, 5.0, 100, clock=clock)
    for _ in range(2):
        strikes.failed("A", "a")
    assert strikes.wait("A", "a") == 0
    strikes.failed("A", "a")
    assert strikes.wait("A", "a") == 5.0
    assert strikes.wait("B", "a") == 0
    clock.now += 5
    strikes.failed("A", "a")
    assert strikes.wait("A", "a") == 10.0
    strikes.succeeded("A", "a")
    assert strikes.wait("A", "a") == 0


def test_strikes_keep_at_most_max_callers_records() -> None:
    strikes = Strikes(1, 5.0, 2, clock=Clock())
    for caller in "ABC":
        strikes.failed(caller, "a")
    assert [strikes.wait(c, "a") > 0 for c in "ABC"] == [False, True, True]


def members(*scripted: Scripted, settings: RouterSettings) -> list[Member]:
    def breaker() -> Breaker:
        return Breaker(
            settings.breaker_failures,
            settings.breaker_open_s,
            callers=settings.breaker_callers,
            window_s=settings.breaker_window_s,
        )

    return [Member(s.name, s, MemberOptions(), breaker()) for s in scripted]


async def send(router: Router, caller: str | None) -> dict[str, Any]:
    pool = router.resolve("m", "chat")
    result, lease = await router.send(pool, {}, call, CallRecord(), caller=caller)
    lease.done(True)
    return result


@pytest.mark.anyio
async def test_one_caller_is_slowed_down_the_others_still_reach_the_member() -> None:
    settings = RouterSettings(breaker_failures=3, retries=0)
    a = Scripted("a", [poison() for _ in range(3)])
    router = Router(
        [Spec(m, chat={"m": "x"}) for m in members(a, settings=settings)],
        settings, default_model=None,
    )  # fmt: skip
    for _ in range(3):
        with pytest.raises(UpstreamStatusError):
            await send(router, "key:A")
    assert router.members["a"].breaker.current() == "closed"
    with pytest.raises(CallerBackoff, match=r"router.caller_backoff_s=5") as caught:
        await send(router, "key:A")
    assert caught.value.status == 429
    assert caught.value.retry_after == 5
    assert len(a.calls) == 3  # the slowed-down caller did not reach the member
    assert (await send(router, "key:B"))["served_by"] == "a"


@pytest.mark.anyio
async def test_a_genuine_outage_seen_by_two_callers_still_ejects() -> None:
    settings = RouterSettings(breaker_failures=3, retries=0)
    answers: list[EnclaveError] = [poison() for _ in range(3)]
    a = Scripted("a", [*answers, UpstreamError("refused")])
    router = Router(
        [Spec(m, chat={"m": "x"}) for m in members(a, settings=settings)],
        settings, default_model=None,
    )  # fmt: skip
    for caller in ("key:A", "key:B", "key:A"):
        with pytest.raises(UpstreamStatusError):
            await send(router, caller)
    assert router.members["a"].breaker.current() == "open"
