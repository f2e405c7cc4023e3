"""The ``run_command`` tool: a program of ``tasks.commands`` (no shell), by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from enclave.tasks.registry import Tool
from enclave.tasks.steps.command import run_command

if TYPE_CHECKING:
    from enclave.tasks.context import RunContext


class CommandArgs(BaseModel):
    name: str = Field(description="the command's name (one the administrator configured)")
    args: list[str] = Field(default_factory=list, description="arguments appended to it")


async def _run(ctx: RunContext, args: CommandArgs) -> str:
    done = await run_command(ctx, args.name, args.args)
    return f"exit code {done.exit_code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


RUN_COMMAND = Tool(
    name="run_command",
    description="Run a command the administrator allowed, by name; exit code and output.",
    parameters=CommandArgs,
    run=_run,
)
