"""The agent loop: the model and its tools, turn after turn, until it answers in words.

Each turn is one chat completion through :meth:`RunContext.chat` (its tokens count
against the run's ``tasks.limits.max_tokens``) offering the tools' schemas. When the
answer has ``tool_calls``, each is run and its result goes back as a ``tool`` message;
when it has none, its content is the agent's answer. A turn past ``max_turns``
(``tasks.limits.agent_max_turns`` or lower) fails the step, naming the limit.

Small models often call the same tool again once they have its result instead of
answering. So the last allowed turn, and any turn after one whose calls all repeat calls
already made (same tool, same arguments; they are not run again), offers no tools and
asks for the answer in words (:data:`ANSWER_NOW`) with the conversation so far.

A tool call the model gets wrong — an unknown tool, arguments that are not JSON or do
not fit the tool's parameters, a refusal of :mod:`enclave.tasks.safety`, a missing
file — goes back to the model as the tool's result (``error: ...``), so it can correct
itself; it does not fail the run. Every call is a ``tool_call`` event. Results are cut
to ``tasks.limits.tool_result_chars``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from enclave.errors import EnclaveError, TooManyRequests, UpstreamError
from enclave.tasks import safety

if TYPE_CHECKING:
    from enclave.tasks.context import RunContext
    from enclave.tasks.registry import Tool

MAX_TURNS = "tasks.limits.agent_max_turns"
MAX_CALLS = "tasks.limits.agent_max_tool_calls"
RESULT_CHARS = "tasks.limits.tool_result_chars"
EVENT_CHARS = 2000  # a tool_call event shows this much of the arguments and the result
ANSWER_NOW = "Answer now, in plain text, with what the tools returned above. Do not call a tool."


@dataclass
class Outcome:
    text: str
    turns: int
    tool_calls: int


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    arguments: str


class ToolFailed(Exception):
    """A tool call that goes back to the model as an error text."""


async def run_agent(
    ctx: RunContext,
    *,
    goal: str,
    tools: list[Tool],
    model: str,
    system: str | None,
    max_turns: int,
    step: str = "",
    sampling: dict[str, Any] | None = None,
) -> Outcome:
    """Ask ``model`` to reach ``goal`` with ``tools``; the answer once it stops calling.
    ``sampling`` (``temperature``, ``max_tokens``) goes in every model call."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": goal})
    offered = {tool.name: tool for tool in tools}
    schemas = [tool.schema() for tool in tools]
    calls = 0
    made: set[tuple[str, str]] = set()  # (name, arguments) of the calls run so far
    answer_now = False
    for turn in range(1, max_turns + 1):
        final = bool(schemas) and (answer_now or turn == max_turns)
        body: dict[str, Any] = {"model": model, "messages": messages, **(sampling or {})}
        if final:
            body["messages"] = [*messages, {"role": "user", "content": ANSWER_NOW}]
        elif schemas:
            body["tools"] = schemas
        message = _message(await ctx.chat(body))
        wanted = _calls(message)
        if not wanted:
            content = message.get("content")
            return Outcome(content if isinstance(content, str) else "", turn, calls)
        keys = {_key(call) for call in wanted}
        if final or keys <= made:  # nothing new: ask for the answer, without tools
            answer_now = True
            continue
        made |= keys
        messages.append(_assistant(message, wanted))
        for call in wanted:
            if calls < ctx.limits.agent_max_tool_calls:
                result = await _call(ctx, offered, call, step)
                calls += 1
            else:  # every call gets its answer; past the limit, that it was not run
                result = f"error: not run: {calls} tool calls made, the limit ({MAX_CALLS})"
                answer_now = True
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        await ctx.progress(message=f"agent turn {turn}: {calls} tool calls so far")
    raise TooManyRequests(
        f"the agent did not finish within {max_turns} model calls "
        f"({MAX_TURNS}, or the step's max_turns)", param="max_turns",
    )  # fmt: skip


def _key(call: Call) -> tuple[str, str]:
    """What makes two calls the same: the tool and its arguments (JSON key order aside)."""
    try:
        arguments = json.dumps(json.loads(call.arguments or "{}"), sort_keys=True)
    except ValueError:
        arguments = call.arguments
    return call.name, arguments


def _message(response: dict[str, Any]) -> dict[str, Any]:
    try:
        message = response["choices"][0]["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise UpstreamError(f"the model's answer has no message: {exc!r}") from exc
    if not isinstance(message, dict):
        raise UpstreamError("the model's answer has no message")
    return message


def _calls(message: dict[str, Any]) -> list[Call]:
    found = []
    for index, item in enumerate(message.get("tool_calls") or []):
        entry = item if isinstance(item, dict) else {}
        function = entry.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        call_id = entry.get("id") or f"call_{index}"
        found.append(Call(str(call_id), str(function.get("name")), arguments))
    return found


def _assistant(message: dict[str, Any], calls: list[Call]) -> dict[str, Any]:
    """The assistant turn as it goes back to the model (ids and JSON-text arguments)."""
    return {
        "role": "assistant",
        "content": message.get("content") or None,
        "tool_calls": [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ],
    }  # fmt: skip


async def _call(ctx: RunContext, offered: dict[str, Tool], call: Call, step: str) -> str:
    event: dict[str, Any] = {"step": step, "name": call.name,
                             "arguments": _shown(call.arguments)}  # fmt: skip
    try:
        result = await _run_tool(ctx, offered, call)
    except ToolFailed as exc:
        text = f"error: {exc}"
        event["error"] = str(exc)[:EVENT_CHARS]
    else:
        text = safety.cut(result, ctx.limits.tool_result_chars, RESULT_CHARS)
        event["result"] = text[:EVENT_CHARS]
    await ctx.emit("tool_call", **event)
    return text


def _shown(arguments: str) -> Any:
    """The arguments as the event shows them: the JSON object, or the text cut short."""
    if len(arguments) <= EVENT_CHARS:
        try:
            return json.loads(arguments)
        except ValueError:
            pass
    return arguments[:EVENT_CHARS]


async def _run_tool(ctx: RunContext, offered: dict[str, Tool], call: Call) -> str:
    tool = offered.get(call.name)
    if tool is None:
        names = ", ".join(sorted(offered)) or "none"
        raise ToolFailed(f"there is no tool {call.name!r}; the tools are: {names}")
    try:
        raw = json.loads(call.arguments or "{}")
    except ValueError as exc:
        raise ToolFailed(f"the arguments are not JSON: {exc}") from exc
    try:
        arguments = tool.parameters.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
        raise ToolFailed(f"bad arguments for {tool.name}: {problems}") from exc
    try:
        return await tool.run(ctx, arguments)
    except (EnclaveError, OSError, ValueError) as exc:
        raise ToolFailed(getattr(exc, "message", None) or str(exc) or type(exc).__name__) from exc
