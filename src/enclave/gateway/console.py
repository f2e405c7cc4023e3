"""The web console's pages and assets (files from :mod:`enclave.web`), open to anyone who
can reach the gateway: the pages sign in through ``/api/auth`` and hold no data until then.

    GET /              the chat (conversations, knowledge bases, "what I remember")
    GET /admin         the administration console
    GET /ui/{file}     a file the manifest lists (scripts, styles, vendored libraries)
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from enclave.gateway import access
from enclave.web import Assets


def router(assets: Assets | None = None) -> APIRouter:
    files = assets or Assets()
    router = APIRouter(dependencies=[access.PUBLIC], include_in_schema=False)

    def cached(request: Request) -> tuple[str, str | None]:
        return request.headers.get("accept-encoding", ""), request.headers.get("if-none-match")

    @router.get("/")
    async def chat(request: Request) -> Response:
        return files.page("chat", *cached(request))

    @router.get("/admin")
    async def admin(request: Request) -> Response:
        return files.page("admin", *cached(request))

    @router.get("/ui/{name:path}")
    async def asset(request: Request, name: str) -> Response:
        return files.response(name, *cached(request))

    return router
