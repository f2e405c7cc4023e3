"""Tool calling on the real embedded engine (llama.cpp, the tiny SmolLM2): the openai SDK,
streamed and not, and LangChain's ``bind_tools`` get ``tool_calls`` back, and the turn
after the tool's result gets a text answer.

SmolLM2's chat template has no tools, so llama.cpp leaves them out of the prompt; the
conversation shows the model how to call (one example turn), it answers with a JSON
object, and the gateway reads that back as a call (enclave.gateway.chat.toolcalls).
Temperature 0: the answers are the same on every run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageParam

from enclave.engine.child import build_params, parse_args
from tests.engine.conftest import prepare
from tests.engine.test_engine_serve import CONFIG, TINY
from tests.gateway import Gateway, run_gateway

SYSTEM = (
    "To call a tool, answer with a JSON object only. "
    "When a tool result is given, answer the user in words."
)
EXAMPLE = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
TOOLS: list[Any] = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}},
]  # fmt: skip
QUESTION: list[Any] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Call get_weather for Paris."},
    {"role": "assistant", "content": EXAMPLE},
    {"role": "user", "content": "Call get_weather for Rome."},
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home: Path = tmp_path_factory.mktemp("engine-tools")
    prepare(home, TINY)
    with run_gateway(home, CONFIG, timeout=120) as running:
        yield running


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)


def ask(client: openai.OpenAI, messages: list[Any], **extra: Any) -> Any:
    return client.chat.completions.create(
        model=TINY, messages=messages, tools=TOOLS, temperature=0, max_tokens=48, **extra
    )


def called(name: str, arguments: str) -> None:
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Rome"}


def test_the_sdk_gets_tool_calls_and_then_a_text_answer(client: openai.OpenAI) -> None:
    reply = ask(client, QUESTION)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    called(call.function.name, call.function.arguments)
    result = {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"}
    after = ask(client, [*QUESTION, choice.message.model_dump(exclude_none=True), result])
    assert after.choices[0].finish_reason == "stop"
    assert not after.choices[0].message.tool_calls
    assert after.choices[0].message.content.strip()


def test_a_stream_gets_tool_call_deltas(client: openai.OpenAI) -> None:
    calls: dict[int, dict[str, str]] = {}
    reasons, text = [], ""
    for chunk in ask(client, QUESTION, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for part in delta.tool_calls or []:
            call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += part.id or ""
            call["name"] += part.function.name or "" if part.function else ""
            call["arguments"] += part.function.arguments or "" if part.function else ""
        if chunk.choices[0].finish_reason:
            reasons.append(chunk.choices[0].finish_reason)
    assert text == ""
    assert reasons == ["tool_calls"]
    assert list(calls) == [0]
    assert calls[0]["id"].startswith("call_")
    called(calls[0]["name"], calls[0]["arguments"])


def test_the_sdk_stream_helper_assembles_the_call(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=TINY, messages=QUESTION, tools=TOOLS, temperature=0, max_tokens=48
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    called(call.function.name, call.function.arguments)


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city"""
    return "Sunny, 24 C"


def test_langchain_bind_tools(gateway: Gateway) -> None:
    model = ChatOpenAI(
        model=TINY, base_url=gateway.v1, api_key="unused", temperature=0, max_tokens=48,
        max_retries=0,
    ).bind_tools([get_weather])  # fmt: skip
    history: list[Any] = [
        SystemMessage(SYSTEM),
        HumanMessage("Call get_weather for Paris."),
        AIMessage(EXAMPLE),
        HumanMessage("Call get_weather for Rome."),
    ]
    answer = model.invoke(history)
    assert isinstance(answer, AIMessage)
    (call,) = answer.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "Rome"}
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    after = model.invoke([*history, answer, result])
    assert isinstance(after, AIMessage)
    assert not after.tool_calls
    assert isinstance(after.content, str)
    assert after.content.strip()


def test_plain_chat_is_unchanged(client: openai.OpenAI) -> None:
    plain: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colors."}]
    whole = client.chat.completions.create(model=TINY, messages=plain, temperature=0, max_tokens=16)
    streamed = client.chat.completions.create(
        model=TINY, messages=plain, temperature=0, max_tokens=16, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert whole.choices[0].message.content == text
    assert text.strip()
    assert not whole.choices[0].message.tool_calls


def test_the_child_runs_the_gguf_template_as_jinja() -> None:
    params = build_params(parse_args(["--model", "model.gguf", "--port", "1", "--parent", "1"]))
    assert params.use_jinja
    assert params.enable_chat_template
