"""The worker: claims queued runs, runs them, keeps their leases, notices cancels.

Each claimed run executes in its own asyncio task. A supervisor loop wakes at least once
a second (at once on a ``cancel`` wake-up) to look for cancel requests and, every third
of ``tasks.lease_s``, renews the leases. A watchdog timer per run cancels it locally when
its lease could have run out without a renewal (the database slow or unreachable), so a
run is never executing here while another worker has taken it over. The reaper turns
runs whose lease ran out (their worker died) back into queued ones, or failed ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.store.models_tasks import TaskRun
from enclave.tasks import workflow
from enclave.tasks.bus import LocalBus
from enclave.tasks.clock import Clock
from enclave.tasks.definition import parse_definition
from enclave.tasks.info import error_event
from enclave.tasks.repo import EventSpec, TaskRepo
from enclave.tasks.runctx import SUBMITTED, Chat, LeaseLost, RunCtx

if TYPE_CHECKING:
    from enclave.knowledge.service import KnowledgeBases
    from enclave.taskconfig import TasksSettings

log = logging.getLogger("enclave.tasks")

SUPERVISE_S = 1.0  # cancel requests are noticed within this
STOP_GRACE_S = 5.0
Audit = Callable[[str, str | None, dict[str, Any]], Awaitable[None]]


@dataclass
class Runtime:
    """What running a run needs; the service makes one."""

    repo: TaskRepo
    bus: LocalBus
    clock: Clock
    settings: Callable[[], TasksSettings]
    outputs: Callable[[], Path]
    chat: Chat
    knowledge: Callable[[], KnowledgeBases]
    audit: Audit


@dataclass
class Active:
    task: asyncio.Task[None]
    why: str | None = None  # cancel | lease | stop: why this worker stopped it
    ending: bool = False  # writing its last events: its lease is let go with them
    watchdog: asyncio.TimerHandle | None = None

    def stop(self, why: str) -> None:
        # A run writing its last events has finished its work: cancelling that write
        # would only skip its final records and leave the run to the reaper.
        if self.why is None and not self.ending:
            self.why = why
            self.task.cancel()


def worker_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Worker:
    rt: Runtime
    id: str = field(default_factory=worker_id)
    active: dict[str, Active] = field(default_factory=dict)
    _slot: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Claim and run until cancelled; then stop the runs in hand (they are queued
        again for another worker)."""
        supervisor = asyncio.create_task(self._supervise())
        try:
            with self.rt.bus.subscribe("runs") as wake:
                while True:
                    await self._claim()
                    await _first(wake.wait(self.rt.settings().poll_interval_s), self._slot)
                    self._slot.clear()
        finally:
            supervisor.cancel()
            await self._stop_all()

    async def _claim(self) -> None:
        settings = self.rt.settings()
        free = settings.concurrency - len(self.active)
        while free > 0:
            now = self.rt.clock.now()
            until = now + timedelta(seconds=settings.lease_s)
            try:
                rows = await self.rt.repo.claim(
                    self.id, now, until, free, settings.per_user_running
                )
            except Exception:
                log.exception("tasks: claiming runs failed")
                return
            for row in rows:
                self._start(row, settings.lease_s)
            if len(rows) < free:
                return
            free = settings.concurrency - len(self.active)

    def _start(self, row: TaskRun, lease_s: float) -> None:
        task = asyncio.create_task(self._attempt(row))
        active = self.active[row.id] = Active(task)
        self._watch(active, lease_s)

        def done(ended: asyncio.Task[None]) -> None:
            if not ended.cancelled() and ended.exception() is not None:
                # its lease is no longer renewed: the reaper queues it again
                log.error("tasks: run %s broke off", row.id, exc_info=ended.exception())
            found = self.active.pop(row.id, None)
            if found and found.watchdog:
                found.watchdog.cancel()
            self._slot.set()

        task.add_done_callback(done)

    def _watch(self, active: Active, lease_s: float) -> None:
        """(Re)arm the watchdog: stop the run just before its lease can have run out."""
        if active.watchdog:
            active.watchdog.cancel()
        loop = asyncio.get_running_loop()
        active.watchdog = loop.call_later(lease_s * 0.9, active.stop, "lease")

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        with self.rt.bus.subscribe("cancel") as wake:
            while True:
                await wake.wait(SUPERVISE_S)
                try:
                    for run_id in await self.rt.repo.cancel_flags(list(self.active)):
                        if run_id in self.active:
                            self.active[run_id].stop("cancel")
                    lease_s = self.rt.settings().lease_s
                    if loop.time() - renewed >= lease_s / 3:
                        renewed = loop.time()
                        await self._renew(lease_s)
                except Exception:
                    log.exception("tasks: supervising runs failed")

    async def _renew(self, lease_s: float) -> None:
        """Every lease in hand, in one write (with many runs, one each would hold up
        their event writes)."""
        ids = [run_id for run_id, active in self.active.items()
               if active.why is None and not active.ending]  # fmt: skip
        until = self.rt.clock.now() + timedelta(seconds=lease_s)
        started = asyncio.get_running_loop().time()
        renewed = await self.rt.repo.renew_many(ids, self.id, until)
        elapsed = asyncio.get_running_loop().time() - started
        for run_id in ids:
            active = self.active.get(run_id)
            if active is None:
                continue
            if run_id in renewed:
                self._watch(active, max(lease_s - elapsed, 0.0))
            elif not active.ending:
                log.warning("tasks: lost the lease of %s; stopping it", run_id)
                active.stop("lease")

    async def _stop_all(self) -> None:
        for active in list(self.active.values()):
            active.stop("stop")
        tasks = [active.task for active in self.active.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_S)

    # -- one attempt

    async def _attempt(self, row: TaskRun) -> None:
        rt = self.rt
        settings = rt.settings()
        ctx = RunCtx(
            run_id=row.id, task=row.task, owner=row.owner, attempt=row.attempt,
            params=row.params, settings=settings, limits=settings.limits, repo=rt.repo,
            bus=rt.bus, clock=rt.clock, worker=self.id, outputs_root=rt.outputs(),
            chat_call=rt.chat, knowledge_of=rt.knowledge,
            files_hint=row.definition.get("files_hint"),
            models_allowed=row.definition.get("models_allowed"), events=row.last_event,
        )  # fmt: skip
        ctx.on_event = lambda kind, data: self._audit_step(ctx, kind, data)
        await rt.bus.notify(f"run:{row.id}")
        try:
            detail = {"run": row.id, "task": row.task, "attempt": row.attempt}
            await rt.audit("task.run.start", row.owner, detail)
            snapshot = {k: v for k, v in row.definition.items() if k not in SUBMITTED}
            defn = parse_definition(snapshot, base=settings.limits)
            ctx.limits = defn.effective_limits(settings.limits)
            async with asyncio.timeout(ctx.limits.timeout_s):
                result = await workflow.run_steps(ctx, defn)
        except asyncio.CancelledError:
            await self._cancelled(ctx, row)
            return
        except LeaseLost:
            return
        except TimeoutError:
            message = f"the run took longer than tasks.limits.timeout_s ({ctx.limits.timeout_s} s)"
            await self._failed(ctx, row, message, "timeout", retry=False)
            return
        except Exception as exc:
            retry = bool(row.definition.get("retry_on_error"))
            await self._failed(
                ctx, row, workflow.describe(exc), workflow.error_type(exc), retry=retry
            )
            return
        done = {"status": "succeeded", "attempt": row.attempt}
        events: list[EventSpec] = [
            ("result", {"result": result, "files": ctx.files}),
            ("status", done),
        ]
        values = {"result": result, "files": ctx.files, "progress_percent": 100.0}
        await self._end(ctx, row, "succeeded", events, values)

    async def _cancelled(self, ctx: RunCtx, row: TaskRun) -> None:
        why = self.active[row.id].why if row.id in self.active else None
        if why == "cancel":
            error = {"message": "cancelled", "type": "cancelled"}
            status = {"status": "cancelled", "attempt": row.attempt}
            events: list[EventSpec] = [("error", error_event(error)), ("status", status)]
            await self._end(ctx, row, "cancelled", events, {"error": error})
        elif why == "stop":  # this process stops: another worker takes the run over
            event = {"status": "queued", "attempt": row.attempt, "reason": "worker stopped"}
            values = {"status": "queued", "lease_owner": None, "lease_until": None,
                      "not_before": self.rt.clock.now()}  # fmt: skip
            with contextlib.suppress(Exception):
                await self.rt.repo.append(row.id, [("status", event)], self.rt.clock.now(),
                                          values, worker=self.id)  # fmt: skip
        elif why is None:
            raise asyncio.CancelledError

    async def _failed(
        self, ctx: RunCtx, row: TaskRun, message: str, kind: str, *, retry: bool
    ) -> None:
        error = {"message": message, "type": kind}
        if retry and row.attempt < row.max_attempts:
            event = {"status": "queued", "attempt": row.attempt + 1, "reason": "error"}
            values = {"status": "queued", "attempt": row.attempt + 1, "lease_owner": None,
                      "lease_until": None, "not_before": self.rt.clock.now()}  # fmt: skip
            await self._write(ctx, [("error", error_event(error)), ("status", event)], values)
            await self.rt.bus.notify("runs")
            return
        status = {"status": "failed", "attempt": row.attempt}
        events: list[EventSpec] = [("error", error_event(error)), ("status", status)]
        await self._end(ctx, row, "failed", events, {"error": error})

    async def _end(
        self, ctx: RunCtx, row: TaskRun, status: str, events: list[EventSpec],
        values: dict[str, Any],
    ) -> None:  # fmt: skip
        if row.id in self.active:
            self.active[row.id].ending = True
        now = self.rt.clock.now()
        values = {**values, "status": status, "finished_at": now, "lease_owner": None,
                  "lease_until": None}  # fmt: skip
        if await self._write(ctx, events, values):
            detail = {"run": row.id, "task": row.task, "status": status, "attempt": row.attempt,
                      "tokens": ctx.prompt_tokens + ctx.completion_tokens}  # fmt: skip
            await self.rt.audit("task.run.finish", row.owner, detail)

    async def _write(self, ctx: RunCtx, events: list[EventSpec], values: dict[str, Any]) -> bool:
        try:
            await ctx.record(events, values)
        except LeaseLost:
            return False
        return True

    async def _audit_step(self, ctx: RunCtx, kind: str, data: dict[str, Any]) -> None:
        if kind == "step" and data.get("status") in ("done", "failed"):
            detail = {"run": ctx.run_id, "step": data.get("step"), "kind": data.get("kind"),
                      "status": data.get("status")}  # fmt: skip
            await self.rt.audit("task.step", ctx.owner, detail)


async def _first(wait: Awaitable[bool], slot: asyncio.Event) -> None:
    """Until ``wait`` ends or ``slot`` is set."""
    if slot.is_set():
        if asyncio.iscoroutine(wait):
            wait.close()
        return
    tasks = [asyncio.ensure_future(wait), asyncio.ensure_future(slot.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def reap_forever(rt: Runtime) -> None:
    """Every third of ``tasks.lease_s``: runs whose worker died are queued again or failed."""
    while True:
        try:
            for reaped in await rt.repo.reap(rt.clock.now()):
                log.warning("tasks: run %s lost its worker: %s", reaped.run_id, reaped.status)
                await rt.bus.notify(f"run:{reaped.run_id}")
                if reaped.status == "queued":
                    await rt.bus.notify("runs")
                else:
                    detail = {
                        "run": reaped.run_id,
                        "status": reaped.status,
                        "reason": "worker lost",
                    }
                    await rt.audit("task.run.finish", reaped.owner, detail)
        except Exception:
            log.exception("tasks: reaping runs failed")
        await asyncio.sleep(rt.settings().lease_s / 3)
