"""``create_app(settings)``: the one ASGI app. Routes are thin; logic lives beside them.

Each API surface is an ``APIRouter``; each route declares its permission rule from
:mod:`enclave.gateway.access` (a test fails for a route without one).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from enclave import __version__
from enclave.config import ConfigSource, Settings
from enclave.errors import ClientGone, EnclaveError
from enclave.gateway import (
    access,
    admin,
    admin_audit,
    admin_console,
    assistants_api,
    console,
    errors,
    kb_api,
    memory_api,
)
from enclave.gateway.access import ModelScope, ModelScopeDep
from enclave.gateway.access_log import AccessLog
from enclave.gateway.apidoc import ERRORS, document, json_body
from enclave.gateway.body import parse, read_json
from enclave.gateway.calls import caller_of, complete, unless_disconnected
from enclave.gateway.chat import chat_completions
from enclave.gateway.chat.finish import routing_headers
from enclave.gateway.completions import completions
from enclave.gateway.deadline import BodyDeadline
from enclave.gateway.edge import Edge
from enclave.gateway.embed_limits import check_embeddings, take_turns_as
from enclave.gateway.metrics import CONTENT_TYPE, Metrics
from enclave.gateway.record import call_record
from enclave.gateway.reload import Reloader
from enclave.gateway.schemas.v1 import ChatCompletion, Completion, EmbeddingList
from enclave.gateway.services import Services, build_services
from enclave.identity import CLI
from enclave.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelList,
)

HEALTHY = ("ok", "degraded")
CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ChatCompletion,
        "description": "the completion; with stream: true, server-sent events",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}

COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": Completion,
        "description": "the text completion; with stream: true, server-sent events",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


def create_app(
    settings: Settings,
    *,
    engine_model: Path | None = None,
    services: Services | None = None,
    source: ConfigSource | None = None,
) -> FastAPI:
    """Build the gateway. ``engine_model`` is the GGUF the embedded engine serves;
    with ``source`` the config reloads on SIGHUP and when its file changes."""
    ready = services or build_services(settings, engine_model=engine_model)
    metrics = Metrics(lambda: ready.router)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ready.start()
        # What exists now (modules, the app) lives as long as the process: keep it out of
        # the collector's full passes, which otherwise stall streams for tens of ms.
        gc.collect()
        gc.freeze()
        reloader = _reloader(source, ready, metrics)
        if reloader:
            reloader.install_signal()
            if settings.watch_config and reloader.path:
                ready.spawn(reloader.watch())
        try:
            yield
        finally:
            if reloader:
                reloader.remove_signal()
            await ready.aclose()

    # No /docs or /redoc: their pages load scripts from a CDN, and nothing here may. No
    # /openapi.json either: every route but /health and the login requires a caller;
    # app.openapi() builds the document (docs/openapi.json, see gateway/openapi.py).
    app = FastAPI(
        title="enclave", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,
        routes=[route for router in _routers(ready, metrics, source) for route in router.routes],
    )  # fmt: skip
    app.state.services = ready
    errors.install(app)
    app.openapi = partial(document, app)  # type: ignore[method-assign]
    app.add_middleware(BodyDeadline, seconds=lambda: ready.settings.server.body_timeout_s)
    app.add_middleware(Edge, services=ready)  # inside the access log, which sees refusals
    app.add_middleware(AccessLog, enabled=settings.access_log, metrics=metrics)
    return app


def _routers(services: Services, metrics: Metrics, source: ConfigSource | None) -> list[APIRouter]:
    """Every route, by API surface; each declares its rule from ``access.py``."""
    return [
        _v1_routes(services),  # first: routes are matched in order, and these are the busiest
        _routes(services, metrics),
        *admin.routers(services),
        admin_console.router(services, source.file() if source else None),
        admin_audit.router(services),
        memory_api.router(services),
        kb_api.router(services),
        *assistants_api.routers(services),
        *_task_routers(services),
        console.router(),
        admin.unknown_admin_paths(),  # last: what no route above matched
    ]


def _task_routers(services: Services) -> list[APIRouter]:
    """``/api/tasks``, ``/api/runs``, ``/api/schedules`` and the WebSocket, when
    ``tasks.enabled`` (imported only then: the task service brings its own dependencies)."""
    if not services.settings.tasks.enabled:
        return []
    from enclave.gateway import tasks_api, tasks_ws

    return [tasks_api.router(services), tasks_ws.router(services)]


def _reloader(source: ConfigSource | None, services: Services, metrics: Metrics) -> Reloader | None:
    if source is None:
        return None

    def reloaded(result: str) -> None:
        metrics.reloads.labels(result).inc()
        services.spawn(services.identity.audit_action(CLI, f"config.reload.{result}", {}))

    return Reloader(source, lambda: services.settings, services.swap, on_result=reloaded)


def _routes(services: Services, metrics: Metrics) -> APIRouter:
    router = APIRouter()

    @router.get("/health", dependencies=[access.PUBLIC])
    async def health(request: Request) -> JSONResponse:
        """The status for anyone (load balancers, probes); the members, their addresses
        and errors only for a caller with a valid key or session (or with auth off)."""
        router = services.router
        report = router.health()
        body: dict[str, Any] = {"status": report["status"]}
        if await _sees_details(services, request):
            body = {"status": "", "version": __version__} | report
        if body["status"] in HEALTHY:
            return JSONResponse(body)
        waits = [m.upstream.state().retry_after for m in router.members.values()]
        headers = {"Retry-After": str(min(waits, default=5))}
        return JSONResponse(body, status_code=503, headers=headers)

    @router.get("/metrics", dependencies=[access.AUTHENTICATED])
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router


async def _sees_details(services: Services, request: Request) -> bool:
    """Whether ``/health`` may show its details: auth is off, or the caller presents a
    valid API key or session (from an address that key may use)."""
    gate = services.gatekeeper
    if not gate.enabled:
        return True
    header = request.headers.get("authorization")
    if not header:
        return False
    try:
        principal = await gate.principal(header)
    except EnclaveError:
        return False
    ip = request.scope.get("state", {}).get("client_ip", "")
    return principal.allow is None or principal.allow.allows(ip)


def _v1_routes(services: Services) -> APIRouter:
    router = APIRouter(prefix="/v1", responses=ERRORS)

    @router.get("/models")
    async def models(scope: ModelScopeDep) -> ModelList:
        router = services.router
        cards = router.cards() + await services.assistants.cards(router.context_length)
        return ModelList(data=[c for c in cards if scope.allows(c.id)])

    @router.post(
        "/chat/completions", response_model=None,
        openapi_extra=json_body(ChatCompletionRequest), responses=CHAT_RESPONSES,
    )  # fmt: skip
    @access.scoped
    async def chat(request: Request, scope: ModelScope) -> Response:
        return await chat_completions(request, services, scope)

    @router.post(
        "/completions", response_model=None,
        openapi_extra=json_body(CompletionRequest), responses=COMPLETION_RESPONSES,
    )  # fmt: skip
    @access.scoped
    async def legacy_completions(request: Request, scope: ModelScope) -> Response:
        """The legacy text completion (vLLM's and llama.cpp's): a prompt in, text out,
        through a chat model's pool; assistants answer only chat."""
        return await completions(request, services, scope)

    @router.post(
        "/embeddings", openapi_extra=json_body(EmbeddingRequest),
        responses={200: {"model": EmbeddingList, "description": "the embeddings"}},
    )  # fmt: skip
    @access.scoped
    async def embeddings(request: Request, scope: ModelScope) -> Response:
        router, limits = services.router, services.settings.limits
        body = await read_json(request, int(limits.max_body_bytes))
        parsed = parse(EmbeddingRequest, body)
        pool = router.resolve(parsed.model, "embeddings", visible=scope.allows)
        scope.check(pool.public)
        record = call_record(request)
        record.model = pool.public
        take_turns_as(scope.principal)
        count = services.embedder.embedder.count_tokens if services.embedder else None
        await unless_disconnected(request, check_embeddings(parsed, limits, count))
        send = router.send(pool, body, complete("embeddings"), record, caller=caller_of(request))
        try:
            result, lease = await unless_disconnected(request, send)
        except ClientGone:
            record.outcome = "client_disconnected"
            raise
        lease.done(True)
        record.usage(result.get("usage"))
        result["model"] = pool.public  # the model asked for; X-Enclave-Pool: who answered
        return JSONResponse(result, headers=routing_headers(record))

    return router
