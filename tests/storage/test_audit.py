"""The audit chain in a real database (SQLite and PostgreSQL): writing with group commit,
tampering caught by ``verify_store``, pruning through checkpoints, export, and the
``enclave audit`` commands (SQLite, a temporary ``ENCLAVE_HOME``)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import io
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from enclave.audit import (
    AuditEntry,
    AuditWriter,
    export,
    prune,
    verify_store,
)
from enclave.audit.chain import RECORD_FIELDS, iso_utc, link, sign
from enclave.audit.ops import read_checkpoint, read_head, retain
from enclave.errors import AuditTampered, AuditUnavailable
from enclave.store.models import AuditCheckpoint, AuditHead, AuditRecord
from enclave.store.repos import Store, open_store

pytestmark = pytest.mark.anyio

KEY = bytes(range(32))
DAY0 = datetime(2025, 1, 1, tzinfo=UTC)


def entry(n: int, *, at: datetime | None = None, **changes: Any) -> AuditEntry:
    base = AuditEntry(
        ts=iso_utc(at or DAY0 + timedelta(seconds=n)),
        kind="api",
        action=f"POST /v1/chat/completions #{n}",
        request_id=f"req-{n}",
        user="alice",
        key_prefix="sk-abc",
        client_ip="10.0.0.1",
        model="qwen",
        member="gpu1",
        status=200,
        tokens_in=10 + n,
        tokens_out=20,
        latency_ms=30,
        images=["ab" * 32],
        content="cd" * 32,
        detail={"n": n, "ratio": 0.1, "nested": {"b": [1, "二"]}},
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
async def writer(store: Store) -> AsyncIterator[AuditWriter]:
    audit = AuditWriter(store.sessions, KEY, strict=True)
    audit.start()
    try:
        yield audit
    finally:
        await audit.aclose()


async def write_many(writer: AuditWriter, count: int, start: int = 1) -> None:
    await asyncio.gather(*(writer.write(entry(n)) for n in range(start, start + count)))


async def seqs(store: Store) -> list[int]:
    async with store.sessions() as session:
        return list((await session.scalars(select(AuditRecord.seq).order_by("seq"))).all())


async def sql(store: Store, statement: Any, **params: Any) -> None:
    """A change made directly in the database, bypassing enclave."""
    async with store.engine.begin() as connection:
        await connection.execute(statement, params)


async def broken(store: Store) -> tuple[int | None, str]:
    verdict = await verify_store(store.sessions, KEY)
    assert not verdict.ok, verdict
    return verdict.broken_seq, verdict.reason


# -- writing ------------------------------------------------------------------------


async def test_many_concurrent_writes_make_one_chain_in_few_transactions(
    store: Store, writer: AuditWriter
) -> None:
    await write_many(writer, 300)
    assert await seqs(store) == list(range(1, 301))
    assert writer.batches < 300  # grouped: many records per commit
    assert (writer.written, writer.failed) == (300, 0)
    verdict = await verify_store(store.sessions, KEY, batch=7)  # several pages
    assert (verdict.ok, verdict.checked, verdict.reason) == (True, 300, "300 records verified")


async def test_records_hold_what_was_written(store: Store, writer: AuditWriter) -> None:
    written = entry(1, user="张三", images=["aa" * 32, "bb" * 32])
    await writer.write(written)
    async with store.sessions() as session:
        row = (await session.execute(select(AuditRecord))).scalar_one()
    assert (row.seq, row.user, row.images, row.detail) == (
        1,
        "张三",
        written.images,
        written.detail,
    )
    assert row.ts == written.ts
    assert row.hash == link(row.prev_hash, 1, written)


async def test_an_empty_store_verifies(store: Store) -> None:
    verdict = await verify_store(store.sessions, KEY)
    assert (verdict.ok, verdict.checked) == (True, 0)


async def test_two_writers_on_one_database_serialise(database_url: str) -> None:
    """Two gateway replicas: each its own engine and writer, one chain."""
    stores = [await open_store(database_url) for _ in range(2)]
    writers = [AuditWriter(s.sessions, KEY, strict=True) for s in stores]
    try:
        await asyncio.gather(*(writers[n % 2].write(entry(n)) for n in range(1, 121)))
        for w in writers:
            await w.aclose()
        verdict = await verify_store(stores[0].sessions, KEY)
        assert (verdict.ok, verdict.checked) == (True, 120)
    finally:
        for w in writers:
            await w.aclose()
        for s in stores:
            await s.aclose()


async def test_a_strict_write_is_durable_when_it_returns(
    database_url: str, store: Store, writer: AuditWriter
) -> None:
    await writer.write(entry(1))
    other = await open_store(database_url, migrate=False)  # another process, as it were
    try:
        assert await seqs(other) == [1]
        assert (await verify_store(other.sessions, KEY)).ok
    finally:
        await other.aclose()


async def test_a_lax_write_returns_at_once_and_is_committed_by_aclose(store: Store) -> None:
    audit = AuditWriter(store.sessions, KEY, strict=False)
    for n in range(1, 51):
        await audit.write(entry(n))
    await audit.aclose()
    assert await seqs(store) == list(range(1, 51))
    assert (await verify_store(store.sessions, KEY)).ok
    with pytest.raises(AuditUnavailable, match="closed"):
        await audit.write(entry(51))


async def test_a_full_queue_refuses_writes(store: Store) -> None:
    audit = AuditWriter(store.sessions, KEY, strict=False, max_queue=1)
    await audit.write(entry(1))  # not strict: queued, the writer has not run yet
    with pytest.raises(AuditUnavailable, match="not keeping up"):
        await audit.write(entry(2))
    await audit.aclose()
    assert await seqs(store) == [1]
    assert (audit.written, audit.failed) == (1, 1)


async def test_values_are_fitted_to_their_columns(store: Store, writer: AuditWriter) -> None:
    """A client chooses model names and request ids: too long, or with NUL, still recorded."""
    await writer.write(
        entry(1, model="m" * 1000, request_id="r\x00" * 100, ts="2025-01-01T08:00:00+08:00")
    )
    async with store.sessions() as session:
        row = (await session.execute(select(AuditRecord))).scalar_one()
    assert row.model == "m" * 256
    assert row.request_id == "r" * 64
    assert row.ts == "2025-01-01T00:00:00.000000Z"
    assert (await verify_store(store.sessions, KEY)).ok


# -- failures do not break the chain -----------------------------------------------


async def test_a_bad_entry_fails_alone_and_the_chain_stays_whole(
    store: Store, writer: AuditWriter
) -> None:
    bad = entry(0, action=None)  # violates NOT NULL
    results = await asyncio.gather(
        *(writer.write(entry(n)) for n in range(1, 6)),
        writer.write(bad),
        *(writer.write(entry(n)) for n in range(6, 11)),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results].count("AuditUnavailable") == 1
    assert isinstance(results[5], AuditUnavailable)
    assert results[5].status == 503
    assert await seqs(store) == list(range(1, 11))
    await writer.write(entry(11))
    verdict = await verify_store(store.sessions, KEY)
    assert (verdict.ok, verdict.checked) == (True, 11)


async def test_a_transaction_failing_midway_rolls_back_whole(
    database_url: str, store: Store, writer: AuditWriter
) -> None:
    await write_many(writer, 3)
    await _fail_head_updates(store, on=True)
    results = await asyncio.gather(
        *(writer.write(entry(n)) for n in range(4, 8)), return_exceptions=True
    )
    assert all(isinstance(r, AuditUnavailable) for r in results)
    assert await seqs(store) == [1, 2, 3]  # the inserts were rolled back
    await _fail_head_updates(store, on=False)
    await write_many(writer, 3, start=8)
    assert await seqs(store) == [1, 2, 3, 4, 5, 6]
    assert (await verify_store(store.sessions, KEY)).ok


async def _fail_head_updates(store: Store, *, on: bool) -> None:
    """A trigger that fails the head's update, after the records were inserted."""
    sqlite = store.engine.dialect.name == "sqlite"
    if sqlite and on:
        statements = [
            "CREATE TRIGGER fail_head BEFORE UPDATE ON audit_head WHEN NEW.seq <> OLD.seq "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ]
    elif on:
        statements = [
            "CREATE FUNCTION fail_head() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
            "CREATE TRIGGER fail_head BEFORE UPDATE ON audit_head FOR EACH ROW "
            "WHEN (NEW.seq <> OLD.seq) EXECUTE FUNCTION fail_head()",
        ]
    else:
        statements = ["DROP TRIGGER fail_head" + ("" if sqlite else " ON audit_head")]
    async with store.engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement))


