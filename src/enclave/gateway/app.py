"""``create_app(settings)``: the one ASGI app. Routes are thin; logic lives beside them."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from enclave import __version__
from enclave.config import ConfigSource, Settings
from enclave.gateway import admin, assistants_api, errors, kb_api, memory_api
from enclave.gateway.access import may_use
from enclave.gateway.access_log import AccessLog
from enclave.gateway.body import parse, read_json
from enclave.gateway.calls import complete
from enclave.gateway.chat import chat_completions
from enclave.gateway.edge import Edge
from enclave.gateway.metrics import CONTENT_TYPE, Metrics
from enclave.gateway.record import call_record
from enclave.gateway.reload import Reloader
from enclave.gateway.services import Services, build_services
from enclave.identity import CLI
from enclave.protocol import EmbeddingRequest, ModelList

HEALTHY = ("ok", "degraded")


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
    # /openapi.json either: every route but /health and the login requires a caller.
    app = FastAPI(
        title="enclave", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,
    )  # fmt: skip
    app.state.services = ready
    errors.install(app)
    _routes(app, ready, metrics)
    admin.install(app, ready)
    memory_api.install(app, ready)
    kb_api.install(app, ready)
    assistants_api.install(app, ready)
    app.add_middleware(Edge, services=ready)  # inside the access log, which sees refusals
    app.add_middleware(AccessLog, enabled=settings.access_log, metrics=metrics)
    return app


def _reloader(source: ConfigSource | None, services: Services, metrics: Metrics) -> Reloader | None:
    if source is None:
        return None

    def reloaded(result: str) -> None:
        metrics.reloads.labels(result).inc()
        services.spawn(services.identity.audit_action(CLI, f"config.reload.{result}", {}))

    return Reloader(source, lambda: services.settings, services.swap, on_result=reloaded)


def _routes(app: FastAPI, services: Services, metrics: Metrics) -> None:
    @app.get("/health")
    async def health() -> JSONResponse:
        router = services.router
        body = {"status": "", "version": __version__} | router.health()
        if body["status"] in HEALTHY:
            return JSONResponse(body)
        waits = [m.upstream.state().retry_after for m in router.members.values()]
        headers = {"Retry-After": str(min(waits, default=5))}
        return JSONResponse(body, status_code=503, headers=headers)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models(request: Request) -> ModelList:
        router = services.router
        cards = router.cards() + await services.assistants.cards(router.context_length)
        return ModelList(data=[c for c in cards if may_use(request, c.id, raising=False)])

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await chat_completions(request, services)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        router = services.router
        body = await read_json(request, int(services.settings.limits.max_body_bytes))
        parsed = parse(EmbeddingRequest, body)
        pool = router.resolve(parsed.model, "embeddings")
        may_use(request, pool.public)
        record = call_record(request)
        record.model = pool.public
        result, lease = await router.send(pool, body, complete("embeddings"), record)
        lease.done(True)
        record.usage(result.get("usage"))
        result["model"] = pool.public
        return JSONResponse(result)
