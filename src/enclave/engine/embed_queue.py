"""Fair turns on the one shared embedder: callers are served round-robin, a few texts at a
time, by one worker thread.

The bundled embedder already spreads one batch over every core, so batches run one after
another. Without turns, a caller's 2048-text request would hold the cores until it is
done while a one-text knowledge search or assistant retrieval of another user waited
behind it. Here each caller (the API key or user the gateway names in :data:`CALLER`;
otherwise each request on its own) has a queue, and the worker takes ``batch`` texts from
the next caller in turn. A request whose awaiting task is cancelled (its client left) is
dropped before its next batch: the texts it did not reach are never encoded.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

# Who is asking, as the gateway knows it (an API key prefix or a user name). Unset: every
# request takes its own turns.
CALLER: ContextVar[str | None] = ContextVar("enclave_embedding_caller", default=None)

Run = Callable[[list[str], bool], tuple[Any, int]]


@dataclass(eq=False, slots=True)
class _Job:
    texts: list[str]
    is_query: bool
    future: Future[tuple[Any, int]]
    parts: list[Any] = field(default_factory=list)
    tokens: int = 0
    taken: int = 0  # texts handed to the worker so far


class FairQueue:
    """Round-robin over callers, ``batch`` texts a turn; one worker thread runs ``run``."""

    def __init__(self, run: Run, batch: int) -> None:
        self._run = run
        self.batch = batch
        self._ready = threading.Condition()
        self._callers: OrderedDict[str, deque[_Job]] = OrderedDict()
        self._worker: threading.Thread | None = None
        self.texts_encoded = 0  # texts the worker has encoded, for tests and metrics
        self.batches = 0
        self._running = 0  # texts of the batch being encoded
        self._serving: tuple[str, deque[_Job]] | None = None  # whose batch that is

    async def encode(self, texts: list[str], is_query: bool) -> tuple[Any, int]:
        """Vectors and prompt tokens of ``texts``; cancelling the caller drops what is left."""
        caller = CALLER.get() or f"request-{id(asyncio.current_task())}"
        future = self.submit(caller, texts, is_query)
        try:
            return await asyncio.wrap_future(future)
        finally:
            future.cancel()  # a no-op once done; otherwise the worker skips what is left

    def encode_now(self, texts: list[str], is_query: bool) -> tuple[Any, int]:
        """The same from a plain thread (blocking)."""
        return self.submit(f"thread-{threading.get_ident()}", texts, is_query).result()

    def submit(self, caller: str, texts: list[str], is_query: bool) -> Future[tuple[Any, int]]:
        job = _Job(list(texts), is_query, Future())
        with self._ready:
            serving = self._serving
            if serving is not None and serving[0] == caller:
                serving[1].append(job)  # its turn comes again after the batch running now
            else:
                self._callers.setdefault(caller, deque()).append(job)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name="enclave-embedder", daemon=True
                )
                self._worker.start()
            self._ready.notify()
        return job.future

    def pending(self) -> int:
        """Texts queued or being encoded (0: the worker is idle)."""
        with self._ready:
            queues = list(self._callers.values())
            if self._serving is not None:
                queues.append(self._serving[1])
            waiting = (
                len(j.texts) - j.taken for jobs in queues for j in jobs if not j.future.cancelled()
            )
            return self._running + sum(waiting)

    def _work(self) -> None:
        while True:
            job, part = self._next()
            try:
                vectors, tokens = self._run(part, job.is_query)
            except BaseException as exc:  # handed to the waiting caller
                self._running = 0
                self._back_of_the_line()
                self._fail(job, exc)
                continue
            self.texts_encoded += len(part)
            self._running = 0
            self._back_of_the_line()
            self.batches += 1
            job.parts.append(vectors)
            job.tokens += tokens
            if job.taken == len(job.texts):
                self._finish(job)

    def _back_of_the_line(self) -> None:
        """The caller just served queues again behind those who came meanwhile."""
        with self._ready:
            if self._serving is not None:
                caller, jobs = self._serving
                self._serving = None
                if jobs:
                    self._callers.setdefault(caller, deque()).extend(jobs)

    def _next(self) -> tuple[_Job, list[str]]:
        """The next caller's next batch (that caller waits out of line until it is done)."""
        with self._ready:
            while True:
                while not self._callers:
                    self._ready.wait()
                caller, jobs = self._callers.popitem(last=False)
                while jobs and jobs[0].future.cancelled():
                    jobs.popleft()  # its client left: the rest is never encoded
                if not jobs:
                    continue
                job = jobs[0]
                part = job.texts[job.taken : job.taken + self.batch]
                job.taken += len(part)
                self._running = len(part)
                if job.taken == len(job.texts):
                    jobs.popleft()
                self._serving = (caller, jobs)
                return job, part

    @staticmethod
    def _finish(job: _Job) -> None:
        import numpy as np

        with suppress(InvalidStateError):  # cancelled meanwhile
            job.future.set_result((np.concatenate(job.parts), job.tokens))

    def _fail(self, job: _Job, exc: BaseException) -> None:
        with self._ready:
            queues = list(self._callers.values())
            if self._serving is not None:
                queues.append(self._serving[1])
            for jobs in queues:
                if job in jobs:
                    jobs.remove(job)
        with suppress(InvalidStateError):
            job.future.set_exception(exc)