async def test_a_lost_connection_is_replaced(store: Store, writer: AuditWriter) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL can cut another session's connection; SQLite has none")
    await write_many(writer, 2)
    await sql(
        store,
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ),
    )
    await writer.write(entry(3))  # no error: one more try on a new connection
    assert await seqs(store) == [1, 2, 3]
    assert (await verify_store(store.sessions, KEY)).ok


async def test_the_writer_refuses_to_extend_a_forged_head(
    store: Store, writer: AuditWriter
) -> None:
    await write_many(writer, 3)
    await sql(store, update(AuditHead).values(signature="0" * 64))
    with pytest.raises(AuditUnavailable, match="invalid signature"):
        await writer.write(entry(4))
    assert await seqs(store) == [1, 2, 3]


# -- tampering ----------------------------------------------------------------------

EDITS: dict[str, Any] = {
    "ts": "2031-01-01T00:00:00.000000Z",
    "kind": "admin",
    "action": "nothing.to.see",
    "request_id": "other",
    "user": "mallory",
    "key_prefix": None,
    "client_ip": "10.6.6.6",
    "model": "other",
    "member": "gpu9",
    "status": 404,
    "tokens_in": 0,
    "tokens_out": 999,
    "latency_ms": None,
    "images": [],
    "content": "something else",
    "detail": {"n": 0},
    "prev_hash": "f" * 64,
    "hash": "e" * 64,
}


