"""``/api/kb``: knowledge bases over HTTP, the same operations as ``enclave kb``.

    GET    /api/kb                              list
    POST   /api/kb                              create {name, embedder?, model?, ...}
    GET    /api/kb/{name}                       one, with its documents
    DELETE /api/kb/{name}                       remove
    PUT    /api/kb/{name}/documents/{filename}  upload: the body is the file (any type
                                                enclave reads: md, pdf, docx, ...)
    DELETE /api/kb/{name}/documents/{source}    remove one document
    POST   /api/kb/{name}/search                {query, k?, mode?} → {"data": [hits]}

Searching is open to every caller the edge let in; changing knowledge bases is for
administrators, and, like ``/api/admin``, closed when authentication is off; each change
is audited (``kb.*`` records). Uploads are ingested within the request (limited by
``limits.max_body_bytes``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from enclave.errors import Forbidden
from enclave.gateway.access import actor
from enclave.gateway.admin import body_of, is_admin
from enclave.gateway.body import read_body

if TYPE_CHECKING:
    from enclave.gateway.services import Services
    from enclave.knowledge.service import KnowledgeBases


class NewKb(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    embedder: str | None = None
    model: str | None = None
    description: str = Field("", max_length=2000)
    chunk_size: int | None = Field(None, ge=100, le=20000)
    chunk_overlap: int | None = Field(None, ge=0)


class Search(BaseModel):
    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(5, ge=1, le=100)
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"


def require_admin(request: Request, services: Services) -> None:
    if not services.gatekeeper.enabled:
        raise Forbidden("changing knowledge bases needs authentication: set auth.mode to on")
    if not is_admin(request):
        raise Forbidden("changing knowledge bases is for administrators")


def install(app: FastAPI, services: Services) -> None:
    kbs = services.knowledge
    _read_routes(app, kbs)
    _write_routes(app, services, kbs)


def _read_routes(app: FastAPI, kbs: Callable[[], KnowledgeBases]) -> None:
    from enclave.knowledge.service import doc_view, hit_view, kb_view

    @app.get("/api/kb")
    async def list_kbs() -> dict[str, Any]:
        return {"data": [kb_view(kb) for kb in await kbs().list()]}

    @app.get("/api/kb/{name}")
    async def get_kb(name: str) -> dict[str, Any]:
        kb = await kbs().get(name)
        return kb_view(kb) | {"data": [doc_view(d) for d in await kbs().documents(name)]}

    @app.post("/api/kb/{name}/search")
    async def search(name: str, request: Request) -> dict[str, Any]:
        given = await body_of(request, Search)
        names = [n for n in name.split(",") if n]
        hits = await kbs().search(names, given.query, k=given.k, mode=given.mode)
        return {"object": "list", "data": [hit_view(h) for h in hits]}


def _write_routes(app: FastAPI, services: Services, kbs: Callable[[], KnowledgeBases]) -> None:
    from enclave.knowledge.service import kb_view, report_view

    @app.post("/api/kb", status_code=201)
    async def create(request: Request) -> dict[str, Any]:
        require_admin(request, services)
        given = await body_of(request, NewKb)
        kb = await kbs().create(given.name, embedder=given.embedder, model=given.model,
                                description=given.description, chunk_size=given.chunk_size,
                                chunk_overlap=given.chunk_overlap,
                                actor=actor(request))  # fmt: skip
        return kb_view(kb)

    @app.delete("/api/kb/{name}")
    async def remove(name: str, request: Request) -> dict[str, Any]:
        require_admin(request, services)
        await kbs().remove(name, actor=actor(request))
        return {"name": name, "deleted": True}

    @app.put("/api/kb/{name}/documents/{filename:path}")
    async def upload(name: str, filename: str, request: Request) -> dict[str, Any]:
        require_admin(request, services)
        data = await read_body(request, int(services.settings.limits.max_body_bytes), what="upload")
        report = await kbs().add_bytes(name, filename, data, actor=actor(request))
        return report_view(report)

    @app.delete("/api/kb/{name}/documents/{source:path}")
    async def remove_document(name: str, source: str, request: Request) -> dict[str, Any]:
        require_admin(request, services)
        await kbs().remove_document(name, source, actor=actor(request))
        return {"name": name, "source": source, "deleted": True}
