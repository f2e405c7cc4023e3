"""A Redis that does not answer never stalls an event write: wake-ups are published in
the background, each bounded, and this process's waiters wake at once."""

from __future__ import annotations

import asyncio
import socket

import pytest

from enclave.tasks.bus import RedisBus

pytestmark = pytest.mark.anyio


async def test_notify_does_not_wait_on_a_silent_redis() -> None:
    silent = socket.socket()  # accepts connections (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    bus = RedisBus(f"redis://127.0.0.1:{port}/0")
    await bus.start()
    try:
        with bus.subscribe("run:x") as waiter:
            async with asyncio.timeout(20):  # bounded: the old code waited on Redis here
                for _ in range(5000):
                    await bus.notify("run:x")
                assert await waiter.wait(0)
    finally:
        async with asyncio.timeout(20):
            await bus.aclose()
        silent.close()