async def test_editing_any_column_of_a_middle_record_names_it(
    store: Store, writer: AuditWriter
) -> None:
    assert set(EDITS) == set(RECORD_FIELDS) - {"seq"}
    await write_many(writer, 9)
    async with store.sessions() as session:
        original = (
            await session.execute(select(AuditRecord).where(AuditRecord.seq == 5))
        ).scalar_one()
        values = {name: getattr(original, name) for name in EDITS}
    for name, value in EDITS.items():
        await sql(store, update(AuditRecord).where(AuditRecord.seq == 5).values({name: value}))
        seq, reason = await broken(store)
        assert seq == 5, (name, reason)
        assert reason.startswith("record 5 (")
        await sql(
            store, update(AuditRecord).where(AuditRecord.seq == 5).values({name: values[name]})
        )
        assert (await verify_store(store.sessions, KEY)).ok, name


async def test_a_raw_sql_edit_is_named_with_the_record(store: Store, writer: AuditWriter) -> None:
    await write_many(writer, 5)
    await sql(store, text("""UPDATE audit SET "user" = 'mallory' WHERE seq = 3"""))
    seq, reason = await broken(store)
    assert seq == 3
    ts = iso_utc(DAY0 + timedelta(seconds=3))
    assert reason == (
        f"record 3 ({ts}, POST /v1/chat/completions #3): edited: "
        "its hash does not match its content"
    )


async def test_moving_a_record_to_another_seq_is_named(store: Store, writer: AuditWriter) -> None:
    await write_many(writer, 5)
    await sql(store, update(AuditRecord).where(AuditRecord.seq == 3).values(seq=1000))
    seq, reason = await broken(store)
    assert seq == 3
    assert "deleted" in reason


async def test_deleting_a_middle_record_names_the_gap(store: Store, writer: AuditWriter) -> None:
    await write_many(writer, 9)
    await sql(store, delete(AuditRecord).where(AuditRecord.seq == 4))
    seq, reason = await broken(store)
    assert seq == 4
    assert reason.startswith("record 4 (missing, after record 3 (")
    assert "before record 5 (" in reason


async def test_deleting_the_last_record_is_caught_by_the_head(
    store: Store, writer: AuditWriter
) -> None:
    await write_many(writer, 5)
    await sql(store, delete(AuditRecord).where(AuditRecord.seq == 5))
    seq, reason = await broken(store)
    assert seq == 5
    assert "signed head is at record 5" in reason


async def test_rewinding_the_head_without_the_key_is_caught(
    store: Store, writer: AuditWriter
) -> None:
    await write_many(writer, 5)
    async with store.sessions() as session:
        fourth = await session.scalar(select(AuditRecord.hash).where(AuditRecord.seq == 4))
    await sql(store, delete(AuditRecord).where(AuditRecord.seq == 5))
    forged = sign(b"not the key", f"{4}:{fourth}")
    await sql(store, update(AuditHead).values(seq=4, hash=fourth, signature=forged))
    seq, reason = await broken(store)
    assert seq == 4
    assert "signature is invalid" in reason


