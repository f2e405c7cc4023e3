"""``agent``: the model works toward a goal with tools until it answers (see
:mod:`enclave.tasks.agent`), within ``tasks.limits.agent_max_turns`` model calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from enclave.errors import InvalidRequest
from enclave.tasks import registry
from enclave.tasks.agent import MAX_TURNS, run_agent
from enclave.tasks.registry import StepKind
from enclave.tasks.steps.llm import DEFAULT_MODEL
from enclave.tasks.steps.options import Options

if TYPE_CHECKING:
    from enclave.tasks.context import RunContext

DEFAULT_SYSTEM = (
    "You are a careful agent working for the user. Use the tools to look things up and "
    "to act; when a tool answers with an error, correct the call. Never call a tool "
    "again with the same arguments: use the result you have. Once you have what you "
    "need, answer in plain text and call no more tools."
)


class AgentOptions(Options):
    goal: str = Field(description="what the agent must do (the user message)")
    tools: list[str] = Field(default_factory=list, description="names of the tools it may use")
    model: str = Field(DEFAULT_MODEL, description="a model or alias as on /v1")
    system: str | None = Field(None, description="the system message (a default one if not)")
    max_turns: int | None = Field(
        None, ge=1, description="model calls at most (at most tasks.limits.agent_max_turns)"
    )
    max_tokens: int | None = Field(None, ge=1, description="completion tokens per model call")
    temperature: float | None = Field(None, ge=0, le=2, description="of every model call")


def offered_tools(names: list[str]) -> list[registry.Tool]:
    """The tools named; an unknown name is refused, naming the option."""
    tools = []
    for index, name in enumerate(names):
        tool = registry.tool(name)
        if tool is None:
            known = ", ".join(sorted(registry.tool_names()))
            raise InvalidRequest(f"there is no tool {name!r} ({known})", param=f"tools[{index}]")
        tools.append(tool)
    return tools


async def _run(ctx: RunContext, opts: AgentOptions) -> dict[str, Any]:
    limit = ctx.limits.agent_max_turns
    if opts.max_turns is not None and opts.max_turns > limit:
        raise InvalidRequest(
            f"max_turns {opts.max_turns} is over {MAX_TURNS} ({limit})", param="max_turns"
        )
    outcome = await run_agent(
        ctx,
        goal=opts.goal,
        tools=offered_tools(opts.tools),
        model=opts.model,
        system=opts.system if opts.system is not None else DEFAULT_SYSTEM,
        max_turns=opts.max_turns or limit,
        step=ctx.step,
        sampling={k: v for k, v in (("max_tokens", opts.max_tokens),
                                    ("temperature", opts.temperature)) if v is not None},
    )  # fmt: skip
    return {"text": outcome.text, "turns": outcome.turns, "tool_calls": outcome.tool_calls}


AGENT = StepKind(
    name="agent",
    description="the model calls tools until it reaches the goal (bounded turns and tokens)",
    options=AgentOptions,
    run=_run,
)
