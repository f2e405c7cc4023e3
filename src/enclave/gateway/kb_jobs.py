"""Uploads to ``/api/kb`` as runs of the built-in ``kb-ingest`` task.

An upload is spooled (:mod:`enclave.knowledge.spool`) and a run submitted through the
task service, owned by the uploader: the request returns at once (202) with the run, and
the upload survives a restart (the run is in the database, the file on disk). The
``/api/kb/{name}/jobs`` routes are views of those runs in the shape the console reads
(an "ingestion job"), so nothing is kept in memory here.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from enclave.errors import NotFound, ServiceUnavailable
from enclave.gateway.access import actor, principal_of, task_caller_of
from enclave.gateway.schemas.knowledge import IngestJobPublic, IngestPublic
from enclave.knowledge.spool import Grant

if TYPE_CHECKING:
    from fastapi import Request

    from enclave.gateway.services import Services
    from enclave.tasks.info import RunInfo
    from enclave.tasks.service import Caller, TaskService

TASK = "kb-ingest"
STATUS = {"queued": "queued", "running": "running", "succeeded": "done", "failed": "failed",
          "cancelled": "cancelled"}  # fmt: skip
PAGE = 100


def caller_of(request: Request) -> Caller:
    return task_caller_of(principal_of(request), actor(request))


def tasks_of(services: Services) -> TaskService:
    tasks = services.tasks
    if tasks is None:
        raise ServiceUnavailable("uploads are ingested by a task, and tasks.enabled is false")
    return tasks


async def submit(
    services: Services, request: Request, kb: str, name: str, data: bytes
) -> tuple[RunInfo, IngestJobPublic]:
    """Spool ``data`` as the document ``name`` of ``kb`` and submit its ``kb-ingest`` run."""
    tasks, caller = tasks_of(services), caller_of(request)
    spool = services.knowledge().spool
    if spool is None:  # the gateway's knowledge bases always have one
        raise ServiceUnavailable("this process has no upload spool")
    grant = Grant(kb=kb, name=name, owner=caller.user, bytes=len(data))
    token = await asyncio.to_thread(spool.put, data, grant)
    try:
        run = await tasks.submit(
            caller, task=TASK, params={"kb": kb, "files": [{"name": name, "spool": token}]}
        )
    except BaseException:
        spool.remove(token)  # refused (a quota, say): nothing will ever take it
        raise
    return run, job_of(run, {})


async def get(services: Services, request: Request, kb: str, run_id: str) -> IngestJobPublic:
    tasks, caller = tasks_of(services), caller_of(request)
    try:
        run = await tasks.get_run(caller, run_id)
    except NotFound:
        run = None
    if run is None or run.task != TASK or run.params.get("kb") != kb:
        raise NotFound(f"no ingestion job {run_id!r} for knowledge base {kb!r}")
    return job_of(run, await _errors(tasks, caller, run))


async def listed(services: Services, request: Request, kb: str) -> list[IngestJobPublic]:
    """The last ``knowledge.ingest.keep_jobs`` uploads to ``kb``, oldest first."""
    tasks, caller = tasks_of(services), caller_of(request)
    most = services.settings.knowledge.ingest.keep_jobs
    found: list[RunInfo] = []
    before: str | None = None
    for _ in range(10):  # at most 1000 runs of kb-ingest looked at
        runs, before = await tasks.list_runs(caller, task=TASK, limit=PAGE, before=before)
        found += [run for run in runs if run.params.get("kb") == kb]
        if before is None or len(found) >= most:
            break
    # No events read per failed run (N+1): the list shows its error, which names each
    # file; one job (GET .../jobs/{id}) lists them one by one.
    return [job_of(run, _result_errors(run)) for run in reversed(found[:most])]


async def cancel(services: Services, request: Request, kb: str, run_id: str) -> IngestJobPublic:
    await get(services, request, kb, run_id)  # 404 unless it is an upload to kb
    tasks, caller = tasks_of(services), caller_of(request)
    run = await tasks.cancel(caller, run_id)
    return job_of(run, await _errors(tasks, caller, run))


async def _errors(tasks: TaskService, caller: Caller, run: RunInfo) -> dict[str, str]:
    """Why each file failed: the step's output, or (a failed run has none) its events."""
    if run.status != "failed":
        return _result_errors(run)
        return {}
    events = await tasks.events(caller, run.id, limit=5000)
    return {str(e.data["file"]): str(e.data.get("error", "")) for e in events
            if e.type == "log" and "file" in e.data}  # fmt: skip


def _result_errors(run: RunInfo) -> dict[str, str]:
    if run.status == "succeeded" and isinstance(run.result, dict):
        return dict(run.result.get("errors") or {})
    return {}


def job_of(run: RunInfo, errors: dict[str, str]) -> IngestJobPublic:
    """The run as the ingestion job the console follows."""
    files = [str(f.get("name")) for f in run.params.get("files") or [] if isinstance(f, dict)]
    total = len(files)
    result: dict[str, Any] = run.result if isinstance(run.result, dict) else {}
    finished = run.status in ("succeeded", "failed", "cancelled")
    if run.status == "succeeded":
        done = total
    elif run.status == "failed" and errors:
        done = total  # each was tried
    else:  # the step's percent is the share of the files done
        done = round((run.progress_percent or 0.0) * total / 100)
    chunks = int(result.get("chunks", 0))
    report = None
    if result:
        report = IngestPublic(added=result.get("added", []), updated=result.get("updated", []),
                              unchanged=result.get("unchanged", []), removed=[],
                              failed=errors, chunks=chunks,
                              seconds=float(result.get("seconds", 0.0)))  # fmt: skip
    error = None
    if run.error and not errors:
        error = str(run.error.get("message", ""))
    return IngestJobPublic(
        id=run.id, kb=str(run.params.get("kb", "")), status=STATUS.get(run.status, "failed"),
        files=files, files_total=total, files_done=min(done, total), chunks_done=chunks,
        chunks_total=chunks, errors=errors, error=error, result=report,
        progress={"percent": run.progress_percent, "message": run.progress_message},
        created_at=run.created_at.timestamp(),
        finished_at=run.finished_at.timestamp() if finished and run.finished_at else None,
        run=run.public(),
    )  # fmt: skip