async def test_deleting_the_head_is_caught(store: Store, writer: AuditWriter) -> None:
    await write_many(writer, 2)
    await sql(store, delete(AuditHead))
    _, reason = await broken(store)
    assert "head of the chain is missing" in reason


async def test_a_record_appended_past_the_head_is_caught(store: Store, writer: AuditWriter) -> None:
    await write_many(writer, 3)
    async with store.sessions() as session:
        last = (await session.execute(select(AuditRecord).where(AuditRecord.seq == 3))).scalar_one()
    fake = entry(4)
    row = {"seq": 4, **fake.as_row(), "prev_hash": last.hash, "hash": link(last.hash, 4, fake)}
    await sql(store, insert(AuditRecord).values(row))
    seq, reason = await broken(store)
    assert seq == 4
    assert "beyond the signed head" in reason


# -- retention ----------------------------------------------------------------------


NOW = DAY0 + timedelta(days=365)


async def test_pruning_keeps_the_chain_verifiable(store: Store, writer: AuditWriter) -> None:
    old = [entry(n, at=DAY0 + timedelta(days=n)) for n in range(1, 6)]
    new = [entry(n, at=DAY0 + timedelta(days=100 + n)) for n in range(6, 10)]
    for item in [*old, *new]:
        await writer.write(item)
    cutoff = DAY0 + timedelta(days=50)
    assert await prune(store.sessions, KEY, cutoff, actor="root", now=NOW) == 5
    assert await seqs(store) == [6, 7, 8, 9, 10]
    async with store.sessions() as session:
        checkpoint = await read_checkpoint(session)
        first = await one(session, 6)
        note = await one(session, 10)
    assert checkpoint is not None
    assert (checkpoint.upto_seq, checkpoint.created_at) == (5, iso_utc(NOW))
    assert first.prev_hash == checkpoint.last_hash
    assert (note.kind, note.action, note.user, note.ts) == (
        "admin",
        "audit.prune",
        "root",
        iso_utc(NOW),
    )
    assert note.detail == {"older_than": iso_utc(cutoff), "upto_seq": 5, "records": 5}
    verdict = await verify_store(store.sessions, KEY)
    assert (verdict.ok, verdict.checked) == (True, 5)
    await writer.write(entry(11))  # the chain goes on
    assert (await verify_store(store.sessions, KEY)).ok
    assert await prune(store.sessions, KEY, cutoff) == 0


async def one(session: AsyncSession, seq: int) -> AuditRecord:
    return (await session.execute(select(AuditRecord).where(AuditRecord.seq == seq))).scalar_one()


async def test_only_a_whole_prefix_is_pruned(store: Store, writer: AuditWriter) -> None:
    days = [1, 2, 200, 3, 4]  # the third is new: nothing after it may go
    for n, day in enumerate(days, start=1):
        await writer.write(entry(n, at=DAY0 + timedelta(days=day)))
    assert await prune(store.sessions, KEY, DAY0 + timedelta(days=100), now=NOW) == 2
    assert await seqs(store) == [3, 4, 5, 6]
    assert (await verify_store(store.sessions, KEY)).ok


async def test_pruning_in_chunks_leaves_one_checkpoint(store: Store, writer: AuditWriter) -> None:
    await write_many(writer, 10)
    await writer.write(entry(11, at=NOW))
    assert await prune(store.sessions, KEY, DAY0 + timedelta(days=1), chunk=3, now=NOW) == 10
    assert await seqs(store) == [11, 12]
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 1
        assert (await one(session, 12)).detail["records"] == 10
    verdict = await verify_store(store.sessions, KEY)
    assert (verdict.ok, verdict.checked) == (True, 2)


async def test_pruning_everything_then_writing_on(store: Store, writer: AuditWriter) -> None:
    await write_many(writer, 4)
    assert (
        await prune(store.sessions, KEY, DAY0 + timedelta(days=1), now=DAY0 + timedelta(days=1))
        == 4
    )
    assert await seqs(store) == [5]  # the record of the pruning itself
    assert (await verify_store(store.sessions, KEY)).ok
    await write_many(writer, 2, start=6)
    assert await seqs(store) == [5, 6, 7]
    verdict = await verify_store(store.sessions, KEY)
    assert (verdict.ok, verdict.checked) == (True, 3)
    await writer.write(entry(8, at=DAY0 + timedelta(days=30)))
    assert await prune(store.sessions, KEY, DAY0 + timedelta(days=2), now=NOW) == 3
    assert await seqs(store) == [8, 9]
    assert (await verify_store(store.sessions, KEY)).ok


