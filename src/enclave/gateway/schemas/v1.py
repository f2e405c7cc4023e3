"""``/v1``: what the OpenAI-compatible routes answer (the requests are in ``protocol``).

Documentation only: the gateway relays the upstream's answer, with ``model`` set to the
public name, so these models keep the fields they do not name.
"""

from __future__ import annotations

from typing import Any, Literal

from enclave.protocol._base import Open


class Usage(Open):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class Choice(Open):
    index: int
    message: dict[str, Any]
    finish_reason: str | None = None


class ChatCompletion(Open):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class TextChoice(Open):
    index: int
    text: str
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class Completion(Open):
    """``/v1/completions``: the legacy text completion."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class Embedding(Open):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # str: base64


class EmbeddingList(Open):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage | None = None
