"""``create_app(settings)``: the one ASGI app. Routes are thin; logic lives beside them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from enclave import __version__
from enclave.config import Settings
from enclave.gateway import errors
from enclave.gateway.access_log import AccessLog
from enclave.gateway.body import parse, read_json
from enclave.gateway.chat import chat_completions
from enclave.gateway.services import Services, build_services
from enclave.protocol import EmbeddingRequest, ModelList


def create_app(
    settings: Settings, *, engine_model: Path | None = None, services: Services | None = None
) -> FastAPI:
    """Build the gateway. ``engine_model`` is the GGUF the embedded engine serves."""
    ready = services or build_services(settings, engine_model=engine_model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ready.start()
        try:
            yield
        finally:
            await ready.aclose()

    # No /docs or /redoc: their pages load scripts from a CDN, and nothing here may.
    app = FastAPI(
        title="enclave", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.services = ready
    errors.install(app)
    _routes(app, ready)
    app.add_middleware(AccessLog, enabled=settings.access_log)
    return app


def _routes(app: FastAPI, services: Services) -> None:
    @app.get("/health")
    async def health() -> JSONResponse:
        states = [(u.name, u.state()) for u in services.upstreams]
        ok = all(state.ready for _, state in states)
        body = {
            "status": "ok" if ok else "loading",
            "version": __version__,
            "upstreams": [
                {"name": name, "state": s.state, "detail": s.detail, **s.info} for name, s in states
            ],
        }
        waits = [s.retry_after for _, s in states if not s.ready]
        headers = {"Retry-After": str(min(waits))} if waits else {}
        return JSONResponse(body, status_code=200 if ok else 503, headers=headers)

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=services.registry.cards())

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await chat_completions(request, services)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await read_json(request, int(services.settings.limits.max_body_bytes))
        parsed = parse(EmbeddingRequest, body)
        route = services.registry.resolve(parsed.model, "embeddings")
        request.state.model, request.state.upstream = route.public, route.upstream.name
        result = await route.upstream.embeddings({**body, "model": route.upstream_model})
        result["model"] = route.public
        return JSONResponse(result)
