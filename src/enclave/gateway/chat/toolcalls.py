"""Tool calls a small model wrote as text, read back into OpenAI's ``tool_calls``.

The embedded engine's chat template puts the request's ``tools`` in the prompt, and
llama.cpp parses a call written in the template's own format. Small models often answer
with a JSON block instead: a fenced ```json block, ``<tool_call>…</tool_call>``, a bare
object or a list of them, shaped ``{"name", "arguments"}``, ``{"tool_call": …}``,
``{"tool_calls": [...]}`` or OpenAI's ``{"type": "function", "function": {…}}``.
:func:`parse_calls` finds such blocks in an answer; a block counts only when it names one
of the tools the request offered. Pure functions; the stream's side is :mod:`.toolstream`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Collection
from typing import Any

FENCE = "```"
TAG_OPEN, TAG_CLOSE = "<tool_call>", "</tool_call>"
OPENERS = (FENCE, TAG_OPEN)  # a block that may start anywhere in the answer
CLOSERS = {FENCE: FENCE, TAG_OPEN: TAG_CLOSE}
_FENCED = re.compile(r"```[A-Za-z_]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_TAGGED = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")

ToolCall = dict[str, Any]  # {"id", "type": "function", "function": {"name", "arguments"}}


def new_id() -> str:
    return "call_" + secrets.token_hex(12)


def offered(body: dict[str, Any]) -> frozenset[str] | None:
    """The names of the function tools a request offers; None when it offers none (or
    says ``tool_choice: "none"``): then nothing is read."""
    tools = body.get("tools")
    if not tools or not isinstance(tools, list) or body.get("tool_choice") == "none":
        return None
    names = set()
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            names.add(name)
    return frozenset(names) or None


def parse_calls(
    text: str, names: Collection[str], make_id: Callable[[], str] = new_id
) -> list[ToolCall] | None:
    """The calls written in ``text`` naming tools in ``names``; None when there are none."""
    calls: list[ToolCall] = []
    for block in blocks(text):
        calls += _calls_in(block, names, make_id)
    return calls or None


def blocks(text: str) -> list[str]:
    """The candidate blocks: tagged ones, fenced ones, else the whole answer if it is a
    bare JSON object or list."""
    found = [m.group(1) for m in _TAGGED.finditer(text)]
    if not found:
        found = [m.group(1) for m in _FENCED.finditer(text)]
    stripped = text.strip()
    if not found and stripped[:1] in ("{", "["):
        found = [stripped]
    return found


def _calls_in(block: str, names: Collection[str], make_id: Callable[[], str]) -> list[ToolCall]:
    value = _json(block.strip())
    if value is None:
        return []
    listed = value.get("tool_calls") if isinstance(value, dict) else None
    if isinstance(listed, list) and "name" not in value:
        value = listed
    items = value if isinstance(value, list) else [value]
    calls = [_call(item, names, make_id) for item in items]
    if not calls or any(call is None for call in calls):
        return []  # a list with anything but calls in it is not a list of calls
    return [call for call in calls if call is not None]


def _json(text: str) -> Any:
    """The JSON value at the start of ``text`` (text after it ignored); a doubled
    ``{{…}}`` (a template's escaping copied by the model) is read as ``{…}``."""
    for candidate in (text, text[1:-1] if text.startswith("{{") and text.endswith("}}") else ""):
        if not candidate:
            continue
        try:
            value, _ = json.JSONDecoder().raw_decode(candidate)
        except ValueError:
            continue
        return value
    return None


def _call(item: Any, names: Collection[str], make_id: Callable[[], str]) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    for wrapper in ("tool_call", "function_call", "function"):
        inner = item.get(wrapper)
        if isinstance(inner, dict) and "name" not in item:
            return _call(inner, names, make_id)
    name = item.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    arguments = _arguments(item)
    if arguments is None:
        return None
    return {"id": make_id(), "type": "function", "function": {"name": name, "arguments": arguments}}


def _arguments(item: dict[str, Any]) -> str | None:
    """The arguments as a JSON string of an object; None when they are not an object."""
    key = next((k for k in _ARGUMENT_KEYS if k in item), None)
    value = item.get(key, {}) if key else {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    return json.dumps(value, ensure_ascii=False)


def fix_response(result: dict[str, Any], names: Collection[str]) -> None:
    """A non-streamed answer whose content is a call becomes an answer with
    ``tool_calls`` (content null, finish_reason ``tool_calls``); any other is left as is."""
    for choice in result.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict) or message.get("tool_calls"):
            continue
        content = message.get("content")
        calls = parse_calls(content, names) if isinstance(content, str) else None
        if calls:
            message["content"] = None
            message["tool_calls"] = calls
            choice["finish_reason"] = "tool_calls"
