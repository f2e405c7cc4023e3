"""Ingestion jobs: an upload is stored and answered at once; a background task ingests it.

:class:`IngestJobs` is an in-process registry owned by the knowledge service: jobs run one
at a time (parsing and embedding are CPU-bound), at most ``knowledge.ingest.max_jobs``
queued or running (more: 429), and the last ``knowledge.ingest.keep_jobs`` finished ones
are kept for polling. Jobs live in memory: they do not survive a restart (an upload that
was queued or running then is lost and must be sent again).

A job is ``queued``, ``running``, then ``done`` (some files may have failed: ``errors``),
``failed`` (every file failed, or the ingestion raised: ``error``) or ``cancelled``.
Cancelling stops the job between files and batches and kills a parse that is running.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from enclave.errors import EnclaveError, NotFound, TooManyRequests
from enclave.knowledge.sandbox import Stopped, Stopper

if TYPE_CHECKING:
    from enclave.config import IngestSettings
    from enclave.knowledge.report import IngestProgress, IngestReport

Status = Literal["queued", "running", "done", "failed", "cancelled"]
ACTIVE: frozenset[Status] = frozenset({"queued", "running"})


@dataclass
class IngestJob:
    """One upload being ingested, and how far it got."""

    id: str
    kb: str
    files: list[str]
    status: Status = "queued"
    files_done: int = 0
    chunks_done: int = 0
    chunks_total: int = 0  # chunks of the files parsed so far
    errors: dict[str, str] = field(default_factory=dict)  # file → why it failed
    error: str | None = None  # why the whole job failed
    report: IngestReport | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    stopper: Stopper = field(default_factory=Stopper)
    task: asyncio.Task[None] | None = None

    def update(self, progress: IngestProgress) -> None:
        self.files_done = progress.files_done
        self.chunks_done = progress.chunks_done
        self.chunks_total = max(progress.chunks_total, progress.chunks_done)


Run = Callable[[IngestJob], Awaitable["IngestReport"]]


class IngestJobs:
    """The ingestion jobs of this process."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._turn = asyncio.Semaphore(1)

    def start(self, kb: str, files: list[str], run: Run) -> IngestJob:
        """A new job for ``files`` of ``kb``, running ``run`` in the background."""
        active = sum(job.status in ACTIVE for job in self._jobs.values())
        if active >= self.settings.max_jobs:
            raise TooManyRequests(
                f"{active} ingestion jobs are queued or running "
                "(knowledge.ingest.max_jobs); retry when one has finished",
                retry_after=10,
            )
        job = IngestJob(id="ingest_" + secrets.token_hex(8), kb=kb, files=files)
        self._jobs[job.id] = job
        job.task = asyncio.create_task(self._run(job, run), name=job.id)
        self._forget_old()
        return job

    def get(self, kb: str, job_id: str) -> IngestJob:
        job = self._jobs.get(job_id)
        if job is None or job.kb != kb:
            raise NotFound(f"no ingestion job {job_id!r} for knowledge base {kb!r}")
        return job

    def list(self, kb: str) -> list[IngestJob]:
        return [job for job in self._jobs.values() if job.kb == kb]

    def cancel(self, kb: str, job_id: str) -> IngestJob:
        """Stop a queued or running job (a finished one is left as it is)."""
        job = self.get(kb, job_id)
        if job.status in ACTIVE:
            job.stopper.stop()
        return job

    async def _run(self, job: IngestJob, run: Run) -> None:
        try:
            async with self._turn:
                job.stopper.check()
                job.status = "running"
                job.report = await run(job)
            job.errors = dict(job.report.failed)
            ingested = job.report.added or job.report.updated or job.report.unchanged
            job.status = "failed" if job.errors and not ingested else "done"
        except Stopped:
            job.status = "cancelled"
        except EnclaveError as exc:
            job.status, job.error = "failed", exc.message
        except Exception as exc:  # the job's task must record, not lose, what went wrong
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = time.time()

    def _forget_old(self) -> None:
        finished = [key for key, job in self._jobs.items() if job.status not in ACTIVE]
        for key in finished[: max(0, len(finished) - self.settings.keep_jobs)]:
            del self._jobs[key]