async def test_retention_prunes_in_the_background(store: Store, writer: AuditWriter) -> None:
    await write_many(writer, 3)
    task = asyncio.create_task(retain(store.sessions, KEY, 30, every_s=3600, clock=lambda: NOW))
    try:
        for _ in range(500):
            if await seqs(store) == [4]:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await seqs(store) == [4]
    assert (await verify_store(store.sessions, KEY)).ok


async def test_retention_reads_its_days_anew_each_round(store: Store, writer: AuditWriter) -> None:
    """The gateway passes ``audit.retention_days`` as a callable: 0 keeps everything, and
    a reload that sets it is applied at the next round."""
    await write_many(writer, 3)
    days = [0]
    rounds: list[int] = []

    def current() -> int:
        rounds.append(days[0])
        return days[0]

    task = asyncio.create_task(
        retain(store.sessions, KEY, current, every_s=0.01, clock=lambda: NOW)
    )
    try:
        for _ in range(500):
            if len(rounds) >= 3:
                break
            await asyncio.sleep(0.01)
        assert await seqs(store) == [1, 2, 3]
        days[0] = 30
        for _ in range(500):
            if await seqs(store) == [4]:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await seqs(store) == [4]
    assert (await verify_store(store.sessions, KEY)).ok


@pytest.mark.parametrize(
    "change",
    [{"upto_seq": 2}, {"last_hash": "e" * 64}, {"signature": "0" * 64}, {"created_at": "x"}],
)
async def test_tampering_with_the_checkpoint_is_caught(
    store: Store, writer: AuditWriter, change: dict[str, Any]
) -> None:
    await write_many(writer, 3)
    await writer.write(entry(4, at=DAY0 + timedelta(days=30)))
    assert await prune(store.sessions, KEY, DAY0 + timedelta(days=1), now=NOW) == 3
    await sql(store, update(AuditCheckpoint).values(change))
    _, reason = await broken(store)
    assert "checkpoint" in reason


async def test_deleting_the_checkpoint_is_caught(store: Store, writer: AuditWriter) -> None:
    await write_many(writer, 3)
    await writer.write(entry(4, at=DAY0 + timedelta(days=30)))
    await prune(store.sessions, KEY, DAY0 + timedelta(days=1))
    await sql(store, delete(AuditCheckpoint))
    seq, reason = await broken(store)
    assert seq == 1
    assert "deleted" in reason


async def test_pruning_refuses_a_broken_chain(store: Store, writer: AuditWriter) -> None:
    await write_many(writer, 5)
    await sql(store, update(AuditRecord).where(AuditRecord.seq == 2).values(user="mallory"))
    with pytest.raises(AuditTampered, match="nothing pruned: record 2"):
        await prune(store.sessions, KEY, DAY0 + timedelta(days=1))
    assert await seqs(store) == [1, 2, 3, 4, 5]
    async with store.sessions() as session:
        assert await read_checkpoint(session) is None
        head = await read_head(session)
    assert head is not None
    assert head.seq == 5


# -- export -------------------------------------------------------------------------


@pytest.fixture
async def ten_days(store: Store, writer: AuditWriter) -> Store:
    for n in range(1, 11):
        await writer.write(entry(n, at=DAY0 + timedelta(days=n)))
    return store


async def test_export_jsonl_has_every_column(ten_days: Store) -> None:
    out = io.StringIO()
    count = await export(ten_days.sessions, out, fmt="jsonl")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == len(lines) == 10
    assert list(lines[0]) == list(RECORD_FIELDS)
    assert lines[0]["images"] == ["ab" * 32]
    assert lines[0]["detail"]["nested"] == {"b": [1, "二"]}
    assert [r["seq"] for r in lines] == list(range(1, 11))
    assert all(r["prev_hash"] == p["hash"] for p, r in itertools.pairwise(lines))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_export_windows_are_since_inclusive_until_exclusive(
    ten_days: Store, fmt: Any
) -> None:
    out = io.StringIO()
    since, until = DAY0 + timedelta(days=3), DAY0 + timedelta(days=6)
    count = await export(ten_days.sessions, out, since, until, fmt)
    rows = parse(out.getvalue(), fmt)
    assert count == 3
    assert [int(r["seq"]) for r in rows] == [3, 4, 5]
    only_since = io.StringIO()
    await export(ten_days.sessions, only_since, since=DAY0 + timedelta(days=9), fmt=fmt)
    assert [int(r["seq"]) for r in parse(only_since.getvalue(), fmt)] == [9, 10]
    only_until = io.StringIO()
    await export(ten_days.sessions, only_until, until=DAY0 + timedelta(days=2), fmt=fmt)
    assert [int(r["seq"]) for r in parse(only_until.getvalue(), fmt)] == [1]


