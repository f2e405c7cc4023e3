"""Supervise the engine's child process: start, health-check, restart with back-off, stop.

States: ``starting`` (loading the model) → ``ready`` → (child died or stopped
answering) ``restarting`` → ``starting`` ... and ``stopped`` after :meth:`stop`.

With no ``command`` it only *attaches*: another process (the parent of ``enclave serve
--workers N``) runs the child, and this supervisor follows its health through the same
states, so one engine child serves every worker of a host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from enclave.upstream.base import UpstreamState

log = logging.getLogger("enclave.engine")


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    factor: float = 2.0
    limit: float = 30.0
    stable_after: float = 60.0  # a child that ran this long resets the back-off

    def delay(self, failures: int) -> float:
        return float(min(self.limit, self.first * self.factor ** max(0, failures - 1)))


@dataclass
class SupervisorOptions:
    startup_timeout: float = 600.0
    health_interval: float = 5.0
    health_failures: int = 3  # consecutive failed checks before the child is restarted
    stop_timeout: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)


class EngineSupervisor:
    def __init__(
        self,
        command: Sequence[str],
        base_url: str,
        *,
        log_path: Path | None = None,
        options: SupervisorOptions | None = None,
        on_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.command = list(command)
        self.base_url = base_url.rstrip("/")
        self.options = options or SupervisorOptions()
        self.restarts = 0
        self._log_path = log_path
        self._on_ready = on_ready
        self._state = "stopped"
        self._detail = ""
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- state ---------------------------------------------------------------
    def state(self) -> UpstreamState:
        retry = 2 if self._state == "ready" else 5
        info = {"pid": self.pid, "restarts": self.restarts}
        return UpstreamState(self._state, self._state == "ready", self._detail, retry, info)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.returncode is None else None

    def _set(self, state: str, detail: str = "") -> None:
        if state != self._state:
            log.info("engine %s%s", state, f": {detail}" if detail else "")
        self._state, self._detail = state, detail

    # -- life cycle ----------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        self._set("starting", "loading the model")
        self._task = asyncio.create_task(self._supervise(), name="engine-supervisor")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._terminate()
        self._set("stopped")

    async def _supervise(self) -> None:
        failures = 0
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as probe:
            while not self._stopping:
                started = time.monotonic()
                await self._run_once(probe)
                if self._stopping:
                    return
                if not self.command:  # attached: the owner restarts the child; watch again
                    self._set("restarting", "the engine child stopped answering")
                    continue
                ran = time.monotonic() - started
                failures = 1 if ran >= self.options.backoff.stable_after else failures + 1
                delay = self.options.backoff.delay(failures)
                self.restarts += 1
                self._set("restarting", f"engine exited; restart {self.restarts} in {delay:.0f}s")
                await asyncio.sleep(delay)

    async def _run_once(self, probe: httpx.AsyncClient) -> None:
        self._set("starting", "loading the model")
        process = await self._spawn() if self.command else None
        try:
            if await self._wait_healthy(probe, process):
                self._set("ready")
                if self._on_ready:
                    await self._on_ready()
                await self._watch(probe, process)
        finally:
            await self._terminate()

    async def _spawn(self) -> asyncio.subprocess.Process:
        sink = self._open_log()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink
            )
        finally:
            if sink is not None:
                sink.close()
        log.info("engine child started (pid %s)", self._process.pid)
        return self._process

    def _open_log(self) -> IO[bytes] | None:
        if self._log_path is None:
            return None
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        return self._log_path.open("ab")

    async def _healthy(self, probe: httpx.AsyncClient) -> bool:
        try:
            response = await probe.get(f"{self.base_url}/health")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _wait_healthy(
        self, probe: httpx.AsyncClient, process: asyncio.subprocess.Process | None
    ) -> bool:
        deadline = time.monotonic() + self.options.startup_timeout
        while time.monotonic() < deadline or process is None:  # attached: wait as long
            if process is not None and process.returncode is not None:
                return False
            if await self._healthy(probe):
                return True
            await _exit_or_timeout(process, 0.1 if process else 0.5)
        log.error("engine did not become healthy in %.0fs", self.options.startup_timeout)
        return False

    async def _watch(
        self, probe: httpx.AsyncClient, process: asyncio.subprocess.Process | None
    ) -> None:
        """Return when the child exits or fails ``health_failures`` checks in a row."""
        failed = 0
        while failed < self.options.health_failures:
            if await _exit_or_timeout(process, self.options.health_interval):
                assert process is not None
                log.warning("engine child exited with code %s", process.returncode)
                return
            failed = 0 if await self._healthy(probe) else failed + 1
        log.warning("engine stopped answering health checks; restarting it")

    async def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.options.stop_timeout)
        except TimeoutError:
            log.warning("engine child ignored SIGTERM; killing it")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def _exit_or_timeout(process: asyncio.subprocess.Process | None, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``process`` to exit (just wait, with none): True if it did."""
    if process is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(process.wait(), seconds)
    except TimeoutError:
        return False
    return True
