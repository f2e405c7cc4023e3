"""The legacy ``/v1/completions`` request: its schema and the bounds checked before any
upstream (``gateway/completions.py``), on a real router pool."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from enclave.config import LimitsSettings
from enclave.errors import ContextLengthExceeded, InvalidRequest
from enclave.gateway.access import ModelScope
from enclave.gateway.completions import check_prompts, resolve
from enclave.protocol import CompletionRequest
from enclave.router import Pool
from tests.unit.test_router import Scripted, make_router, member


def request(**fields: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "hi", **fields})


def pool(context_length: int = 100) -> Pool:
    router = make_router(member(Scripted("a"), context_length=context_length))
    return router.resolve("m", "chat")


@pytest.mark.parametrize(
    ("prompt", "prompts"),
    [
        ("one", ["one"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),  # a flat list of ids is one prompt
        ([[1], [2, 3]], [[1], [2, 3]]),
    ],
)
def test_every_prompt_shape_is_read_as_its_prompts(prompt: Any, prompts: list[Any]) -> None:
    assert request(prompt=prompt).prompts() == prompts


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": []},
        {"prompt": [[]]},
        {"prompt": ["a", 1]},
        {"prompt": None},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"stream_options": {"include_usage": True}},  # without stream
        {"n": 129},
        {"max_tokens": -1},
    ],
)
def test_malformed_requests_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        request(**fields)


def test_unknown_fields_pass_through() -> None:
    parsed = request(top_k=3, guided_json={"type": "object"})
    assert parsed.model_extra == {"top_k": 3, "guided_json": {"type": "object"}}


def test_a_batch_over_the_limit_is_refused_naming_it() -> None:
    limits = LimitsSettings(max_completion_prompts=2)
    check_prompts(request(prompt=["a", "b"]), limits, pool())
    with pytest.raises(InvalidRequest, match=r"3 prompts; limits\.max_completion_prompts allows 2"):
        check_prompts(request(prompt=["a", "b", "c"]), limits, pool())


def test_token_ids_and_max_tokens_are_held_to_the_context_length() -> None:
    limits = LimitsSettings()
    check_prompts(request(prompt=list(range(90)), max_tokens=10), limits, pool(100))
    with pytest.raises(ContextLengthExceeded, match=r"prompt of 91 tokens .* 101") as caught:
        check_prompts(request(prompt=[[1], list(range(91))], max_tokens=10), limits, pool(100))
    assert caught.value.param == "prompt"
    with pytest.raises(ContextLengthExceeded, match="max_tokens is 100"):
        check_prompts(request(max_tokens=100), limits, pool(100))
    check_prompts(request(prompt="x" * 10_000, max_tokens=10), limits, pool(100))  # upstream's


def test_an_assistant_is_refused_naming_the_chat_route() -> None:
    router = make_router(member(Scripted("a")))
    with pytest.raises(InvalidRequest, match=r"POST /v1/chat/completions only") as caught:
        resolve(router, "assistant/helper", ModelScope(None))
    assert caught.value.param == "model"
    assert resolve(router, "m", ModelScope(None)).public == "m"
