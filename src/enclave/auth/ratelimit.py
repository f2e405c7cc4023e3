"""Per-key limits: requests per minute, tokens per minute, requests at once.

Windows slide: a request counts for ``window_s`` (60 s) after it was admitted, tokens for
``window_s`` after the call that used them ended (they are known only then, so
:meth:`Permit.release` charges them). A request is refused while the key has used its
requests, while it has used *at least* its tokens, or while it has its number of calls
running. Refused requests cost nothing.

:class:`MemoryLimiter` serves one process; :class:`RedisLimiter` lets several gateway
replicas share the limits (atomic Lua scripts, Redis's clock, keys that expire; a slot of
a replica that crashed frees itself when its lease runs out). Both answer the same way:
the same errors, messages and ``x-ratelimit-*`` headers (OpenAI's names).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from enclave.auth.apikeys import is_prefix, label
from enclave.errors import ConfigError, RateLimited, ServiceUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("enclave.ratelimit")

WINDOW_S = 60.0
LEASE_S = 60.0  # a concurrency slot not renewed for this long is freed (crashed replica)
CONCURRENCY_RETRY_S = 1

Refusal = Literal["concurrency", "requests", "tokens"]


@dataclass(frozen=True)
class Limits:
    """A key's limits; ``None`` or ``0`` means no limit of that kind."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True)
class Usage:
    """What one acquire saw: the refusal if any, and the state behind the headers."""

    refused: Refusal | None
    wait_s: float  # until the refused request could pass
    requests: int  # in the window, the admitted request included
    requests_reset_s: float  # until the oldest of them leaves the window
    tokens: int  # charged in the window
    tokens_reset_s: float  # until tokens free up (or, when spent, until under the limit)


class Permit:
    """An admitted request: its ``x-ratelimit-*`` headers, and the slot to give back."""

    def __init__(self, headers: dict[str, str], release: Callable[[int], Awaitable[None]]) -> None:
        self._headers = headers
        self._release = release
        self.released = False

    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    async def release(self, tokens_used: int = 0) -> None:
        """Free the concurrency slot and charge the tokens the call used (once; idempotent)."""
        if self.released:
            return
        self.released = True
        await self._release(max(0, tokens_used))


