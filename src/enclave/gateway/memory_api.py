"""``/api/memories``: the assistants' memory, for its owner and for administrators.

A caller sees and changes only their own memories; an administrator may name any user
(``?user=`` or ``"user"`` in the body): the rule is ``access.memory_owner``. Without
authentication (a loopback gateway with ``auth.mode`` off or auto) everything belongs to
the one user ``local``. Every change is audited by
:class:`~enclave.memory.service.MemoryService` (``memory.*`` records), besides the call's
own record.

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

from fastapi import APIRouter, Request

from enclave.gateway.access import MemoryAccessDep, actor
from enclave.gateway.admin import body_of
from enclave.gateway.apidoc import ERRORS, json_body
from enclave.gateway.schemas import DbInt, Page
from enclave.gateway.schemas.memory import (
    ArchivedCount,
    ArchivedPublic,
    Erased,
    MemoryCreate,
    MemoryDeleted,
    MemoryHit,
    MemoryPublic,
    MemoryUpdate,
    Selection,
    TurnPublic,
)

if TYPE_CHECKING:
    from enclave.gateway.services import Services


def router(services: Services) -> APIRouter:
    routes = APIRouter(prefix="/api/memories", responses=ERRORS)
    memory = services.memory
    _read_routes(routes, memory)
    _write_routes(routes, memory)
    _archive_routes(routes, memory)
    return routes


def _read_routes(router: APIRouter, memory: Any) -> None:
    @router.get("")
    async def listing(
        who: MemoryAccessDep, user: str | None = None, q: str | None = None,
        *, k: int = 10, limit: int = 100, offset: DbInt = 0,
    ) -> Page[MemoryHit] | Page[MemoryPublic]:  # fmt: skip
        owner, service = who.owner(user), await memory()
        if q is not None:
            hits = await service.search(owner, q, min(max(k, 1), 100))
            return Page[MemoryHit](data=[MemoryHit.found(h) for h in hits])
        rows = await service.list(owner, min(max(limit, 1), 1000), offset)
        return Page[MemoryPublic](data=[MemoryPublic.of(row) for row in rows])

    @router.get("/recent")
    async def recent(
        who: MemoryAccessDep, user: str | None = None, limit: int = 20,
        conversation: str | None = None,
    ) -> Page[TurnPublic]:  # fmt: skip
        owner, service = who.owner(user), await memory()
        turns = await service.recent(owner, min(max(limit, 1), 1000), conversation)
        return Page[TurnPublic](data=[TurnPublic.of(turn) for turn in turns])

    @router.get("/archive")
    async def archived(who: MemoryAccessDep, user: str | None = None) -> Page[ArchivedPublic]:
        owner, service = who.owner(user), await memory()
        items = await service.archived(owner)
        return Page[ArchivedPublic](data=[ArchivedPublic.of(item) for item in items])

    @router.get("/{memory_id}")
    async def one(who: MemoryAccessDep, memory_id: DbInt, user: str | None = None) -> MemoryPublic:
        owner, service = who.owner(user), await memory()
        return MemoryPublic.of(await service.get(owner, memory_id))


def _write_routes(router: APIRouter, memory: Any) -> None:
    @router.post("", status_code=201, openapi_extra=json_body(MemoryCreate))
    async def add(request: Request, who: MemoryAccessDep) -> MemoryPublic:
        given = await body_of(request, MemoryCreate)
        owner, service = who.owner(given.user), await memory()
        row = await service.add(actor(request), owner, given.text, kind=given.kind)
        return MemoryPublic.of(row)

    @router.patch("/{memory_id}", openapi_extra=json_body(MemoryUpdate))
    async def edit(
        request: Request, who: MemoryAccessDep, memory_id: DbInt, user: str | None = None
    ) -> MemoryPublic:
        given = await body_of(request, MemoryUpdate)
        owner, service = who.owner(user), await memory()
        row = await service.edit(actor(request), owner, memory_id, given.text, kind=given.kind)
        return MemoryPublic.of(row)

    @router.delete("/{memory_id}")
    async def delete(
        request: Request, who: MemoryAccessDep, memory_id: DbInt, user: str | None = None
    ) -> MemoryDeleted:
        owner, service = who.owner(user), await memory()
        await service.delete(actor(request), owner, memory_id)
        return MemoryDeleted(id=memory_id, deleted=True)

    @router.delete("")
    async def erase(request: Request, who: MemoryAccessDep, user: str | None = None) -> Erased:
        owner, service = who.owner(user), await memory()
        return Erased(user=owner, erased=await service.erase(actor(request), owner))


def _archive_routes(router: APIRouter, memory: Any) -> None:
    @router.post("/archive", openapi_extra=json_body(Selection))
    async def archive(request: Request, who: MemoryAccessDep) -> ArchivedCount:
        given = await body_of(request, Selection)
        service = await memory()
        if given.ids is None:  # the age / unused policy, over every user
            who.archive_policy()
            return ArchivedCount(archived=await service.archive_due(actor(request)))
        owner = who.owner(given.user)
        return ArchivedCount(archived=await service.archive_ids(actor(request), owner, given.ids))

    @router.post("/restore", openapi_extra=json_body(Selection))
    async def restore(request: Request, who: MemoryAccessDep) -> Page[MemoryPublic]:
        given = await body_of(request, Selection)
        owner, service = who.owner(given.user), await memory()
        rows = await service.restore(actor(request), owner, given.ids)
        return Page[MemoryPublic](data=[MemoryPublic.of(row) for row in rows])
