"""Assistant profiles and conversations over HTTP.

    GET    /api/assistants                       the profiles (config and API), for any caller
    PUT    /api/admin/assistants/{name}          create or replace a profile (administrators)
    DELETE /api/admin/assistants/{name}          remove a profile made through the API
    GET    /api/conversations                    the caller's conversations, newest first
                                                 (administrators: ?all=true for everyone's)
    GET    /api/conversations/{id}               one, with its messages and their citations
    GET    /api/conversations/{id}/export        ?format=json (default) or md, as a download
    DELETE /api/conversations/{id}               delete it and its messages

``/api/admin`` is for administrators and closed without authentication (the edge sees to
it); changes to profiles are audited. A conversation belongs to the key's user; without
authentication every conversation is the one local user's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from enclave.assistants.conversations import conversation_view, message_view
from enclave.errors import Forbidden, InvalidRequest
from enclave.gateway.access import actor, may_use
from enclave.gateway.admin import body_of, is_admin
from enclave.profiles import AssistantProfile

if TYPE_CHECKING:
    from enclave.assistants.conversations import Conversations
    from enclave.gateway.services import Services
    from enclave.store.models_assistants import Conversation


def install(app: FastAPI, services: Services) -> None:
    _profile_routes(app, services)
    _conversation_routes(app, services)


def _profile_routes(app: FastAPI, services: Services) -> None:
    @app.get("/api/assistants")
    async def listing(request: Request) -> dict[str, Any]:
        found = await services.assistants.profiles()
        return {
            "data": [
                {**p.model_dump(mode="json"), "id": p.public, "source": source}
                for p, source in found.values()
                if may_use(request, p.public, raising=False)
            ]
        }

    @app.put("/api/admin/assistants/{name}")
    async def put(request: Request, name: str, response: Response) -> dict[str, Any]:
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
        return {**profile.model_dump(mode="json"), "id": profile.public, "source": "api"}

    @app.delete("/api/admin/assistants/{name}")
    async def delete(request: Request, name: str) -> dict[str, Any]:
        await services.assistants.delete(name)
        await services.identity.audit_action(actor(request), "assistant.delete", {"name": name})
        return {"name": name, "deleted": True}


def owner_of(request: Request, everyone: bool = False) -> str | None:
    """Whose conversations: the caller's; ``None`` (everyone's) for an administrator asking
    for all, or when there is no authentication."""
    principal = getattr(request.state, "principal", None)
    if principal is None or principal.user is None:
        return None
    if everyone:
        if not is_admin(request):
            raise Forbidden("only administrators may list everyone's conversations")
        return None
    return str(principal.user)


def _conversation_routes(app: FastAPI, services: Services) -> None:
    def conversations() -> Conversations:  # made when the app starts
        return services.assistants.conversations

    async def find(request: Request, conversation_id: str, subject: str | None) -> Conversation:
        return await conversations().get(
            owner_of(request, everyone=is_admin(request)), conversation_id, subject
        )

    @app.get("/api/conversations")
    async def listing(
        request: Request, *, all: bool = False, assistant: str | None = None,
        limit: int = 50, offset: int = 0,
    ) -> dict[str, Any]:  # fmt: skip
        rows = await conversations().listing(
            owner_of(request, everyone=all), limit=min(max(limit, 1), 500),
            offset=max(offset, 0), assistant=assistant,
        )  # fmt: skip
        return {"data": [conversation_view(row, n) for row, n in rows]}

    @app.get("/api/conversations/{conversation_id}")
    async def one(
        request: Request, conversation_id: str, subject: str | None = None
    ) -> dict[str, Any]:
        row = await find(request, conversation_id, subject)
        messages = await conversations().messages(row)
        return {
            **conversation_view(row, len(messages)),
            "data": [message_view(m) for m in messages],
        }

    @app.get("/api/conversations/{conversation_id}/export")
    async def export(
        request: Request, conversation_id: str, format: str = "json", subject: str | None = None
    ) -> Response:
        row = await find(request, conversation_id, subject)
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

        body = {
            **conversation_view(row, len(messages)),
            "messages": [message_view(m) for m in messages],
        }
        text = json.dumps(body, ensure_ascii=False, indent=2)
        return Response(text, media_type="application/json", headers=disposition)

    @app.delete("/api/conversations/{conversation_id}")
    async def delete(
        request: Request, conversation_id: str, subject: str | None = None
    ) -> dict[str, Any]:
        row = await find(request, conversation_id, subject)
        await conversations().delete(row)
        await services.identity.audit_action(
            actor(request), "conversation.delete", {"id": row.external_id, "subject": row.subject}
        )
        return {"id": row.external_id, "deleted": True}


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