class Limiter(Protocol):
    async def acquire(self, key_id: str, limits: Limits) -> Permit:
        """A permit, or :class:`RateLimited` naming the limit that refused."""
        ...

    async def aclose(self) -> None: ...


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI's ``x-ratelimit-reset-*`` write it: 20ms, 1s, 1.5s, 6m0s."""
    ms = max(0, math.ceil(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return f"{text}{secs}s"


def rate_headers(limits: Limits, usage: Usage) -> dict[str, str]:
    headers: dict[str, str] = {}
    if limits.rpm:
        headers["x-ratelimit-limit-requests"] = str(limits.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(0, limits.rpm - usage.requests))
        headers["x-ratelimit-reset-requests"] = format_reset(usage.requests_reset_s)
    if limits.tpm:
        headers["x-ratelimit-limit-tokens"] = str(limits.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - usage.tokens))
        headers["x-ratelimit-reset-tokens"] = format_reset(usage.tokens_reset_s)
    return headers


def refusal(key_id: str, limits: Limits, usage: Usage, window_s: float) -> RateLimited:
    who = f"key {label(key_id) if is_prefix(key_id) else key_id}"
    per = "minute" if window_s == WINDOW_S else format_reset(window_s)
    if usage.refused == "concurrency":
        what, kind = f"{limits.concurrency} requests at once", "requests"
    elif usage.refused == "tokens":
        what, kind = f"{limits.tpm} tokens per {per}", "tokens"
    else:
        what, kind = f"{limits.rpm} requests per {per}", "requests"
    wait = CONCURRENCY_RETRY_S if usage.refused == "concurrency" else math.ceil(usage.wait_s)
    return RateLimited(
        f"rate limit: {what} ({who})",
        retry_after=wait,
        rate_headers=rate_headers(limits, usage),
        type=kind,
    )


# --- one process ------------------------------------------------------------------------


@dataclass
class _KeyState:
    requests: deque[float] = field(default_factory=deque)  # admission times
    charges: deque[tuple[float, int]] = field(default_factory=deque)  # (end time, tokens)
    tokens: int = 0  # sum of charges
    running: int = 0

    def expire(self, before: float) -> None:
        while self.requests and self.requests[0] <= before:
            self.requests.popleft()
        while self.charges and self.charges[0][0] <= before:
            self.tokens -= self.charges.popleft()[1]

    def idle(self) -> bool:
        return not (self.requests or self.charges or self.running)


class MemoryLimiter:
    """Limits kept in this process; ``clock`` (monotonic seconds) is injectable for tests."""

    def __init__(
        self, *, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}
        self._swept = clock()

    async def acquire(self, key_id: str, limits: Limits) -> Permit:
        now = self._clock()
        self._sweep(now)
        state = self._state(key_id, now)
        usage = self._usage(state, limits, now)
        if usage.refused is not None:
            self._forget_if_idle(key_id, state)
            raise refusal(key_id, limits, usage, self.window_s)
        if limits.rpm:
            state.requests.append(now)
        held = bool(limits.concurrency)
        state.running += held
        headers = rate_headers(limits, usage)

        async def release(tokens: int) -> None:
            self._release(key_id, limits, held, tokens)

        return Permit(headers, release)

    async def aclose(self) -> None:
        self._keys.clear()

    def _sweep(self, now: float) -> None:
        """Once a window, forget the keys that have nothing left in it (bounded memory)."""
        if now - self._swept < self.window_s:
            return
        self._swept = now
        for key_id, state in list(self._keys.items()):
            state.expire(now - self.window_s)
            self._forget_if_idle(key_id, state)

    def _state(self, key_id: str, now: float) -> _KeyState:
        state = self._keys.setdefault(key_id, _KeyState())
        state.expire(now - self.window_s)
        return state

    def _usage(self, state: _KeyState, limits: Limits, now: float) -> Usage:
        window, count = self.window_s, len(state.requests)
        refused: Refusal | None = None
        wait = 0.0
        if limits.concurrency and state.running >= limits.concurrency:
            refused, wait = "concurrency", float(CONCURRENCY_RETRY_S)
        elif limits.rpm and count >= limits.rpm:
            refused, wait = "requests", state.requests[count - limits.rpm] + window - now
        elif limits.tpm and state.tokens >= limits.tpm:
            refused, wait = "tokens", self._until_under(state, limits.tpm, now)
        admitted = int(refused is None and bool(limits.rpm))
        oldest = state.requests[0] if state.requests else (now if admitted else None)
        if limits.tpm and state.tokens >= limits.tpm:
            tokens_reset = self._until_under(state, limits.tpm, now)
        else:
            tokens_reset = state.charges[0][0] + window - now if state.charges else 0.0
        return Usage(
            refused=refused,
            wait_s=wait,
            requests=count + admitted,
            requests_reset_s=oldest + window - now if oldest is not None else 0.0,
            tokens=state.tokens,
            tokens_reset_s=tokens_reset,
        )

    def _until_under(self, state: _KeyState, tpm: int, now: float) -> float:
        left = state.tokens
        for ended, tokens in state.charges:
            left -= tokens
            if left < tpm:
                return ended + self.window_s - now
        return 0.0

    def _release(self, key_id: str, limits: Limits, held: bool, tokens: int) -> None:
        now = self._clock()
        state = self._state(key_id, now)
        state.running -= held
        if limits.tpm and tokens:
            state.charges.append((now, tokens))
            state.tokens += tokens
        self._forget_if_idle(key_id, state)

    def _forget_if_idle(self, key_id: str, state: _KeyState) -> None:
        if state.idle():
            self._keys.pop(key_id, None)


# --- several replicas: Redis ----------------------------------------------------------------

# Times are Redis's own (TIME), in milliseconds, so that replicas need not agree on a clock.
# KEYS: requests zset, token charges zset, leases zset.
# ARGV: window ms, rpm, tpm, concurrency, lease ms, permit id. 0 = no limit.
# Returns: refusal (0 none, 1 concurrency, 2 requests, 3 tokens), wait ms, requests,
# requests reset ms, tokens, tokens reset ms.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local conc, lease, id = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
local charges = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #charges, 2 do
  used = used + tonumber(string.match(charges[i], ':(%d+)$'))
end
local function until_under()
  local left = used
  for i = 1, #charges, 2 do
    left = left - tonumber(string.match(charges[i], ':(%d+)$'))
    if left < tpm then return tonumber(charges[i + 1]) + window - now end
  end
  return 0
end
local refused, wait = 0, 0
if conc > 0 and redis.call('ZCARD', KEYS[3]) >= conc then
  refused, wait = 1, 1000
elseif rpm > 0 and count >= rpm then
  local entry = redis.call('ZRANGE', KEYS[1], count - rpm, count - rpm, 'WITHSCORES')
  refused, wait = 2, tonumber(entry[2]) + window - now
elseif tpm > 0 and used >= tpm then
  refused, wait = 3, until_under()
end
if refused == 0 then
  if rpm > 0 then
    redis.call('ZADD', KEYS[1], now, id)
    redis.call('PEXPIRE', KEYS[1], window)
    count = count + 1
  end
  if conc > 0 then
    redis.call('ZADD', KEYS[3], now + lease, id)
    redis.call('PEXPIRE', KEYS[3], lease)
  end
end
local requests_reset = 0
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #oldest > 0 then requests_reset = tonumber(oldest[2]) + window - now end
local tokens_reset = 0
if tpm > 0 and used >= tpm then
  tokens_reset = until_under()
elseif #charges > 0 then
  tokens_reset = tonumber(charges[2]) + window - now
end
return {refused, wait, count, requests_reset, used, tokens_reset}
"""

# KEYS: token charges zset, leases zset. ARGV: window ms, tokens, permit id, held (0/1).
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[4] == '1' then redis.call('ZREM', KEYS[2], ARGV[3]) end
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. tokens)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
end
return 1
"""

# KEYS: leases zset. ARGV: lease ms, permit ids... Renews leases still held.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""

_REFUSALS: dict[int, Refusal] = {1: "concurrency", 2: "requests", 3: "tokens"}


class RedisLimiter:
    """Limits shared by every replica that uses the same Redis (``redis://host:6379/0``).

    A held concurrency slot is a lease that this limiter renews every ``lease_s / 3``
    seconds while the call runs; a replica that dies stops renewing, and its slots free
    themselves after ``lease_s``. If Redis cannot be reached, requests are refused with
    503 (limits are not silently dropped); a release that fails is logged and left to
    the lease and the window.
    """

    def __init__(
        self,
        url: str,
        *,
        window_s: float = WINDOW_S,
        lease_s: float = LEASE_S,
        namespace: str = "enclave:rl",
    ) -> None:
        from redis.asyncio import Redis

        self.url = _redacted(url)  # for messages: no password
        self.window_s = window_s
        self.lease_s = lease_s
        self.namespace = namespace
        try:
            self._redis: Redis = Redis.from_url(url)
        except ValueError as exc:
            raise ConfigError(f"invalid auth.redis_url {self.url!r}: {exc}") from None
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release_script = self._redis.register_script(_RELEASE)
        self._renew = self._redis.register_script(_RENEW)
        self._held: dict[str, set[str]] = {}  # leases key -> permit ids held here
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self, key_id: str, limits: Limits) -> Permit:
        keys = self._keys(key_id)
        permit_id = secrets.token_hex(8)
        args: list[str | int] = [
            self._ms(self.window_s),
            limits.rpm or 0,
            limits.tpm or 0,
            limits.concurrency or 0,
            self._ms(self.lease_s),
            permit_id,
        ]
        reply = await self._call(self._acquire(keys=keys, args=args))
        refused, wait, requests, requests_reset, tokens, tokens_reset = (int(v) for v in reply)
        usage = Usage(
            refused=_REFUSALS.get(refused),
            wait_s=wait / 1000,
            requests=requests,
            requests_reset_s=requests_reset / 1000,
            tokens=tokens,
            tokens_reset_s=tokens_reset / 1000,
        )
        if usage.refused is not None:
            raise refusal(key_id, limits, usage, self.window_s)
        held = bool(limits.concurrency)
        if held:
            self._held.setdefault(keys[2], set()).add(permit_id)
            self._start_renewing()

        async def release(tokens_used: int) -> None:
            await self._give_back(keys, permit_id, held, tokens_used if limits.tpm else 0)

        return Permit(rate_headers(limits, usage), release)

    async def aclose(self) -> None:
        """Stop renewing leases (they expire unless released) and close the connections."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None
        self._held.clear()
        await self._redis.aclose()

    def _keys(self, key_id: str) -> list[str]:
        base = f"{self.namespace}:{{{key_id}}}"  # one hash slot per key (Redis Cluster)
        return [f"{base}:req", f"{base}:tok", f"{base}:lease"]

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    async def _call(self, pending: Awaitable[Any]) -> list[Any]:
        from redis.exceptions import RedisError

        try:
            reply: list[Any] = await pending
        except RedisError as exc:
            log.warning("rate limiter: redis at %s failed: %s", self.url, exc)
            raise ServiceUnavailable(
                "the rate limiter's store (redis) cannot be reached", retry_after=5
            ) from exc
        return reply

    async def _give_back(self, keys: list[str], permit_id: str, held: bool, tokens: int) -> None:
        if held:
            ids = self._held.get(keys[2], set())
            ids.discard(permit_id)
            if not ids:
                self._held.pop(keys[2], None)
        args: list[str | int] = [self._ms(self.window_s), tokens, permit_id, int(held)]
        try:
            await self._release_script(keys=keys[1:], args=args)
        except Exception as exc:  # the lease and the window clean up after us
            log.warning("rate limiter: release in redis at %s failed: %s", self.url, exc)

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_leases())

    async def _renew_leases(self) -> None:
        while self._held:
            await asyncio.sleep(self.lease_s / 3)
            lease = self._ms(self.lease_s)
            for key, ids in list(self._held.items()):
                try:
                    await self._renew(keys=[key], args=[lease, *ids])
                except Exception as exc:
                    log.warning("rate limiter: renewing leases in %s failed: %s", self.url, exc)


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
