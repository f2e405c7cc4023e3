"""What the routes use, built once from the settings: registry, engine, OCR."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from enclave.config import Settings, UpstreamSettings
from enclave.upstream import HTTPUpstream, Registry, Route, Upstream
from enclave.upstream.http import make_client

if TYPE_CHECKING:
    from enclave.engine.local_embeddings import LocalEmbeddingsUpstream
    from enclave.engine.ocr import OCR
    from enclave.engine.runtime import Engine

log = logging.getLogger("enclave.gateway")


@dataclass
class Services:
    settings: Settings
    registry: Registry
    upstreams: list[Upstream]
    engine: Engine | None = None
    embedder: LocalEmbeddingsUpstream | None = None
    ocr: OCR | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        if self.engine:
            self.engine.start()
        if self.embedder:
            self._tasks.append(asyncio.create_task(self.embedder.warm_up()))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.engine:
            await self.engine.stop()
        for upstream in self.upstreams:
            if isinstance(upstream, HTTPUpstream):
                await upstream.aclose()


def remote_routes(config: UpstreamSettings) -> tuple[HTTPUpstream, list[Route]]:
    key = config.api_key.get_secret_value() if config.api_key else None
    client = make_client(
        config.base_url, api_key=key, connect_timeout=config.connect_timeout_s,
        timeout=config.timeout_s,
    )  # fmt: skip
    upstream = HTTPUpstream(config.name, client, vision=config.vision)
    length = config.context_length
    routes = [
        Route(name, "chat", upstream, config.aliases.get(name, name), config.name, lambda: length)
        for name in [*config.models, *(a for a in config.aliases if a not in config.models)]
    ]
    return upstream, routes


def build_services(settings: Settings, *, engine_model: Path | None = None) -> Services:
    routes: list[Route] = []
    upstreams: list[Upstream] = []
    engine, embedder, ocr = _embedded(settings, engine_model)
    if engine:
        upstreams.append(engine.upstream)
        routes += [
            Route(name, "chat", engine.upstream, name, "enclave", engine.context_length)
            for name in settings.engine.public_names()
        ]
    if embedder:
        upstreams.append(embedder)
        name = settings.engine.embedding_model_name
        routes.append(Route(name, "embeddings", embedder, name, "enclave"))
    for config in settings.upstreams:
        upstream, more = remote_routes(config)
        upstreams.append(upstream)
        routes += more
    registry = Registry(routes, default_model=settings.default_model)
    return Services(settings, registry, upstreams, engine, embedder, ocr)


def _embedded(
    settings: Settings, engine_model: Path | None
) -> tuple[Engine | None, LocalEmbeddingsUpstream | None, OCR | None]:
    """The engine's parts, each on its own switch; they need ``enclave[engine]``."""
    cfg = settings.engine
    engine = embedder = ocr = None
    if cfg.enabled and engine_model is not None:
        from enclave.engine.runtime import Engine

        engine = Engine(cfg, engine_model, log_path=settings.logs_dir / "engine.log")
    if cfg.embeddings:
        from enclave.engine.embedder import LocalEmbedder
        from enclave.engine.local_embeddings import LocalEmbeddingsUpstream

        embedder = LocalEmbeddingsUpstream(LocalEmbedder(cfg.embedding_model_name))
    if cfg.ocr:
        from enclave.engine.ocr import OCR

        ocr = OCR()
    return engine, embedder, ocr
