"""Review of issue 17's audit writer: values an upstream reports that the integer
columns cannot hold as they are (a token count beyond int32, ``true``) must neither fail
the other records of the batch nor be stored as something else than what was hashed
(``enclave audit verify`` would then call the record edited)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from enclave.audit import AuditWriter, verify_store
from enclave.store.models import AuditRecord
from enclave.store.repos import Store
from tests.storage.test_audit import KEY, entry, seqs

pytestmark = pytest.mark.anyio


async def test_integers_the_columns_cannot_hold_fail_no_one(store: Store) -> None:
    writer = AuditWriter(store.sessions, KEY, strict=True)
    try:
        await writer.write(entry(1))  # the head is known: the next batch is one statement
        await asyncio.gather(
            writer.write(entry(2)),
            writer.write(entry(3, tokens_in=2**40)),
            writer.write(entry(4, tokens_out=True)),
            writer.write(entry(5, latency_ms=-(2**70))),
        )
    finally:
        await writer.aclose()
    assert await seqs(store) == [1, 2, 3, 4, 5]
    verdict = await verify_store(store.sessions, KEY)
    assert verdict.ok, verdict.reason
    async with store.sessions() as session:
        rows = (await session.execute(select(AuditRecord).order_by(AuditRecord.seq))).scalars()
        by_seq = {row.seq: row for row in rows}
    assert (by_seq[3].tokens_in, by_seq[3].detail["out_of_range"]) == (None, {"tokens_in": 2**40})
    assert (by_seq[4].tokens_out, by_seq[4].detail["out_of_range"]) == (None, {"tokens_out": True})
    assert by_seq[5].detail["out_of_range"] == {"latency_ms": -(2**70)}
    assert by_seq[2].tokens_in == entry(2).tokens_in
