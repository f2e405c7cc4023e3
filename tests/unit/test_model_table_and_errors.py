"""The model table built from settings, and the error envelope."""

from __future__ import annotations

from typing import Any

import pytest

from enclave.config import Settings
from enclave.engine.supervisor import Backoff
from enclave.errors import EngineLoading, ModelNotFound
from enclave.gateway.errors import envelope
from enclave.router import Router, build_router


def router(**settings: Any) -> Router:
    return build_router(Settings(engine={"enabled": False, "embeddings": False}, **settings))


GPU = {"name": "gpu", "base_url": "http://127.0.0.1:1/v1"}


def test_resolve_aliases_and_default() -> None:
    table = router(
        upstreams=[{**GPU, "models": ["qwen", "other"], "embedding_models": ["e5"],
                    "aliases": {"qwen": "/models/Qwen2.5-7B"}}]
    )  # fmt: skip
    qwen = table.resolve("qwen", "chat")
    assert qwen.upstream_model == {"gpu": "/models/Qwen2.5-7B"}
    assert table.resolve("default", "chat").public == "qwen"
    assert table.resolve("e5", "embeddings").public == "e5"
    assert [card.id for card in table.cards()] == ["qwen", "other", "e5"]
    with pytest.raises(ModelNotFound, match="available: other, qwen"):
        table.resolve("e5", "chat")


def test_configured_default_model() -> None:
    table = router(upstreams=[{**GPU, "models": ["a", "b"]}], default_model="b")
    assert table.resolve("default", "chat").public == "b"


def test_one_public_name_served_by_two_members_is_one_pool() -> None:
    second = {"name": "gpu2", "base_url": "http://127.0.0.1:2/v1"}
    table = router(
        upstreams=[{**GPU, "models": ["qwen"]},
                   {**second, "aliases": {"qwen": "/models/qwen"}, "context_length": 8192}]
    )  # fmt: skip
    pool = table.resolve("qwen", "chat")
    assert [m.name for m in pool.members] == ["gpu", "gpu2"]
    assert pool.upstream_model == {"gpu": "qwen", "gpu2": "/models/qwen"}
    assert pool.context_length() == 8192


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


def test_discovered_models_are_public_and_aliases_rename_them() -> None:
    table = router(upstreams=[{**GPU, "aliases": {"pub": "x"}}])
    assert [card.id for card in table.cards()] == ["pub"]  # before the first health check
    table.members["gpu"].discovered = {"x": {"id": "x", "max_model_len": 4096}, "y": {"id": "y"}}
    table.rebuild()
    assert sorted(card.id for card in table.cards()) == ["pub", "y"]
    assert table.resolve("pub", "chat").upstream_model == {"gpu": "x"}
    assert table.resolve("pub", "chat").context_length() == 4096
