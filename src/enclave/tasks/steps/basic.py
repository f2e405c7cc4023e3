"""The two step kinds every install has: ``noop`` and ``sleep``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, Field

from enclave.tasks.context import RunContext
from enclave.tasks.registry import StepKind


class NoopOptions(BaseModel):
    model_config = {"extra": "forbid"}


class SleepOptions(BaseModel):
    model_config = {"extra": "forbid"}

    seconds: float = Field(ge=0, description="how long to wait (within the run's timeout)")
    progress: bool = Field(True, description="a progress event every second")


async def _noop(ctx: RunContext, opts: NoopOptions) -> dict[str, Any]:
    return {}


async def _sleep(ctx: RunContext, opts: SleepOptions) -> dict[str, Any]:
    if opts.seconds > ctx.limits.timeout_s:
        from enclave.errors import InvalidRequest

        raise InvalidRequest(
            f"seconds {opts.seconds} is over tasks.limits.timeout_s ({ctx.limits.timeout_s})",
            param="seconds",
        )
    start = time.monotonic()
    while (left := opts.seconds - (time.monotonic() - start)) > 0:
        await asyncio.sleep(min(1.0, left))
        if opts.progress:
            done = min(opts.seconds, time.monotonic() - start)
            await ctx.progress(message=f"slept {done:.0f} of {opts.seconds:g} s")
    return {"slept": opts.seconds}


NOOP = StepKind("noop", "do nothing (tests, benchmarks)", NoopOptions, _noop)
SLEEP = StepKind("sleep", "wait some seconds, reporting progress", SleepOptions, _sleep)
