"""The asyncio load runner: one level of load against one endpoint.

- **closed loop** (no rate): at most ``concurrency`` requests in flight, the next sent as
  soon as one ends; with ``ramp_up_s`` the cap grows from 1 to ``concurrency`` evenly
  over that time;
- **open loop** (``rate``): requests are released on schedule — fixed intervals, or
  exponential ones with ``poisson`` — and ``concurrency`` caps how many are in flight
  (vLLM's ``--max-concurrency``: a released request waits for a free slot, and its time
  starts when it is sent). With ``ramp_up_s`` the rate grows linearly to ``rate``;
- it stops after ``requests`` requests or, with ``duration_s``, sends none after that
  time and waits for those in flight (each bounded by the client's timeout);
- **warm-up** requests (a count, or seconds) run first with the same load and are left out
  of the results.

While a level runs, Python's automatic garbage collector is off (:func:`quiet_gc`): a full
collection scans the whole heap and stalls the loop for milliseconds, which would show as
late chunks. Objects from before the level are frozen out of collections, and a young
collection (only what the last second allocated: well under a millisecond) runs every
second, so reference cycles (closed connections, errors) are still freed in a long soak.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from enclave.bench.client import BenchClient
from enclave.bench.metrics import Sample
from enclave.bench.workloads import Workload, request_body
from enclave.durations import parse_duration
from enclave.errors import InvalidRequest

GC_EVERY_S = 1.0
MIN_RAMP_FACTOR = 0.05  # an open loop's ramp starts at 5 % of the rate
BODY_CACHE = 10_000


@dataclass(frozen=True)
class Load:
    """One level of load; exactly one of ``requests`` and ``duration_s`` is set."""

    concurrency: int = 1
    requests: int | None = None
    duration_s: float | None = None
    rate: float | None = None
    poisson: bool = False
    ramp_up_s: float = 0.0
    warmup_requests: int = 0
    warmup_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise InvalidRequest("concurrency must be at least 1")
        if (self.requests is None) == (self.duration_s is None):
            raise InvalidRequest("give a request count or a duration, not both")
        if self.requests is not None and self.requests < 1:
            raise InvalidRequest("the request count must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise InvalidRequest("the duration must be positive")
        if self.rate is not None and self.rate <= 0:
            raise InvalidRequest("the request rate must be positive")
        if self.ramp_up_s < 0 or self.warmup_requests < 0 or self.warmup_s < 0:
            raise InvalidRequest("ramp-up and warm-up must not be negative")

    def as_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "duration_s": self.duration_s,
            "rate": self.rate,
            "poisson": self.poisson,
            "ramp_up_s": self.ramp_up_s,
            "warmup_requests": self.warmup_requests,
            "warmup_s": self.warmup_s,
        }


@dataclass(frozen=True)
class Request:
    """What every request of a run shares besides its prompt."""

    model: str
    max_tokens: int | None = None
    stream: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LevelRun:
    load: Load
    samples: list[Sample]
    duration_s: float  # from the first request sent to the last one ended
    started: float  # perf_counter at the start (after warm-up)
    warmup: int = 0
    warmup_errors: int = 0


class Bodies:
    """Request bodies by prompt index, encoded once (the hot path sends bytes)."""

    def __init__(self, workload: Workload, request: Request) -> None:
        self.workload, self.request = workload, request
        self._cache: dict[int, bytes] = {}

    def __call__(self, index: int) -> bytes:
        key = index % self.workload.size
        body = self._cache.get(key)
        if body is None:
            request = self.request
            body = request_body(
                request.model,
                self.workload.prompt(key),
                max_tokens=request.max_tokens,
                stream=request.stream,
                extra=request.extra,
            )
            if len(self._cache) < BODY_CACHE:
                self._cache[key] = body
        return body


OnSample = Callable[[Sample], None]


def parse_warmup(text: str) -> tuple[int, float]:
    """``20`` (requests) or ``5s`` / ``1m`` (seconds) → (requests, seconds)."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text), 0.0
    try:
        return 0, parse_duration(text).total_seconds()
    except ValueError:
        raise InvalidRequest(f"bad warm-up {text!r}: a request count (20) or a time (5s)") from None


