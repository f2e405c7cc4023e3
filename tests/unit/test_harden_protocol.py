"""Request bodies as the gateway reads them (``gateway.body``): strict types, OpenAI's caps
on ``n`` and ``stop``, nesting and lone surrogates refused with a 400 naming the problem,
for every schema a JSON body is parsed into."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from enclave.errors import InvalidRequest
from enclave.gateway.body import DEFAULT_JSON_DEPTH, loads, parse
from enclave.gateway.schemas.admin import KeyCreate
from enclave.gateway.schemas.knowledge import KbCreate, Search
from enclave.gateway.schemas.memory import Selection
from enclave.profiles import AssistantProfile
from enclave.protocol import ChatCompletionRequest, EmbeddingRequest

CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def refused(model: type[BaseModel], data: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse(model, data)
    return caught.value


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_tokens", "10"), ("max_tokens", True), ("max_tokens", 10.0), ("stream", "yes"),
     ("stream", 1), ("temperature", "0.5"), ("temperature", True), ("top_p", "1"),
     ("n", "2"), ("seed", "7"), ("presence_penalty", "0")],
)  # fmt: skip
def test_chat_fields_are_not_coerced(field: str, value: Any) -> None:
    error = refused(ChatCompletionRequest, CHAT | {field: value})
    assert error.param == field
    assert error.status == 400


def test_integers_are_numbers_as_openai_accepts() -> None:
    parsed = parse(ChatCompletionRequest, CHAT | {"temperature": 1, "top_p": 1, "n": 2})
    assert parsed.temperature == 1.0


def test_n_and_stop_are_capped_like_openai() -> None:
    assert parse(ChatCompletionRequest, CHAT | {"n": 128}).n == 128
    assert refused(ChatCompletionRequest, CHAT | {"n": 129}).param == "n"
    assert parse(ChatCompletionRequest, CHAT | {"stop": list("abcd")}).stop == list("abcd")
    error = refused(ChatCompletionRequest, CHAT | {"stop": list("abcde")})
    assert error.param == "stop"
    assert "4" in error.message


@pytest.mark.parametrize(
    ("model", "data", "param"),
    [
        (EmbeddingRequest, {"model": "e", "input": "x", "dimensions": "8"}, "dimensions"),
        (KeyCreate, {"user": "bob", "name": "k", "rpm": "100"}, "rpm"),
        (KbCreate, {"name": "kb", "chunk_size": "500"}, "chunk_size"),
        (Search, {"query": "q", "k": "5"}, "k"),
        (Selection, {"ids": ["1"]}, "ids[0]"),
        (AssistantProfile, {"name": "a", "model": "m", "extract": "yes"}, "extract"),
    ],
)
def test_every_body_schema_is_strict(
    model: type[BaseModel], data: dict[str, Any], param: str
) -> None:
    assert refused(model, data).param == param


def test_nesting_beyond_the_limit_names_it() -> None:
    depth = DEFAULT_JSON_DEPTH
    inside = "[" * (depth - 1) + "]" * (depth - 1)  # the object itself is one level
    assert loads(f'{{"a": {inside}}}'.encode())
    for body in (f'{{"a": [{inside}]}}', '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        with pytest.raises(InvalidRequest) as caught:
            loads(body.encode())
        assert "limits.max_json_depth" in caught.value.message
    with pytest.raises(InvalidRequest):
        loads(b'{"a": [[[[]]]]}', depth=4)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (r'{"a": "\ud800"}', "a"),
        (r'{"a": [{"b": "x\udc00y"}]}', "a[0].b"),
        (r'{"\udbff": 1}', "\\udbff"),
        (r'{"a": "\ude00\ud83d"}', "a"),  # a pair in the wrong order is two lone ones
    ],
)
def test_a_lone_surrogate_anywhere_is_refused(body: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        loads(body.encode())
    assert caught.value.param == param
    json.dumps(caught.value.message, ensure_ascii=False).encode()  # the message itself encodes


def test_text_that_only_looks_like_a_surrogate_passes() -> None:
    assert loads(rb'{"a": "\ud83d\ude00", "b": "\\ud800"}') == {"a": "\U0001f600", "b": "\\ud800"}