def parse(text_: str, fmt: str) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in text_.splitlines()]
    return list(csv.DictReader(io.StringIO(text_)))


async def test_export_csv_rows_can_be_checked_against_their_hashes(ten_days: Store) -> None:
    out = io.StringIO()
    await export(ten_days.sessions, out, fmt="csv")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(RECORD_FIELDS)
    first = rows[0]
    assert json.loads(first["images"]) == ["ab" * 32]
    assert first["key_prefix"] == "sk-abc"
    as_entry = AuditEntry(
        **{
            **{k: first[k] or None for k in ("ts", "kind", "action", "request_id", "user")},
            **{k: first[k] or None for k in ("key_prefix", "client_ip", "model", "member")},
            **{k: int(first[k]) for k in ("status", "tokens_in", "tokens_out", "latency_ms")},
            "images": json.loads(first["images"]),
            "content": first["content"],
            "detail": json.loads(first["detail"]),
        }
    )
    assert link(first["prev_hash"], 1, as_entry) == first["hash"]


# -- the command line (SQLite) ---------------------------------------------------------


@pytest.fixture
def home(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENCLAVE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def fill(home: Path, entries: list[AuditEntry]) -> None:
    """Records written by the gateway with the installation's key, and its witness."""
    from enclave.audit.witness import open_witness
    from enclave.config import load_settings
    from enclave.secretkey import load_or_create

    settings = load_settings()
    assert settings.home == home
    key = load_or_create(settings.secret_file)

    async def write() -> None:
        opened = await open_store(settings.database)
        audit = AuditWriter(opened.sessions, key, strict=True, witness=open_witness(settings, key))
        for item in entries:
            await audit.write(item)
        await audit.aclose()
        await opened.aclose()

    asyncio.run(write())


def cli(*args: str) -> int:
    from enclave.cli.main import main

    return main(["audit", *args])


def test_cli_verify_export_prune(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    fill(home, [entry(n, at=now - timedelta(days=40 - n)) for n in range(1, 6)])
    fill(home, [entry(n, at=now - timedelta(hours=1)) for n in range(6, 9)])
    assert cli("verify") == 0
    assert capsys.readouterr().out.startswith("ok: 8 records verified\nwitness: ")

    assert cli("export", "--format", "jsonl") == 0
    assert len(capsys.readouterr().out.splitlines()) == 8
    since = (now - timedelta(days=36, hours=12)).isoformat()
    target = tmp_path / "out.csv"
    assert cli("export", "--since", since, "--format", "csv", "--output", str(target)) == 0
    assert "exported 5 records" in capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert [r["seq"] for r in rows] == [str(n) for n in range(4, 9)]

    assert cli("prune", "--days", "30") == 0
    assert capsys.readouterr().out.startswith("pruned 5 records older than ")
    assert cli("verify") == 0
    verified = capsys.readouterr().out  # and the prune's own, witnessed
    assert verified.startswith("ok: 4 records verified\nwitness: ")
    assert "(newest: seq 9 at " in verified


def test_cli_verify_names_the_broken_record(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(home, [entry(n) for n in range(1, 4)])
    import sqlite3

    with sqlite3.connect(home / "enclave.db") as db:
        db.execute("UPDATE audit SET tokens_out = 1 WHERE seq = 2")
    assert cli("verify") == 1
    ts = iso_utc(DAY0 + timedelta(seconds=2))
    assert capsys.readouterr().out == (
        f"broken at record 2 ({ts}, POST /v1/chat/completions #2): edited: "
        "its hash does not match its content\n"
    )


def test_cli_prune_needs_a_retention(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("prune") == 1
    assert "nothing to prune" in capsys.readouterr().err
    assert cli("prune", "--days", "0") == 1


def test_cli_refuses_a_bad_time(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli("export", "--since", "yesterday")
    assert exit_.value.code == 2
    assert "not an ISO 8601 date or time" in capsys.readouterr().err
