"""Virtual models on SQLite and PostgreSQL: the prompt an assistant sends, built from the
real knowledge base, the real memory tiers and the stored conversation; memory across
conversations and never across users; profiles made through the API.

The base model is the seam here: ``chat`` below stands in for it (the gateway passes a
call through its router), answering the memory-extraction prompt with JSON operations.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from enclave.assistants.conversations import Conversations, ProfileRows
from enclave.assistants.service import Assistants, Turn
from enclave.config import KnowledgeSettings, MemorySettings
from enclave.errors import ConfigError, Conflict, InvalidRequest, ModelNotFound
from enclave.identity import Actor
from enclave.knowledge.service import KnowledgeBases
from enclave.memory.service import MemoryService
from enclave.profiles import AssistantProfile
from enclave.store.repos import Store
from enclave.vectors.embedding import LocalEmbedder
from tests.faq import write_faq

pytestmark = pytest.mark.anyio

SUPPORT = AssistantProfile(
    name="support", model="base", system_prompt="You are StarRiver's support assistant.",
    knowledge=["faq"], memory="user", retrieval={"top_k": 2}, defaults={"temperature": 0.2},
)  # fmt: skip
PLAIN = AssistantProfile(name="plain", model="base", system_prompt="Be brief.", memory="off")
SHOP = Actor(user="shop")


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


class Model:
    """The base model: what it was asked, and the extraction answer it gives."""

    def __init__(self) -> None:
        self.asked: list[list[dict[str, str]]] = []
        self.operations: list[dict[str, Any]] = []

    async def __call__(self, model: str, messages: list[dict[str, str]]) -> str:
        self.asked.append(messages)
        return json.dumps({"operations": self.operations})


class Harness:
    def __init__(self, assistants: Assistants, model: Model, tasks: list[asyncio.Task[None]]):
        self.assistants = assistants
        self.model = model
        self.tasks = tasks
        self.shown = ""  # the last answer as the client got it

    async def ask(
        self, profile: AssistantProfile, text: str, *, user: str | None = None,
        conversation: str = "c1", answer: str = "OK.", history: list[dict[str, Any]] | None = None,
    ) -> Turn:  # fmt: skip
        body: dict[str, Any] = {
            "model": profile.public,
            "messages": [*(history or []), {"role": "user", "content": text}],
            "metadata": {"conversation_id": conversation},
        }
        if user:
            body["user"] = user
        turn = await self.assistants.prepare(profile, body, owner="shop", headers={}, actor=SHOP)
        shown = {"choices": [{"message": {"role": "assistant", "content": answer}}]}
        self.shown = turn.finish_response(shown)["choices"][0]["message"]["content"]
        await self.assistants.remember(turn)
        await asyncio.gather(*self.tasks)  # the memory update, done in the background
        self.tasks.clear()
        return turn


@pytest.fixture
async def harness(store: Store, embedder: LocalEmbedder, tmp_path: Path) -> Harness:
    kbs = KnowledgeBases(store, KnowledgeSettings(), embedders=lambda *_: embedder)
    await kbs.create("faq")
    await kbs.add_paths("faq", [write_faq(tmp_path / "faq")[0].parent])
    memory = await MemoryService.open(store, embedder, MemorySettings(), tmp_path)
    tasks: list[asyncio.Task[None]] = []
    model = Model()

    async def opened() -> MemoryService:
        return memory

    def spawn(work: Coroutine[Any, Any, None]) -> None:
        tasks.append(asyncio.ensure_future(work))

    assistants = Assistants(
        lambda: [SUPPORT, PLAIN], ProfileRows(store), Conversations(store),
        knowledge=lambda: kbs, memory=opened, chat=model, spawn=spawn,
    )  # fmt: skip
    return Harness(assistants, model, tasks)


async def test_the_prompt_is_the_profile_the_knowledge_and_the_question(harness: Harness) -> None:
    question = "How long is the warranty of the S2?"
    turn = await harness.ask(SUPPORT, question)
    kbs: KnowledgeBases = harness.assistants._knowledge()
    hits = await kbs.search(["faq"], question, k=2)
    assert hits[0].document == "warranty.txt"
    labels = [f"{h.document} § {h.heading}" if h.heading else h.document for h in hits]
    sources = "\n\n".join(
        f"[{i}] {label}\n{hit.text.strip()}"
        for i, (label, hit) in enumerate(zip(labels, hits, strict=True), 1)
    )
    system = (
        "You are StarRiver's support assistant.\n\n## Knowledge\n"
        "Answer from the sources below when they are relevant, and cite each one you use as "
        "[1], [2], … right after the sentence it supports. If they do not hold the answer, "
        "say so rather than guess.\n\n" + sources
    )
    assert turn.body == {
        "model": "base",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "temperature": 0.2,  # the profile's default
    }
    assert [c["document"] for c in turn.citations()] == [h.document for h in hits]
    footer = "; ".join(f"[{i}] {label}" for i, label in enumerate(labels, 1))
    assert harness.shown == f"OK.\n\nSources: {footer}"  # no markers: every source
    assert turn.answer == ["OK."]  # what is stored and fed back to models


async def test_an_answer_citing_by_marker_lists_only_those_sources(harness: Harness) -> None:
    question = "How long is the warranty of the S2?"
    turn = await harness.ask(SUPPORT, question, answer="Three years [2]. 三年【不是标记】.")
    second = turn.sources[1]
    assert harness.shown == f"Three years [2]. 三年【不是标记】.\n\nSources: [2] {second.label}"
    assert len(turn.citations()) == 2  # the field keeps all that were given
    await harness.ask(SUPPORT, question, answer="Yes [1，2] and [7].")  # [7]: none
    assert harness.shown.endswith(f"Sources: [1] {turn.sources[0].label}; [2] {second.label}")


async def test_the_client_decides_sampling_and_its_system_message_is_folded_in(
    harness: Harness,
) -> None:
    body = {
        "model": PLAIN.public, "temperature": 0.9, "user": "alice",
        "messages": [{"role": "system", "content": "Answer in French."},
                     {"role": "user", "content": "hi"}],
    }  # fmt: skip
    turn = await harness.assistants.prepare(PLAIN, body, owner="shop", headers={}, actor=SHOP)
    assert turn.body["temperature"] == 0.9
    assert "user" not in turn.body
    assert turn.body["messages"] == [
        {"role": "system", "content": "Be brief.\n\nAnswer in French."},
        {"role": "user", "content": "hi"},
    ]
    assert turn.subject == "shop/alice"
    assert turn.memory_subject is None  # memory off: nothing recalled, nothing kept


async def test_stored_history_goes_with_a_new_message_only(harness: Harness) -> None:
    await harness.ask(PLAIN, "first question", answer="first answer")
    turn = await harness.ask(PLAIN, "second question")
    assert turn.body["messages"][1:] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    # a client that sends its own history gets exactly that
    own = [{"role": "user", "content": "q0"}, {"role": "assistant", "content": "a0"}]
    turn = await harness.ask(PLAIN, "third", history=own)
    assert turn.body["messages"][1:] == [*own, {"role": "user", "content": "third"}]
    rows, _ = await harness.assistants.conversations.listing("shop")
    assert [(row.external_id, count) for row, count in rows] == [("c1", 6)]


async def test_a_fact_told_once_is_recalled_in_another_conversation_for_that_user_only(
    harness: Harness,
) -> None:
    fact = "Alice keeps her S2 in the Shanghai office."
    harness.model.operations = [{"op": "ADD", "text": fact, "kind": "fact"}]
    await harness.ask(SUPPORT, "Our S2 sits in the Shanghai office.", user="alice",
                      conversation="a-1")  # fmt: skip
    extraction = harness.model.asked[-1]
    assert "Our S2 sits in the Shanghai office." in extraction[-1]["content"]
    harness.model.operations = []

    later = await harness.ask(SUPPORT, "Where is my S2 again?", user="alice", conversation="a-2")
    system = later.body["messages"][0]["content"]
    assert f"## What you know about this user\n- {fact}" in system
    assert (
        "## Recent exchanges with this user in other conversations\n"
        "User: Our S2 sits in the Shanghai office.\nAssistant: OK.\n\n## Knowledge" in system
    )
    for user in ("bob", None):  # another customer of the same key, and the key's own user
        other = await harness.ask(SUPPORT, "Where is my S2 again?", user=user, conversation="b")
        assert "Shanghai" not in other.body["messages"][0]["content"]


async def test_unknown_assistants_and_bad_conversation_ids_are_refused(harness: Harness) -> None:
    with pytest.raises(ModelNotFound, match="no assistant 'assistant/nope'"):
        await harness.assistants.resolve("assistant/nope")
    assert await harness.assistants.resolve("fake-model") is None  # a model pool, not ours
    body = {"model": PLAIN.public, "messages": [{"role": "user", "content": "x"}],
            "metadata": {"conversation_id": "x" * 129}}  # fmt: skip
    with pytest.raises(InvalidRequest, match="1 to 128 characters"):
        await harness.assistants.prepare(PLAIN, body, owner="shop", headers={}, actor=SHOP)


async def test_a_missing_knowledge_base_is_named_in_the_error(harness: Harness) -> None:
    orphan = AssistantProfile(name="orphan", model="fake-model", knowledge=["faq", "gone"])
    question = {"role": "user", "content": "How long is the warranty?"}
    body = {"model": orphan.public, "messages": [question]}
    with pytest.raises(ConfigError, match=r"assistant/orphan is misconfigured: .*'gone'") as err:
        await harness.assistants.prepare(orphan, body, owner="shop", headers={}, actor=SHOP)
    assert err.value.status == 500


async def test_profiles_made_through_the_api(harness: Harness) -> None:
    assistants = harness.assistants
    helper = AssistantProfile(name="helper", model="base", knowledge=["faq"])
    assert await assistants.put(helper) is True
    assert await assistants.put(helper.model_copy(update={"system_prompt": "Hi."})) is False
    found = await assistants.profiles()
    assert found["helper"][0].system_prompt == "Hi."
    assert found["helper"][1] == "api"
    assert found["support"][1] == "config"
    assert await assistants.resolve("assistant/helper") == found["helper"][0]
    with pytest.raises(Conflict, match="defined in the config file"):
        await assistants.put(SUPPORT)
    await assistants.delete("helper")
    assert "helper" not in await assistants.profiles()


def test_profiles_take_only_sampling_defaults() -> None:
    with pytest.raises(ValueError, match="only sampling fields, not messages"):
        AssistantProfile(name="x", model="m", defaults={"messages": []})
