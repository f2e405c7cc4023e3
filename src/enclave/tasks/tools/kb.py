"""The ``kb_search`` tool: cited passages of knowledge bases for a query."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from enclave.tasks.registry import Tool
from enclave.tasks.steps.kb import hits_text, search

if TYPE_CHECKING:
    from enclave.tasks.context import RunContext


class SearchArgs(BaseModel):
    kb: str = Field(description="a knowledge base name, or several separated by commas")
    query: str = Field(description="what to look for")
    k: int = Field(5, ge=1, le=20, description="passages to return")


async def _run(ctx: RunContext, args: SearchArgs) -> str:
    hits = await search(ctx, args.kb, args.query, args.k)
    return hits_text(hits) or "nothing found"


KB_SEARCH = Tool(
    name="kb_search",
    description="Search knowledge bases; returns numbered passages with their sources.",
    parameters=SearchArgs,
    run=_run,
)
