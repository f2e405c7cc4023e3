"""``/api/kb``: knowledge bases over HTTP, the same operations as ``enclave kb``.

    GET    /api/kb                              list
    POST   /api/kb                              create {name, embedder?, model?, ...}
    GET    /api/kb/{name}                       one, with its documents
    DELETE /api/kb/{name}                       remove
    PUT    /api/kb/{name}/documents/{filename}  upload: the body is the file (any type
                                                enclave reads: md, pdf, docx, ...);
                                                202, the job (with its kb-ingest run) and
                                                Location: /api/runs/{id}
    GET    /api/kb/{name}/jobs                  recent uploads (views of their runs)
    GET    /api/kb/{name}/jobs/{id}             one: status, progress, per-file errors
    POST   /api/kb/{name}/jobs/{id}/cancel      cancel its run (a running parse is killed)
    DELETE /api/kb/{name}/documents/{source}    remove one document
    POST   /api/kb/{name}/search                {query, k?, mode?} → {"data": [hits]}

Searching is open to every caller the edge let in (``access.authenticated``); changing
knowledge bases is for administrators, and closed when authentication is off
(``access.kb_writer``), and so are the ingestion jobs; each change is audited (``kb.*``
records). An upload (limited by ``limits.max_body_bytes``) is spooled to disk and ingested
by a run of the built-in ``kb-ingest`` task (:mod:`enclave.gateway.kb_jobs`), each file
bounded by ``knowledge.ingest``; its progress is the run's events (``/api/runs/{id}``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response

from enclave.gateway import access, kb_jobs
from enclave.gateway.access import actor
from enclave.gateway.admin import body_of
from enclave.gateway.apidoc import ERRORS, json_body, raw_body
from enclave.gateway.body import read_body
from enclave.gateway.schemas import Page
from enclave.gateway.schemas.knowledge import (
    DocDeleted,
    DocPublic,
    HitList,
    HitPublic,
    IngestJobList,
    IngestJobPublic,
    KbCreate,
    KbDeleted,
    KbDetail,
    KbPublic,
    Search,
)

if TYPE_CHECKING:
    from enclave.gateway.services import Services
    from enclave.knowledge.service import KnowledgeBases


def router(services: Services) -> APIRouter:
    routes = APIRouter(prefix="/api/kb", responses=ERRORS)
    _read_routes(routes, services.knowledge)
    _write_routes(routes, services, services.knowledge)
    return routes


def _read_routes(router: APIRouter, kbs: Callable[[], KnowledgeBases]) -> None:
    @router.get("", dependencies=[access.AUTHENTICATED])
    async def list_kbs() -> Page[KbPublic]:
        return Page[KbPublic](data=[KbPublic.of(kb) for kb in await kbs().list()])

    @router.get("/{name}", dependencies=[access.AUTHENTICATED])
    async def get_kb(name: str) -> KbDetail:
        kb = KbPublic.of(await kbs().get(name))
        documents = [DocPublic.of(d) for d in await kbs().documents(name)]
        return KbDetail(**kb.model_dump(), data=documents)

    @router.post(
        "/{name}/search", dependencies=[access.AUTHENTICATED], openapi_extra=json_body(Search)
    )
    async def search(name: str, request: Request) -> HitList:
        given = await body_of(request, Search)
        names = [n for n in name.split(",") if n]
        hits = await kbs().search(names, given.query, k=given.k, mode=given.mode)
        return HitList(data=[HitPublic.of(h) for h in hits])


def _write_routes(router: APIRouter, services: Services, kbs: Callable[[], KnowledgeBases]) -> None:
    @router.post(
        "", status_code=201, dependencies=[access.KB_WRITER], openapi_extra=json_body(KbCreate)
    )
    async def create(request: Request) -> KbPublic:
        given = await body_of(request, KbCreate)
        kb = await kbs().create(given.name, embedder=given.embedder, model=given.model,
                                description=given.description, chunk_size=given.chunk_size,
                                chunk_overlap=given.chunk_overlap,
                                actor=actor(request))  # fmt: skip
        return KbPublic.of(kb)

    @router.delete("/{name}", dependencies=[access.KB_WRITER])
    async def remove(name: str, request: Request) -> KbDeleted:
        await kbs().remove(name, actor=actor(request))
        return KbDeleted(name=name, deleted=True)

    @router.put(
        "/{name}/documents/{filename:path}", status_code=202, dependencies=[access.KB_WRITER],
        openapi_extra=raw_body("the document: md, txt, html, pdf, docx, ..."),
    )  # fmt: skip
    async def upload(
        name: str, filename: str, request: Request, response: Response
    ) -> IngestJobPublic:
        from enclave.knowledge.service import upload_name

        clean = upload_name(filename)
        await kbs().get(name)
        kb_jobs.tasks_of(services)  # 503 before the body is read
        data = await read_body(request, int(services.settings.limits.max_body_bytes), what="upload")
        run, job = await kb_jobs.submit(services, request, name, clean, data)
        response.headers["Location"] = f"/api/runs/{run.id}"
        return job

    _job_routes(router, services)

    @router.delete("/{name}/documents/{source:path}", dependencies=[access.KB_WRITER])
    async def remove_document(name: str, source: str, request: Request) -> DocDeleted:
        await kbs().remove_document(name, source, actor=actor(request))
        return DocDeleted(name=name, source=source, deleted=True)


def _job_routes(router: APIRouter, services: Services) -> None:
    @router.get("/{name}/jobs", dependencies=[access.KB_WRITER])
    async def jobs(name: str, request: Request) -> IngestJobList:
        return IngestJobList(data=await kb_jobs.listed(services, request, name))

    @router.get("/{name}/jobs/{job_id}", dependencies=[access.KB_WRITER])
    async def job(name: str, job_id: str, request: Request) -> IngestJobPublic:
        return await kb_jobs.get(services, request, name, job_id)

    @router.post("/{name}/jobs/{job_id}/cancel", dependencies=[access.KB_WRITER])
    async def cancel_job(name: str, job_id: str, request: Request) -> IngestJobPublic:
        return await kb_jobs.cancel(services, request, name, job_id)
