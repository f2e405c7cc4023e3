"""The ``http_get`` tool: GET an allowlisted intranet URL (``tasks.http_allowlist``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from enclave.tasks.registry import Tool
from enclave.tasks.steps.http import fetch

if TYPE_CHECKING:
    from enclave.tasks.context import RunContext


class GetArgs(BaseModel):
    url: str = Field(description="an intranet URL the administrator allowed")


async def _run(ctx: RunContext, args: GetArgs) -> str:
    answer = await fetch(ctx, args.url)
    return f"HTTP {answer.status}\n{answer.text}"


HTTP_GET = Tool(
    name="http_get",
    description="GET an intranet URL the administrator allowed; status line and body.",
    parameters=GetArgs,
    run=_run,
)
