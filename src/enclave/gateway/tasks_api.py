"""``/api/tasks``, ``/api/runs``, ``/api/schedules``: agent tasks over HTTP (docs/tasks-api.md).

    GET    /api/tasks                    task definitions (built-in templates and stored)
    POST   /api/tasks                    define one → 201
    GET    /api/tasks/{name} · DELETE /api/tasks/{name}
    POST   /api/runs                     start a run → 202, Location: /api/runs/{id}
    GET    /api/runs                     ?status=&task=&owner=&limit=&before=
    GET    /api/runs/{id}                one run
    POST   /api/runs/{id}/cancel         stop it (the upstream call in flight too)
    POST   /api/runs/{id}/retry          a new run of the same → 202
    GET    /api/runs/{id}/events         its log: ?after=&limit=
    GET    /api/runs/{id}/stream         the same events live, as server-sent events;
                                         resumes from Last-Event-ID or ?after=
    GET    /api/runs/{id}/files/{path}   an output file
    GET    /api/schedules · POST /api/schedules · GET|DELETE /api/schedules/{id}
    POST   /api/schedules/{id}/pause · POST /api/schedules/{id}/resume
    POST   /api/tasks/ws/ticket          a one-use ticket for the WebSocket (tasks_ws.py)

Every route's rule is ``access.task_caller`` (the ticket's, ``access.authenticated``):
any caller the edge let in; the service shows each caller their own runs and schedules
(another user's is a 404, like a missing one), administrators all of them. The routes
only translate: what a body means, permissions, quotas and audit are the service's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from enclave import sse
from enclave.errors import InvalidRequest, ServiceUnavailable
from enclave.gateway import access
from enclave.gateway.admin import body_of
from enclave.gateway.apidoc import ERRORS, json_body
from enclave.gateway.body import parse, read_json
from enclave.gateway.schemas import DbInt
from enclave.gateway.schemas.tasks import (
    EventList,
    EventPublic,
    RunCreate,
    RunList,
    RunPublic,
    ScheduleCreate,
    ScheduleDeleted,
    ScheduleList,
    SchedulePublic,
    TaskCreate,
    TaskDeleted,
    TaskList,
    TaskPublic,
    Ticket,
)

if TYPE_CHECKING:
    from enclave.gateway.services import Services
    from enclave.tasks.service import TaskService

# The task service's Caller; ``Any`` here so that this module loads without the service
# (FastAPI reads the annotation at import), which access.task_caller imports when called.
CallerDep = Annotated[Any, Depends(access.task_caller)]
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MAX_EVENTS_PAGE = 1000


def router(services: Services) -> APIRouter:
    routes = APIRouter(prefix="/api", responses=ERRORS, tags=["tasks"])

    def tasks() -> TaskService:
        service = services.tasks
        if service is None:
            raise ServiceUnavailable("agent tasks are not running (tasks.enabled)")
        return service

    _task_routes(routes, tasks)
    _run_routes(routes, tasks)
    _follow_routes(routes, tasks)
    _schedule_routes(routes, tasks)

    @routes.post("/tasks/ws/ticket", dependencies=[access.AUTHENTICATED])
    async def ticket(request: Request) -> Ticket:
        """A one-use ticket for ``/api/tasks/ws?ticket=``, good ``tasks.ticket_ttl_s``."""
        from enclave.gateway.tasks_tickets import issue

        ttl = services.settings.tasks.ticket_ttl_s
        made = await issue(services.gatekeeper, services.store, access.principal_of(request), ttl)
        return Ticket(ticket=made, expires_in=ttl)

    return routes


def submission(data: dict[str, Any]) -> dict[str, Any]:
    """A POST /api/runs body (or a WebSocket ``start``) as the service's ``submit`` keywords."""
    given = parse(RunCreate, {k: v for k, v in data.items() if k != "type"})
    extra = dict(given.model_extra or {})
    if given.command is not None:
        for name in ("task", "definition"):
            if getattr(given, name) is not None:
                raise InvalidRequest(f"give either command or {name}, not both", param=name)
        return {"task": given.command, "params": {**(given.params or {}), **extra}}
    if extra:
        name = sorted(extra)[0]
        raise InvalidRequest(f"unknown field '{name}' (params go in 'params')", param=name)
    if (given.task is None) == (given.definition is None):
        raise InvalidRequest("give one of 'task', 'definition' or 'command'", param="task")
    if given.task is not None:
        return {"task": given.task, "params": given.params or {}}
    return {"definition": given.definition, "params": given.params or {}}


def _task_routes(router: APIRouter, tasks: Any) -> None:
    @router.get("/tasks")
    async def list_tasks(caller: CallerDep) -> TaskList:
        return TaskList(data=[TaskPublic.of(t) for t in await tasks().list_tasks(caller)])

    @router.post("/tasks", status_code=201, openapi_extra=json_body(TaskCreate))
    async def define(caller: CallerDep, request: Request) -> TaskPublic:
        data = await _object(request)
        parse(TaskCreate, data)  # its shape; what it means is the service's to check
        return TaskPublic.of(await tasks().define(caller, data))

    @router.get("/tasks/{name}")
    async def get_task(caller: CallerDep, name: str) -> TaskPublic:
        return TaskPublic.of(await tasks().get_task(caller, name))

    @router.delete("/tasks/{name}")
    async def undefine(caller: CallerDep, name: str) -> TaskDeleted:
        await tasks().undefine(caller, name)
        return TaskDeleted(name=name, deleted=True)


