"""``/api/memories``: the assistants' memory, for its owner and for administrators.

A caller sees and changes only their own memories; an administrator may name any user
(``?user=`` or ``"user"`` in the body). Without authentication (a loopback gateway with
``auth.mode`` off or auto) everything belongs to the one user ``local``. Every change is
audited by :class:`~enclave.memory.service.MemoryService` (``memory.*`` records),
besides the call's own record.

    GET    /api/memories              list (newest first), or search with ?q=
    POST   /api/memories              add {"text", "kind"?}
    GET    /api/memories/{id}         one memory
    PATCH  /api/memories/{id}         edit {"text", "kind"?}
    DELETE /api/memories/{id}         delete one
    DELETE /api/memories              erase everything of the user (memories, recent, archive)
    GET    /api/memories/recent       the recent tier (?limit=, ?conversation=)
    GET    /api/memories/archive      what is archived
    POST   /api/memories/archive      {"ids": [...]}: archive these; no ids (admins): run the policy
    POST   /api/memories/restore      {"ids": [...]} or {} for all
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from enclave.errors import Forbidden
from enclave.gateway.access import actor
from enclave.gateway.admin import body_of, is_admin

if TYPE_CHECKING:
    from enclave.gateway.services import Services

LOCAL_USER = "local"  # the owner when the gateway runs without authentication


class NewMemory(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    kind: str = "fact"
    user: str | None = None


class MemoryEdit(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    kind: str | None = None


class Selection(BaseModel):
    ids: list[int] | None = None
    user: str | None = None


def owner_of(request: Request, asked: str | None) -> str:
    """Whose memories this call is about; only administrators may name another user."""
    principal = getattr(request.state, "principal", None)
    me = principal.user if principal and principal.user else LOCAL_USER
    if asked is None or asked == me:
        return me
    if not is_admin(request):
        raise Forbidden("only administrators may act on another user's memories")
    return asked


def install(app: FastAPI, services: Services) -> None:
    memory = services.memory
    _read_routes(app, memory)
    _write_routes(app, memory)
    _archive_routes(app, memory)


def _read_routes(app: FastAPI, memory: Any) -> None:
    from enclave.memory.service import memory_view, turn_view

    @app.get("/api/memories")
    async def listing(
        request: Request, user: str | None = None, q: str | None = None,
        *, k: int = 10, limit: int = 100, offset: int = 0,
    ) -> dict[str, Any]:  # fmt: skip
        owner, service = owner_of(request, user), await memory()
        if q is not None:
            hits = await service.search(owner, q, min(max(k, 1), 100))
            return {"data": [memory_view(h.memory, h.score) for h in hits]}
        rows = await service.list(owner, min(max(limit, 1), 1000), offset)
        return {"data": [memory_view(row) for row in rows]}

    @app.get("/api/memories/recent")
    async def recent(
        request: Request, user: str | None = None, limit: int = 20, conversation: str | None = None
    ) -> dict[str, Any]:
        owner, service = owner_of(request, user), await memory()
        turns = await service.recent(owner, min(max(limit, 1), 1000), conversation)
        return {"data": [turn_view(turn) for turn in turns]}

    @app.get("/api/memories/archive")
    async def archived(request: Request, user: str | None = None) -> dict[str, Any]:
        owner, service = owner_of(request, user), await memory()
        return {"data": [item.view() for item in await service.archived(owner)]}

    @app.get("/api/memories/{memory_id}")
    async def one(request: Request, memory_id: int, user: str | None = None) -> dict[str, Any]:
        owner, service = owner_of(request, user), await memory()
        return memory_view(await service.get(owner, memory_id))


def _write_routes(app: FastAPI, memory: Any) -> None:
    from enclave.memory.service import memory_view

    @app.post("/api/memories", status_code=201)
    async def add(request: Request) -> dict[str, Any]:
        given = await body_of(request, NewMemory)
        owner, service = owner_of(request, given.user), await memory()
        row = await service.add(actor(request), owner, given.text, kind=given.kind)
        return memory_view(row)

    @app.patch("/api/memories/{memory_id}")
    async def edit(request: Request, memory_id: int, user: str | None = None) -> dict[str, Any]:
        given = await body_of(request, MemoryEdit)
        owner, service = owner_of(request, user), await memory()
        row = await service.edit(actor(request), owner, memory_id, given.text, kind=given.kind)
        return memory_view(row)

    @app.delete("/api/memories/{memory_id}")
    async def delete(request: Request, memory_id: int, user: str | None = None) -> dict[str, Any]:
        owner, service = owner_of(request, user), await memory()
        await service.delete(actor(request), owner, memory_id)
        return {"id": memory_id, "deleted": True}

    @app.delete("/api/memories")
    async def erase(request: Request, user: str | None = None) -> dict[str, Any]:
        owner, service = owner_of(request, user), await memory()
        return {"user": owner, "erased": await service.erase(actor(request), owner)}


def _archive_routes(app: FastAPI, memory: Any) -> None:
    from enclave.memory.service import memory_view

    @app.post("/api/memories/archive")
    async def archive(request: Request) -> dict[str, Any]:
        given = await body_of(request, Selection)
        service = await memory()
        if given.ids is None:  # the age / unused policy, over every user
            if not is_admin(request):
                raise Forbidden("running the archive policy is for administrators")
            return {"archived": await service.archive_due(actor(request))}
        owner = owner_of(request, given.user)
        return {"archived": await service.archive_ids(actor(request), owner, given.ids)}

    @app.post("/api/memories/restore")
    async def restore(request: Request) -> dict[str, Any]:
        given = await body_of(request, Selection)
        owner, service = owner_of(request, given.user), await memory()
        rows = await service.restore(actor(request), owner, given.ids)
        return {"data": [memory_view(row) for row in rows]}
