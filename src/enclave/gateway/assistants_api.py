"""Assistant profiles and conversations over HTTP.

    GET    /api/assistants                       the profiles (config and API), for any caller
    PUT    /api/admin/assistants/{name}          create or replace a profile (administrators)
    DELETE /api/admin/assistants/{name}          remove a profile made through the API
    GET    /api/conversations                    the caller's conversations, newest first,
                                                 ?q= in the title, ?limit=, ?cursor= (keyset)
                                                 (administrators: ?all=true for everyone's)
    GET    /api/conversations/{id}               one, with its messages and their citations
    PATCH  /api/conversations/{id}               rename it
    GET    /api/conversations/{id}/export        ?format=json (default) or md, as a download
    DELETE /api/conversations/{id}/messages      ?from_index=N: drop messages N.. (edit, regenerate)
    DELETE /api/conversations/{id}               delete it and its messages

``/api/admin`` is for administrators and closed without authentication
(``access.admin``); changes to profiles are audited. A conversation belongs to the key's
user (``access.conversation_owner``); without authentication every conversation is the
one local user's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from enclave.errors import InvalidRequest
from enclave.gateway import access
from enclave.gateway.access import ConversationAccessDep, ModelScopeDep, actor
from enclave.gateway.admin import body_of
from enclave.gateway.apidoc import ERRORS, json_body
from enclave.gateway.schemas import DbInt, Page
from enclave.gateway.schemas.assistants import AssistantDeleted, AssistantPublic
from enclave.gateway.schemas.conversations import (
    ConversationDeleted,
    ConversationDetail,
    ConversationPage,
    ConversationPublic,
    ConversationRename,
    MessagePublic,
    MessagesTruncated,
    export,
)
from enclave.profiles import AssistantProfile

if TYPE_CHECKING:
    from enclave.assistants.conversations import Conversations
    from enclave.gateway.services import Services
    from enclave.store.models_assistants import Conversation

EXPORTS = {
    "application/json": {"schema": {"type": "object"}},
    "text/markdown": {"schema": {"type": "string"}},
}


def routers(services: Services) -> list[APIRouter]:
    return [_profile_routes(services), _admin_routes(services), _conversation_routes(services)]


def _profile_routes(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api/assistants", responses=ERRORS)

    @router.get("")
    async def listing(scope: ModelScopeDep) -> Page[AssistantPublic]:
        found = await services.assistants.profiles()
        return Page[AssistantPublic](
            data=[
                AssistantPublic.of(p, source)
                for p, source in found.values()
                if scope.allows(p.public)
            ]
        )

    return router


def _admin_routes(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api/admin/assistants", dependencies=[access.ADMIN],
                       responses=ERRORS)  # fmt: skip

    @router.put("/{name}", openapi_extra=json_body(AssistantProfile),
                responses={201: {"model": AssistantPublic, "description": "created"}})  # fmt: skip
    async def put(request: Request, name: str, response: Response) -> AssistantPublic:
        profile = await body_of(request, AssistantProfile)
        if profile.name != name:
            raise InvalidRequest(
                f"the body names {profile.name!r}, the path {name!r}", param="name"
            )
        created = await services.assistants.put(profile)
        await services.identity.audit_action(
            actor(request), "assistant.put", {"name": name, "created": created}
        )
        response.status_code = 201 if created else 200
        return AssistantPublic.of(profile, "api")

    @router.delete("/{name}")
    async def delete(request: Request, name: str) -> AssistantDeleted:
        await services.assistants.delete(name)
        await services.identity.audit_action(actor(request), "assistant.delete", {"name": name})
        return AssistantDeleted(name=name, deleted=True)

    return router


def _conversation_routes(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api/conversations", responses=ERRORS)

    def conversations() -> Conversations:  # made when the app starts
        return services.assistants.conversations

    async def find(
        who: access.ConversationAccess, conversation_id: str, subject: str | None
    ) -> Conversation:
        return await conversations().get(who.finder(), conversation_id, subject)

    @router.get("")
    async def listing(
        who: ConversationAccessDep, *, all: bool = False, assistant: str | None = None,
        q: str | None = None, limit: DbInt = 50, cursor: str | None = None,
    ) -> ConversationPage:  # fmt: skip
        """Newest first (updated_at, then id); ``next_cursor`` gives the next page."""
        rows, after = await conversations().listing(
            who.owner(everyone=all), limit=min(max(limit, 1), 500), cursor=cursor, q=q,
            assistant=assistant,
        )  # fmt: skip
        data = [ConversationPublic.of(row, n) for row, n in rows]
        return ConversationPage(data=data, next_cursor=after)

    @router.get("/{conversation_id}")
    async def one(
        who: ConversationAccessDep, conversation_id: str, subject: str | None = None
    ) -> ConversationDetail:
        row = await find(who, conversation_id, subject)
        messages = await conversations().messages(row)
        summary = ConversationPublic.of(row, len(messages))
        return ConversationDetail(
            **summary.model_dump(), data=[MessagePublic.of(m, i) for i, m in enumerate(messages)]
        )

    @router.patch("/{conversation_id}", openapi_extra=json_body(ConversationRename))
    async def rename(
        request: Request, who: ConversationAccessDep, conversation_id: str,
        subject: str | None = None,
    ) -> ConversationPublic:  # fmt: skip
        given = await body_of(request, ConversationRename)
        row = await find(who, conversation_id, subject)
        row = await conversations().rename(row, given.title)
        return ConversationPublic.of(row, await conversations().count(row))

    @router.delete("/{conversation_id}/messages")
    async def truncate(
        who: ConversationAccessDep, conversation_id: str, from_index: DbInt,
        subject: str | None = None,
    ) -> MessagesTruncated:  # fmt: skip
        """Drop the messages from ``from_index`` (0-based) on: edit and resend, regenerate."""
        if from_index < 0:
            raise InvalidRequest("from_index must be 0 or more", param="from_index")
        row = await find(who, conversation_id, subject)
        deleted = await conversations().truncate(row, from_index)
        return MessagesTruncated(id=row.external_id, from_index=from_index, deleted=deleted)

    @router.get("/{conversation_id}/export", response_class=Response,
                responses={200: {"description": "a download", "content": EXPORTS}})  # fmt: skip
    async def download(
        who: ConversationAccessDep, conversation_id: str, format: str = "json",
        subject: str | None = None,
    ) -> Response:  # fmt: skip
        row = await find(who, conversation_id, subject)
        if format not in ("json", "md"):
            raise InvalidRequest("format must be json or md", param="format")
        messages = await conversations().messages(row)
        disposition = {
            "Content-Disposition": f'attachment; filename="conversation-{row.id}.{format}"'
        }
        if format == "md":
            return Response(
                as_markdown(row, messages), media_type="text/markdown", headers=disposition
            )
        import json

        text = json.dumps(export(row, messages), ensure_ascii=False, indent=2)
        return Response(text, media_type="application/json", headers=disposition)

    @router.delete("/{conversation_id}")
    async def delete(
        request: Request, who: ConversationAccessDep, conversation_id: str,
        subject: str | None = None,
    ) -> ConversationDeleted:  # fmt: skip
        row = await find(who, conversation_id, subject)
        await conversations().delete(row)
        await services.identity.audit_action(
            actor(request), "conversation.delete", {"id": row.external_id, "subject": row.subject}
        )
        return ConversationDeleted(id=row.external_id, deleted=True)

    return router


def as_markdown(row: Conversation, messages: list[Any]) -> str:
    lines = [f"# {row.title or row.external_id}", "",
             f"{row.assistant} · {row.subject} · {row.created_at.isoformat()}", ""]  # fmt: skip
    for message in messages:
        lines += [
            f"## {'User' if message.role == 'user' else 'Assistant'}",
            "",
            message.content,
            "",
        ]
        for cite in message.citations or []:
            lines.append(
                f"- [{cite.get('index')}] {cite.get('document')} § {cite.get('heading', '')}"
            )
        if message.citations:
            lines.append("")
    return "\n".join(lines)