def parse_levels(text: str) -> tuple[int, ...]:
    """``1,5,10,20`` → (1, 5, 10, 20)."""
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        levels = ()
    if not levels or min(levels) < 1:
        raise InvalidRequest(f"bad concurrency {text!r}: positive integers, e.g. 1,5,10,20")
    return levels


async def _arrivals(load: Load, rng: random.Random) -> AsyncIterator[None]:
    """Yields when the next request is due (at once, in a closed loop)."""
    if load.rate is None:
        while True:
            yield
    loop = asyncio.get_running_loop()
    begin = loop.time()
    due = 0.0
    while True:
        wait = begin + due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        yield
        factor = 1.0
        if load.ramp_up_s and due < load.ramp_up_s:
            factor = max(due / load.ramp_up_s, MIN_RAMP_FACTOR)
        rate = load.rate * factor
        due += rng.expovariate(rate) if load.poisson else 1 / rate


async def _ramp(slots: asyncio.Semaphore, load: Load) -> None:
    """Closed loop: one more slot every ``ramp_up_s / (concurrency - 1)`` seconds."""
    step = load.ramp_up_s / (load.concurrency - 1)
    for _ in range(load.concurrency - 1):
        await asyncio.sleep(step)
        slots.release()


async def _drive(
    client: BenchClient,
    bodies: Bodies,
    load: Load,
    *,
    count: int | None,
    seconds: float | None,
    on_sample: OnSample,
    first: int = 0,
) -> float:
    """Send requests until ``count`` or ``seconds``; returns the perf_counter at start."""
    ramping = load.rate is None and load.ramp_up_s > 0 and load.concurrency > 1
    slots = asyncio.Semaphore(1 if ramping else load.concurrency)
    ramp = asyncio.create_task(_ramp(slots, load)) if ramping else None
    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else None

    async def one(index: int) -> None:
        try:
            sample = await client.chat(bodies(first + index))
            sample.start = sample.sent - started
            on_sample(sample)
        finally:
            slots.release()

    index = 0
    try:
        arrivals = _arrivals(load, random.Random(load.seed))  # noqa: S311 - not secrets
        async for _ in arrivals:
            if count is not None and index >= count:
                break
            await slots.acquire()
            if deadline is not None and time.perf_counter() >= deadline:
                slots.release()
                break
            task = asyncio.create_task(one(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            index += 1
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        if ramp is not None:
            ramp.cancel()
        for task in tasks:
            task.cancel()
    return started


async def _young_collections() -> None:
    while True:
        await asyncio.sleep(GC_EVERY_S)
        gc.collect(1)


@contextlib.asynccontextmanager
async def quiet_gc() -> AsyncIterator[None]:
    """No automatic (full-heap) collections inside; a young one every second."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    collector = asyncio.create_task(_young_collections())
    try:
        yield
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        gc.unfreeze()
        if was_enabled:
            gc.enable()


async def run_level(
    client: BenchClient,
    workload: Workload,
    request: Request,
    load: Load,
    on_sample: OnSample | None = None,
) -> LevelRun:
    """Warm up, then measure one level of ``load``."""
    bodies = Bodies(workload, request)
    warm: list[Sample] = []
    if load.warmup_requests or load.warmup_s:
        await _drive(
            client, bodies, load,
            count=load.warmup_requests or None, seconds=load.warmup_s or None,
            on_sample=warm.append,
        )  # fmt: skip
    samples: list[Sample] = []

    def keep(sample: Sample) -> None:
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample)

    async with quiet_gc():
        started = await _drive(
            client, bodies, load,
            count=load.requests, seconds=load.duration_s, on_sample=keep, first=len(warm),
        )  # fmt: skip
    ended = max((s.sent + s.e2e for s in samples), default=started)
    return LevelRun(
        load=load,
        samples=samples,
        duration_s=max(ended - started, 1e-9),
        started=started,
        warmup=len(warm),
        warmup_errors=sum(1 for s in warm if not s.ok),
    )
