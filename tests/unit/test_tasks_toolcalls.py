"""Tool calls a small model wrote as JSON, read back into OpenAI's shape: the parser, the
non-streamed answer, and the stream (events fed one by one as the relay does)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from enclave.gateway.chat.toolcalls import fix_response, offered, parse_calls
from enclave.gateway.chat.toolstream import ToolStream

NAMES = frozenset({"get_weather", "read_file"})
PARIS = {"city": "Paris"}


def calls_of(text: str) -> list[tuple[str, Any]] | None:
    calls = parse_calls(text, NAMES)
    if calls is None:
        return None
    for call in calls:
        assert call["id"].startswith("call_")
        assert call["type"] == "function"
        assert isinstance(call["function"]["arguments"], str)
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        '  \n{"name": "get_weather", "arguments": {"city": "Paris"}}\n',
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '```\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '```json{"name": "get_weather", "arguments": {"city": "Paris"}}```',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}',  # not closed
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',
        '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}',
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}',
        '{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}',
        '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        '{{"name": "get_weather", "arguments": {"city": "Paris"}}}',  # doubled braces
        'Sure, here is the call:\n```json\n{"name": "get_weather", "arguments": {"city": '
        '"Paris"}}\n```\nLet me know the result.',
        '好的，我来查询天气。\n```json\n{"name": "get_weather", '
        '"arguments": {"city": "Paris"}}\n```',
    ],
)
def test_one_call_in_many_shapes(text: str) -> None:
    assert calls_of(text) == [("get_weather", PARIS)]


def test_chinese_arguments_are_kept_as_they_are() -> None:
    text = '```json\n{"name": "get_weather", "arguments": {"city": "北京"}}\n```'
    calls = parse_calls(text, NAMES)
    assert calls is not None
    assert calls[0]["function"]["arguments"] == '{"city": "北京"}'


def test_several_calls() -> None:
    listed = (
        '[{"name": "get_weather", "arguments": {"city": "Paris"}},'
        ' {"name": "read_file", "arguments": {"path": "a.txt"}}]'
    )
    tagged = (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
        '<tool_call>{"name": "read_file", "arguments": {"path": "a.txt"}}</tool_call>'
    )
    expected = [("get_weather", PARIS), ("read_file", {"path": "a.txt"})]
    assert calls_of(listed) == expected
    assert calls_of(tagged) == expected


def test_a_call_without_arguments_has_an_empty_object() -> None:
    assert calls_of('{"name": "get_weather"}') == [("get_weather", {})]


def test_the_ids_are_unique() -> None:
    calls = parse_calls('[{"name": "get_weather"}, {"name": "get_weather"}]', NAMES)
    assert calls is not None
    assert calls[0]["id"] != calls[1]["id"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The weather in Paris is sunny.",
        "天气很好。",
        '{"name": "delete_everything", "arguments": {}}',  # not an offered tool
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"\n```',  # malformed
        '{"name": "get_weather", "arguments": {"city": "Paris"',  # cut short
        '{"name": "get_weather", "arguments": ["Paris"]}',  # arguments not an object
        '{"name": "get_weather", "arguments": "Paris"}',  # a string that is not JSON
        '{"city": "Paris"}',  # JSON, but not a call
        '[{"name": "get_weather"}, "and more"]',  # a list with something else in it
        "```python\nprint('hello')\n```",
        '```json\n{"name": "Paris", "population": 2100000}\n```',
        "[1] a footnote, not JSON",
        "Use the {name} placeholder.",
    ],
)
def test_not_a_call(text: str) -> None:
    assert parse_calls(text, NAMES) is None


def test_offered_tools() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    assert offered({"tools": [tool]}) == frozenset({"get_weather"})
    assert offered({"tools": [tool], "tool_choice": "none"}) is None
    assert offered({"tools": []}) is None
    assert offered({}) is None


def answer(content: str | None, **message: Any) -> dict[str, Any]:
    msg = {"role": "assistant", "content": content, **message}
    return {"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]}


def test_a_non_streamed_answer_gets_tool_calls() -> None:
    result = answer('```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```')
    fix_response(result, NAMES)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_a_plain_or_native_answer_is_left_as_it_is() -> None:
    text = answer("It is sunny in Paris.")
    native_call = {"id": "x", "type": "function", "function": {"name": "get_weather"}}
    native = answer(None, tool_calls=[native_call])
    for result in (text, native):
        before = json.dumps(result)
        fix_response(result, NAMES)
        assert json.dumps(result) == before


# ---------------------------------------------------------------- the stream

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    return json.dumps({**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def relayed(pieces: list[str], *, finish: bool = True, usage: bool = False) -> list[str]:
    """The events a ToolStream sends for a stream of these content pieces."""
    reader = ToolStream(NAMES)
    out = reader.feed(chunk({"role": "assistant", "content": None}))
    for piece in pieces:
        out += reader.feed(chunk({"content": piece}))
    if finish:
        out += reader.feed(chunk({}, "stop"))
    if usage:
        out += reader.feed(json.dumps({**HEAD, "choices": [], "usage": {"total_tokens": 3}}))
    return out + reader.end()


def assembled(events: list[str]) -> tuple[str, dict[int, dict[str, Any]], list[str]]:
    """Content, tool calls by index, and finish reasons, as a client assembles them."""
    text, reasons = "", []
    calls: dict[int, dict[str, Any]] = {}
    for event in events:
        for choice in json.loads(event)["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for part in delta.get("tool_calls") or []:
                call = calls.setdefault(part["index"], {"name": "", "arguments": ""})
                call["id"] = part.get("id", call.get("id"))
                call["name"] += part["function"].get("name") or ""
                call["arguments"] += part["function"].get("arguments") or ""
            if choice["finish_reason"]:
                reasons.append(choice["finish_reason"])
    return text, calls, reasons


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    ],
)
def test_a_streamed_call_becomes_tool_call_deltas(text: str, size: int) -> None:
    events = relayed(split(text, size), usage=True)
    content, calls, reasons = assembled(events[:-1])
    assert content == ""
    assert reasons == ["tool_calls"]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == PARIS
    assert json.loads(events[-1])["usage"] == {"total_tokens": 3}  # passed on, last


@pytest.mark.parametrize("size", [1, 4, 1000])
@pytest.mark.parametrize(
    "text",
    [
        "The weather in Paris is sunny.",
        "天气晴朗，气温二十四度。",
        "Use `ls` and ``` fences ``` freely.",
        "```python\nprint('hi')\n```\nDone.",
        '{"city": "Paris"} is JSON, not a call.',
        '```json\n{"name": "unknown_tool", "arguments": {}}\n```',
        "Unclosed fence: ```json {",
        "<tool",
    ],
)
def test_streamed_text_is_released_unchanged(text: str, size: int) -> None:
    content, calls, reasons = assembled(relayed(split(text, size)))
    assert content == text
    assert calls == {}
    assert reasons == ["stop"]


def test_plain_text_is_not_held_back() -> None:
    reader = ToolStream(NAMES)
    sent = reader.feed(chunk({"content": "Hello"}))
    assert assembled(sent)[0] == "Hello"
    sent = reader.feed(chunk({"content": " world `"}))  # a fence may begin here
    assert assembled(sent)[0] == " world "
    sent = reader.feed(chunk({"content": "x"}))
    assert assembled(sent)[0] == "`x"


def test_text_before_a_streamed_call_goes_out_as_content() -> None:
    text = 'Let me check.\n```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    content, calls, reasons = assembled(relayed(split(text, 5)))
    assert content == "Let me check.\n"
    assert calls[0]["name"] == "get_weather"
    assert reasons == ["tool_calls"]


def test_a_stream_without_a_finish_chunk_is_flushed_at_its_end() -> None:
    text = '{"name": "read_file", "arguments": {"path": "a.txt"}}'
    content, calls, reasons = assembled(relayed(split(text, 4), finish=False))
    assert content == ""
    assert calls[0]["name"] == "read_file"
    assert reasons == ["tool_calls"]


def test_native_tool_call_deltas_pass_through() -> None:
    reader = ToolStream(NAMES)
    native = chunk({"tool_calls": [{"index": 0, "id": "abc", "function": {"name": "read_file"}}]})
    events = reader.feed(native) + reader.feed(chunk({}, "tool_calls")) + reader.end()
    assert events == [native, chunk({}, "tool_calls")]
