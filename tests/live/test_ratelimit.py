"""Per-key rate limits, the same behaviour tests on both limiters: in memory (an injected
clock) and in a real ``redis-server`` (short windows, real time, generous polling)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from enclave.auth.apikeys import new_key
from enclave.auth.ratelimit import (
    Limiter,
    Limits,
    MemoryLimiter,
    Permit,
    RedisLimiter,
    format_reset,
)
from enclave.errors import ConfigError, RateLimited, ServiceUnavailable
from tests.fakes.procs import free_port
from tests.fakes.redis import INSTALL_HINT, redis_server_path, run_redis

LONG_WINDOW_S = 30.0  # for Redis where the window must not pass during a test
SHORT_WINDOW_S = 1.5  # for Redis where it must
POLL_S = 10.0


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if redis_server_path() is None:
        pytest.skip(INSTALL_HINT)
    with run_redis() as server:
        yield server.url


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    """A limiter of one kind, and how to let time pass for it."""

    kind: str
    make_limiter: Callable[[float], Limiter]
    clock: Clock = field(default_factory=Clock)
    made: list[Limiter] = field(default_factory=list)

    def limiter(self, *, short: bool = False) -> Limiter:
        window = 60.0 if self.kind == "memory" else SHORT_WINDOW_S if short else LONG_WINDOW_S
        limiter = self.make_limiter(window)
        self.made.append(limiter)
        return limiter

    async def advance(self, seconds: float) -> None:
        if self.kind == "memory":
            self.clock.now += seconds
        else:
            await asyncio.sleep(seconds)


@pytest.fixture(params=["memory", "redis"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    if request.param == "memory":
        clock = Clock()
        made = Rig("memory", lambda window: MemoryLimiter(window_s=window, clock=clock), clock)
    else:
        url = request.getfixturevalue("redis_url")
        made = Rig("redis", lambda window: RedisLimiter(url, window_s=window))
    yield made
    for limiter in made.made:
        await limiter.aclose()


def key_id() -> str:
    return new_key().prefix  # a fresh key for each test: no state shared between tests


async def refused(limiter: Limiter, key: str, limits: Limits) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire(key, limits)
    return caught.value


async def eventually(attempt: Callable[[], Awaitable[Permit]]) -> Permit:
    """Retry while rate limited, up to ``POLL_S`` seconds (Redis windows pass in real time)."""
    deadline = time.monotonic() + POLL_S
    while True:
        try:
            return await attempt()
        except RateLimited:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


# --- requests per minute ----------------------------------------------------------------


@pytest.mark.anyio
async def test_requests_per_minute(rig: Rig) -> None:
    limiter, key, limits = rig.limiter(), key_id(), Limits(rpm=3)
    remaining = []
    for _ in range(3):
        permit = await limiter.acquire(key, limits)
        remaining.append(permit.headers()["x-ratelimit-remaining-requests"])
        await permit.release(10)  # releasing gives no request back
    assert remaining == ["2", "1", "0"]
    error = await refused(limiter, key, limits)
    assert re.fullmatch(
        rf"rate limit: 3 requests per (minute|30s) \(key sk-enc-{key}\)", error.message
    )
    assert (error.status, error.type, error.code) == (429, "requests", "rate_limit_exceeded")
    headers = error.headers()
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= error.retry_after <= 60
    assert headers["Retry-After"] == str(error.retry_after)
    assert "x-ratelimit-limit-tokens" not in headers


@pytest.mark.anyio
async def test_requests_come_back_after_the_window(rig: Rig) -> None:
    limiter, key, limits = rig.limiter(short=True), key_id(), Limits(rpm=2)
    await limiter.acquire(key, limits)
    await limiter.acquire(key, limits)
    for _ in range(5):  # refused requests cost nothing
        await refused(limiter, key, limits)
    await rig.advance(60.0 if rig.kind == "memory" else SHORT_WINDOW_S)
    permit = await eventually(lambda: limiter.acquire(key, limits))
    assert permit.headers()["x-ratelimit-remaining-requests"] in {"0", "1"}
    assert await eventually(lambda: limiter.acquire(key, limits))


@pytest.mark.anyio
async def test_keys_are_counted_apart(rig: Rig) -> None:
    limiter, limits = rig.limiter(), Limits(rpm=1)
    first, second = key_id(), key_id()
    await limiter.acquire(first, limits)
    await limiter.acquire(second, limits)
    await refused(limiter, first, limits)


# --- tokens per minute ------------------------------------------------------------------


@pytest.mark.anyio
async def test_tokens_per_minute(rig: Rig) -> None:
    limiter, key, limits = rig.limiter(), key_id(), Limits(tpm=100)
    permit = await limiter.acquire(key, limits)
    assert permit.headers()["x-ratelimit-remaining-tokens"] == "100"
    await permit.release(60)
    permit = await limiter.acquire(key, limits)  # 60 < 100: admitted
    assert permit.headers()["x-ratelimit-remaining-tokens"] == "40"
    await permit.release(50)  # the call went over: charged all the same
    error = await refused(limiter, key, limits)
    assert error.type == "tokens"
    assert re.fullmatch(
        rf"rate limit: 100 tokens per (minute|30s) \(key sk-enc-{key}\)", error.message
    )
    headers = error.headers()
    assert headers["x-ratelimit-limit-tokens"] == "100"
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert "Retry-After" in headers
    assert "x-ratelimit-limit-requests" not in headers


@pytest.mark.anyio
async def test_tokens_come_back_after_the_window(rig: Rig) -> None:
    limiter, key, limits = rig.limiter(short=True), key_id(), Limits(rpm=100, tpm=10)
    permit = await limiter.acquire(key, limits)
    await permit.release(10)  # exactly the limit: the next one waits
    await refused(limiter, key, limits)
    await rig.advance(60.0 if rig.kind == "memory" else SHORT_WINDOW_S)
    permit = await eventually(lambda: limiter.acquire(key, limits))
    assert permit.headers()["x-ratelimit-remaining-tokens"] == "10"


# --- requests at once -------------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrency(rig: Rig) -> None:
    limiter, key, limits = rig.limiter(), key_id(), Limits(concurrency=2)
    first = await limiter.acquire(key, limits)
    second = await limiter.acquire(key, limits)
    error = await refused(limiter, key, limits)
    assert error.message == f"rate limit: 2 requests at once (key sk-enc-{key})"
    assert error.retry_after == 1
    await first.release(0)
    await first.release(0)  # twice frees one slot only
    third = await limiter.acquire(key, limits)
    await refused(limiter, key, limits)
    await second.release(5)
    await third.release(5)
    for permit in [await limiter.acquire(key, limits), await limiter.acquire(key, limits)]:
        await permit.release(0)


@pytest.mark.anyio
async def test_no_limits_no_headers(rig: Rig) -> None:
    limiter, key = rig.limiter(), key_id()
    for _ in range(20):
        permit = await limiter.acquire(key, Limits())
        assert permit.headers() == {}
        await permit.release(1000)
    zeros = await limiter.acquire(key, Limits(rpm=0, tpm=0, concurrency=0))
    assert zeros.headers() == {}


@pytest.mark.anyio
async def test_refused_by_concurrency_costs_no_request(rig: Rig) -> None:
    limiter, key, limits = rig.limiter(), key_id(), Limits(rpm=2, concurrency=1)
    held = await limiter.acquire(key, limits)
    await refused(limiter, key, limits)
    await held.release(0)
    permit = await limiter.acquire(key, limits)
    assert permit.headers()["x-ratelimit-remaining-requests"] == "0"


# --- headers ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_headers_carry_openai_names(rig: Rig) -> None:
    limiter, key, limits = rig.limiter(), key_id(), Limits(rpm=60, tpm=1000)
    permit = await limiter.acquire(key, limits)
    headers = permit.headers()
    window = "1m0s" if rig.kind == "memory" else "30s"
    assert headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": window,  # the request just admitted leaves then
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "1000",
        "x-ratelimit-reset-tokens": "0s",
    }
    await permit.release(400)
    headers = (await limiter.acquire(key, limits)).headers()
    assert headers["x-ratelimit-remaining-requests"] == "58"
    assert headers["x-ratelimit-remaining-tokens"] == "600"
    assert re.fullmatch(r"\d+ms|\d+(\.\d+)?s|1m0s", headers["x-ratelimit-reset-tokens"])


@pytest.mark.anyio
async def test_memory_reset_headers_follow_the_clock() -> None:
    clock = Clock()
    limiter, key, limits = MemoryLimiter(clock=clock), key_id(), Limits(rpm=2, tpm=100)
    permit = await limiter.acquire(key, limits)  # t = 0
    clock.now += 15
    await permit.release(60)  # t = 15: charged until 75
    clock.now += 5
    permit = await limiter.acquire(key, limits)  # t = 20
    headers = permit.headers()
    assert headers["x-ratelimit-reset-requests"] == "40s"  # the first request leaves at 60
    assert headers["x-ratelimit-reset-tokens"] == "55s"  # the first charge leaves at 75
    await permit.release(50)  # 110 tokens now: over
    error = await refused(limiter, key, limits)
    assert error.type == "requests"
    assert error.retry_after == 40
    assert error.headers()["x-ratelimit-reset-tokens"] == "55s"  # then 50 < 100
    clock.now += 40
    error = await refused(limiter, key, limits)  # t = 60: requests back, tokens not yet
    assert error.type == "tokens"
    assert error.retry_after == 15
    assert error.headers()["x-ratelimit-remaining-requests"] == "1"
    clock.now += 15
    permit = await limiter.acquire(key, limits)  # t = 75
    assert permit.headers()["x-ratelimit-remaining-tokens"] == "50"


def test_memory_limiter_forgets_idle_keys() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock=clock)

    async def scenario() -> None:
        for _ in range(50):
            permit = await limiter.acquire(key_id(), Limits(rpm=5, tpm=5, concurrency=1))
            await permit.release(3)
        clock.now += 61
        permit = await limiter.acquire("last0000", Limits(concurrency=1))
        await permit.release(0)

    asyncio.run(scenario())
    assert limiter._keys == {}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-3, "0s"),
        (0.02, "20ms"),
        (0.0201, "21ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (17.28, "17.28s"),
        (59.9999, "1m0s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (361.5, "6m1.5s"),
        (3600, "1h0m0s"),
    ],
)
def test_format_reset_like_openai(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


# --- Redis: several replicas ------------------------------------------------------------


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[tuple[RedisLimiter, RedisLimiter]]:
    first = RedisLimiter(redis_url, window_s=LONG_WINDOW_S, lease_s=1.0)
    second = RedisLimiter(redis_url, window_s=LONG_WINDOW_S, lease_s=1.0)
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.mark.anyio
async def test_two_replicas_share_the_limits(replicas: tuple[RedisLimiter, RedisLimiter]) -> None:
    a, b = replicas
    key = key_id()
    limits = Limits(rpm=3, tpm=50, concurrency=1)
    held = await a.acquire(key, limits)
    await refused(b, key, limits)  # a holds the only slot
    await held.release(30)
    permit = await b.acquire(key, limits)
    assert permit.headers()["x-ratelimit-remaining-tokens"] == "20"  # a's tokens count
    await permit.release(30)
    error = await refused(a, key, limits)
    assert error.type == "tokens"
    other = key_id()
    for limiter in (a, b, a):
        await (await limiter.acquire(other, Limits(rpm=3))).release(0)
    error = await refused(b, other, Limits(rpm=3))
    assert error.headers()["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.anyio
async def test_slot_of_a_crashed_replica_frees_itself(redis_url: str) -> None:
    key, limits = key_id(), Limits(concurrency=1)
    crashed = RedisLimiter(redis_url, lease_s=1.0)
    await crashed.acquire(key, limits)
    await crashed.aclose()  # stops renewing, never releases: as if the process died
    survivor = RedisLimiter(redis_url, lease_s=1.0)
    try:
        await refused(survivor, key, limits)
        permit = await eventually(lambda: survivor.acquire(key, limits))
        await permit.release(0)
    finally:
        await survivor.aclose()


@pytest.mark.anyio
async def test_a_long_call_keeps_its_slot(replicas: tuple[RedisLimiter, RedisLimiter]) -> None:
    a, b = replicas
    key, limits = key_id(), Limits(concurrency=1)
    held = await a.acquire(key, limits)
    await asyncio.sleep(2.5)  # 2.5 leases: renewed every third of one
    await refused(b, key, limits)
    await held.release(0)
    await (await b.acquire(key, limits)).release(0)


@pytest.mark.anyio
async def test_redis_keys_expire(redis_url: str) -> None:
    from redis.asyncio import Redis

    limiter = RedisLimiter(redis_url, window_s=LONG_WINDOW_S, lease_s=5.0)
    client = Redis.from_url(redis_url)
    try:
        key = key_id()
        permit = await limiter.acquire(key, Limits(rpm=5, tpm=5, concurrency=2))
        await permit.release(7)
        keys = await client.keys(f"enclave:rl:{{{key}}}:*")  # typed bytes | str: bytes here
        names = [n.decode() if isinstance(n, bytes) else n for n in keys]
        assert sorted(n.rsplit(":", 1)[1] for n in names) == ["req", "tok"]  # lease gone
        for name in names:
            ttl = await client.pttl(name)
            assert 0 < ttl <= LONG_WINDOW_S * 1000
    finally:
        await client.aclose()
        await limiter.aclose()


@pytest.mark.anyio
async def test_redis_unreachable_is_503() -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(ServiceUnavailable, match="rate limiter") as caught:
            await limiter.acquire(key_id(), Limits(rpm=1))
        assert caught.value.status == 503
    finally:
        await limiter.aclose()


@pytest.mark.anyio
async def test_redis_url_is_checked_and_its_password_never_shown() -> None:
    with pytest.raises(ConfigError, match=r"auth\.redis_url"):
        RedisLimiter("http://nowhere")
    limiter = RedisLimiter(f"redis://user:s3cret@127.0.0.1:{free_port()}/0")
    try:
        assert limiter.url.startswith("redis://user:***@127.0.0.1:")
        with pytest.raises(ServiceUnavailable) as caught:
            await limiter.acquire(key_id(), Limits(rpm=1))
        assert "s3cret" not in caught.value.message
    finally:
        await limiter.aclose()