def _run_routes(router: APIRouter, tasks: Any) -> None:
    @router.post("/runs", status_code=202, openapi_extra=json_body(RunCreate))
    async def submit(caller: CallerDep, request: Request, response: Response) -> RunPublic:
        run = await tasks().submit(caller, **submission(await _object(request)))
        public = RunPublic.of(run)
        response.headers["Location"] = f"/api/runs/{public.id}"
        return public

    @router.get("/runs")
    async def list_runs(
        caller: CallerDep, *, status: str | None = None, task: str | None = None,
        owner: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: str | None = None,
    ) -> RunList:  # fmt: skip
        runs, cursor = await tasks().list_runs(
            caller, status=status, task=task, owner=owner, limit=limit, before=before
        )
        return RunList(data=[RunPublic.of(r) for r in runs], next=cursor)

    @router.get("/runs/{run_id}")
    async def get_run(caller: CallerDep, run_id: str) -> RunPublic:
        return RunPublic.of(await tasks().get_run(caller, run_id))

    @router.post("/runs/{run_id}/cancel")
    async def cancel(caller: CallerDep, run_id: str) -> RunPublic:
        return RunPublic.of(await tasks().cancel(caller, run_id))

    @router.post("/runs/{run_id}/retry", status_code=202)
    async def retry(caller: CallerDep, run_id: str, response: Response) -> RunPublic:
        public = RunPublic.of(await tasks().retry(caller, run_id))
        response.headers["Location"] = f"/api/runs/{public.id}"
        return public

    @router.get("/runs/{run_id}/files/{path:path}", response_class=FileResponse,
                responses={200: {"description": "the file", "content": {
                    "application/octet-stream": {"schema": {"type": "string",
                                                            "format": "binary"}}}}})  # fmt: skip
    async def output_file(caller: CallerDep, run_id: str, path: str) -> FileResponse:
        """One of the run's output files (``files[].path``), as a download."""
        found = await tasks().output_file(caller, run_id, path)
        return FileResponse(found, filename=found.name)


def _follow_routes(router: APIRouter, tasks: Any) -> None:
    @router.get("/runs/{run_id}/events")
    async def events(
        caller: CallerDep, run_id: str, after: DbInt = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 500,
    ) -> EventList:  # fmt: skip
        found = await tasks().events(caller, run_id, after=after, limit=limit)
        return EventList(data=[EventPublic.of(e) for e in found])

    @router.get(
        "/runs/{run_id}/stream", response_class=StreamingResponse,
        responses={200: {"description": "the run's events as server-sent events (`id`, "
                         "`event`: the type, `data`: the event); ends after the last",
                         "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    )  # fmt: skip
    async def stream(
        caller: CallerDep, run_id: str, request: Request, after: DbInt | None = None
    ) -> StreamingResponse:
        """Replays the events after ``Last-Event-ID`` (or ``?after=``), then follows the
        run live until its final ``status`` event."""
        start = _resume_point(request.headers.get("last-event-id"), after)
        service = tasks()
        await service.get_run(caller, run_id)  # a 404 now, not inside a 200 stream
        service.check_followers(caller)  # a 429 now too
        body = _sse(service.follow(caller, run_id, after=start))
        return StreamingResponse(body, media_type="text/event-stream", headers=STREAM_HEADERS)


def _resume_point(last_event_id: str | None, after: int | None) -> int:
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not text.isdigit() or len(text) > 18:
            raise InvalidRequest("Last-Event-ID must be an event id (a whole number)",
                                 param="Last-Event-ID")  # fmt: skip
        return int(text)
    if after is not None and after < 0:
        raise InvalidRequest("after must be 0 or more", param="after")
    return after or 0


async def _sse(events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    import json

    async for event in events:
        data = event.public()
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        yield sse.encode(text, event=str(data["type"]), id=data["id"])


def _schedule_routes(router: APIRouter, tasks: Any) -> None:
    @router.get("/schedules")
    async def list_schedules(caller: CallerDep) -> ScheduleList:
        found = await tasks().list_schedules(caller)
        return ScheduleList(data=[SchedulePublic.of(s) for s in found])

    @router.post("/schedules", status_code=201, openapi_extra=json_body(ScheduleCreate))
    async def add_schedule(caller: CallerDep, request: Request) -> SchedulePublic:
        given = await body_of(request, ScheduleCreate)
        data = given.model_dump(exclude_none=True)
        return SchedulePublic.of(await tasks().add_schedule(caller, data))

    @router.get("/schedules/{sid}")
    async def get_schedule(caller: CallerDep, sid: str) -> SchedulePublic:
        return SchedulePublic.of(await tasks().get_schedule(caller, sid))

    @router.delete("/schedules/{sid}")
    async def remove_schedule(caller: CallerDep, sid: str) -> ScheduleDeleted:
        await tasks().remove_schedule(caller, sid)
        return ScheduleDeleted(id=sid, deleted=True)

    @router.post("/schedules/{sid}/pause")
    async def pause(caller: CallerDep, sid: str) -> SchedulePublic:
        return SchedulePublic.of(await tasks().pause(caller, sid))

    @router.post("/schedules/{sid}/resume")
    async def resume(caller: CallerDep, sid: str) -> SchedulePublic:
        return SchedulePublic.of(await tasks().resume(caller, sid))


async def _object(request: Request) -> dict[str, Any]:
    """The request's JSON object, within ``limits.max_body_bytes``."""
    limit = int(request.app.state.services.settings.limits.max_body_bytes)
    return await read_json(request, limit)
