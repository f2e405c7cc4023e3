"""The wire schema: what OpenAI clients send is accepted, extras are kept, bad input named."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from enclave.gateway.errors import invalid_from_validation
from enclave.protocol import ChatCompletionRequest, EmbeddingRequest, ImagePart, TextPart


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_full_request_round_trips_with_extras() -> None:
    body = chat(
        stream=True,
        stream_options={"include_usage": True},
        max_completion_tokens=64,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n"],
        seed=1,
        response_format={"type": "json_object"},
        user="u-1",
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice="auto",
        top_k=20,
        chat_template_kwargs={"enable_thinking": False},
        guided_json={"type": "object"},
    )
    request = ChatCompletionRequest.model_validate(body)
    assert request.wants_usage()
    assert request.output_limit() == 64
    assert request.wire() == body


def test_content_parts_and_tool_calls() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]  # fmt: skip
    request = ChatCompletionRequest.model_validate(chat(messages=messages))
    parts = request.messages[1].content
    assert isinstance(parts, list)
    assert isinstance(parts[0], TextPart)
    assert isinstance(parts[1], ImagePart)
    assert len(request.images()) == 1
    assert request.messages[1].text() == "what is this?"
    assert request.wire()["messages"] == messages


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "messages"),
        (chat(messages=[]), "messages"),
        (chat(messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
        (chat(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages[0].content"),
        (chat(model=""), "model"),
        (chat(temperature=3), "temperature"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(stream_options={"include_usage": True}), None),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str | None) -> None:
    with pytest.raises(ValidationError) as caught:
        ChatCompletionRequest.model_validate(body)
    error = invalid_from_validation(caught.value)
    assert error.status == 400
    assert error.param == param
    if param:
        assert f"'{param}'" in error.message


def test_embedding_inputs() -> None:
    assert EmbeddingRequest(model="e", input="a").texts() == ["a"]
    assert EmbeddingRequest(model="e", input=["a", "b"]).texts() == ["a", "b"]
    assert EmbeddingRequest(model="e", input=[1, 2, 3]).texts() is None
    with pytest.raises(ValidationError):
        EmbeddingRequest(model="e", input=[])
