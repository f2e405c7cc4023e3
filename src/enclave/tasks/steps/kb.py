"""``kb_search``: the chunks of one or more knowledge bases that best answer a query."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from enclave.errors import InvalidRequest
from enclave.tasks.registry import StepKind
from enclave.tasks.steps.options import Options

if TYPE_CHECKING:
    from enclave.knowledge.service import Hit, Mode
    from enclave.tasks.context import RunContext


class SearchOptions(Options):
    kb: str = Field(description="a knowledge base, or several separated by commas")
    query: str = Field(description="what to look for")
    k: int = Field(5, ge=1, le=100, description="chunks to return")
    mode: Literal["hybrid", "vector", "keyword"] = Field("hybrid")


def kb_names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise InvalidRequest("name at least one knowledge base", param="kb")
    return names


def hit_json(hit: Hit) -> dict[str, Any]:
    return {"kb": hit.kb, "source": hit.source, "document": hit.document,
            "heading": hit.heading, "text": hit.text, "score": hit.score}  # fmt: skip


def hits_text(hits: list[dict[str, Any]]) -> str:
    """The hits as numbered, cited passages (what a prompt or a report shows)."""
    parts = []
    for number, hit in enumerate(hits, 1):
        where = f"{hit['document']} § {hit['heading']}" if hit["heading"] else hit["document"]
        parts.append(f"[{number}] {where} ({hit['kb']}, score {hit['score']:.3f})\n{hit['text']}")
    return "\n\n".join(parts)


async def search(
    ctx: RunContext, kb: str, query: str, k: int, mode: Mode = "hybrid"
) -> list[dict[str, Any]]:
    """The hits of ``query`` in the knowledge bases ``kb`` names, as JSON."""
    hits = await ctx.knowledge().search(kb_names(kb), query, k=k, mode=mode)
    return [hit_json(hit) for hit in hits]


async def _run(ctx: RunContext, opts: SearchOptions) -> dict[str, Any]:
    hits = await search(ctx, opts.kb, opts.query, opts.k, opts.mode)
    return {"hits": hits, "text": hits_text(hits)}


KB_SEARCH = StepKind(
    name="kb_search",
    description="search knowledge bases; hits with their sources, and as cited text",
    options=SearchOptions,
    run=_run,
)
