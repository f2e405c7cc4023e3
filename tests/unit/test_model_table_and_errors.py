"""Model routing table and the error envelope."""

from __future__ import annotations

import httpx
import pytest

from enclave.engine.supervisor import Backoff
from enclave.errors import EngineLoading, ModelNotFound
from enclave.gateway.errors import envelope
from enclave.upstream import HTTPUpstream, Registry, Route


def upstream(name: str) -> HTTPUpstream:
    return HTTPUpstream(name, httpx.AsyncClient(base_url="http://127.0.0.1:1/v1/"))


def test_resolve_aliases_and_default() -> None:
    gpu = upstream("gpu")
    registry = Registry([
        Route("qwen", "chat", gpu, "/models/Qwen2.5-7B"),
        Route("other", "chat", gpu, "other"),
        Route("e5", "embeddings", gpu, "e5"),
    ])  # fmt: skip
    assert registry.resolve("qwen", "chat").upstream_model == "/models/Qwen2.5-7B"
    assert registry.resolve("default", "chat").public == "qwen"
    assert registry.resolve("e5", "embeddings").public == "e5"
    assert [card.id for card in registry.cards()] == ["qwen", "other", "e5"]
    with pytest.raises(ModelNotFound, match="available: other, qwen"):
        registry.resolve("e5", "chat")


def test_configured_default_model() -> None:
    gpu = upstream("gpu")
    registry = Registry(
        [Route("a", "chat", gpu, "a"), Route("b", "chat", gpu, "b")], default_model="b"
    )
    assert registry.resolve("default", "chat").public == "b"


def test_envelope_shape_and_headers() -> None:
    error = EngineLoading("loading", retry_after=7)
    assert envelope(error) == {
        "error": {"message": "loading", "type": "service_unavailable", "param": None,
                  "code": "engine_loading"}
    }  # fmt: skip
    assert error.status == 503
    assert error.headers() == {"Retry-After": "7"}


def test_backoff_grows_to_its_limit() -> None:
    backoff = Backoff(first=1, factor=2, limit=30)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
