"""The conversation store the web console pages through, on SQLite and PostgreSQL:
keyset pages newest first with ties on ``updated_at`` broken by id, title search in any
case, rename, truncation, and answers' ``meta``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from enclave.assistants.conversations import Conversations
from enclave.errors import InvalidRequest
from enclave.store.repos import Store

pytestmark = pytest.mark.anyio

NOON = datetime(2026, 12, 6, 12, tzinfo=UTC)


async def test_pages_cover_every_conversation_once_even_with_equal_times(store: Store) -> None:
    conversations = Conversations(store, clock=lambda: NOON)  # every row the same time
    made = []
    for i in range(7):
        row = await conversations.open("bob", f"c{i}", owner="bob", assistant="m",
                                       title=f"Trip {i}" if i % 2 else f"trip NOTES {i}",
                                       kind="model")  # fmt: skip
        made.append(row.external_id)
    await conversations.open("amy", "x", owner="amy", assistant="m", title="trip")
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await conversations.listing("bob", limit=3, cursor=cursor)
        seen += [row.external_id for row, _ in page]
        if cursor is None:
            break
    assert seen == made[::-1]
    found, more = await conversations.listing("bob", q="TRIP n")
    assert [row.external_id for row, _ in found] == ["c6", "c4", "c2", "c0"]
    assert more is None
    assert (await conversations.listing("bob", q="_"))[0] == []  # a literal underscore
    with pytest.raises(InvalidRequest):
        await conversations.listing("bob", cursor="not-a-cursor")


async def test_rename_truncate_and_meta(store: Store) -> None:
    conversations = Conversations(store)
    row = await conversations.open("bob", "c", owner="bob", assistant="m", title="", kind="model")
    meta = {"model": "m", "upstream": "u", "tokens_in": 3, "tokens_out": 4, "ttft_ms": 1.5,
            "latency_ms": 9.0}  # fmt: skip
    for n in range(3):
        await conversations.append(row, f"q{n}", f"a{n}", [], meta)
    messages = await conversations.messages(row)
    assert [m.content for m in messages] == ["q0", "a0", "q1", "a1", "q2", "a2"]
    assert [m.meta for m in messages[:2]] == [None, meta]
    assert (await conversations.get("bob", "c")).title == "q0"  # opened without a title
    renamed = await conversations.rename(row, "  a  new\nname ")
    assert renamed.title == "a new name"
    assert await conversations.truncate(row, 3) == 3
    assert [m.content for m in await conversations.messages(row)] == ["q0", "a0", "q1"]
    assert await conversations.truncate(row, 10) == 0
    assert await conversations.count(row) == 3
    [(listed, count)], _ = await conversations.listing("bob")
    assert (listed.kind, listed.assistant, count) == ("model", "m", 3)
