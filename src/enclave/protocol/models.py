"""``GET /v1/models``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from enclave.protocol._base import Open


class ModelCard(Open):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "enclave"
    max_model_len: int | None = Field(None, description="context length, as vLLM reports it")


class ModelList(Open):
    object: Literal["list"] = "list"
    data: list[ModelCard]
