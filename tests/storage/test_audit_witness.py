"""The audit chain against its witness (SQLite and PostgreSQL): wiping both tables,
rolling back to an older genuinely signed head, truncating and writing on are found and
the missing range named; pruning still verifies; several replicas each write their own
witness; a new ``secret.key`` needs ``resign``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from enclave.audit import AuditWriter, prune, verify_store
from enclave.audit.ops import read_head
from enclave.audit.rotate import resign
from enclave.audit.witness import FileSink, SyslogSink, Witness, key_id, sightings
from enclave.errors import AuditTampered
from enclave.store.models import AuditCheckpoint, AuditHead, AuditRecord
from enclave.store.repos import Store, open_store
from tests.storage.test_audit import DAY0, KEY, NOW, entry, seqs, sql

pytestmark = pytest.mark.anyio

NEW_KEY = bytes(range(100, 132))


def witnessed_writer(store: Store, path: Path, key: bytes = KEY) -> AuditWriter:
    """A writer as the gateway makes it: each commit's head to the witness file."""
    return AuditWriter(store.sessions, key, strict=True, witness=file_witness(path, key))


def file_witness(path: Path, key: bytes = KEY, interval_s: float = 0) -> Witness:
    return Witness([FileSink(path)], key, interval_s)


async def write(store: Store, path: Path, numbers: range, key: bytes = KEY) -> None:
    """Entries written one per commit, then the writer closed (the head witnessed)."""
    writer = witnessed_writer(store, path, key)
    for n in numbers:
        await writer.write(entry(n, detail={"n": n, "run": path.name}))
    await writer.aclose()


async def head_row(store: Store) -> dict[str, object]:
    async with store.sessions() as session:
        head = await read_head(session)
    assert head is not None
    return {"seq": head.seq, "hash": head.hash, "signature": head.signature}


async def verdict_of(store: Store, *paths: Path, key: bytes = KEY) -> tuple[bool, str]:
    verdict = await verify_store(store.sessions, key, witness=list(paths))
    return verdict.ok, verdict.reason + (f" | {verdict.witnessed}" if verdict.witnessed else "")


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def witness_path(tmp_path: Path) -> Path:
    return tmp_path / "witness" / "audit.witness"


async def test_a_witnessed_chain_verifies(store: Store, witness_path: Path) -> None:
    await write(store, witness_path, range(1, 6))
    ok, reason = await verdict_of(store, witness_path)
    assert ok, reason
    assert reason.startswith("5 records verified | witness: ")
    assert "(newest: seq 5 at " in reason
    last = lines(witness_path)[-1]
    assert (last["seq"], last["key"]) == (5, key_id(KEY))
    assert set(last) == {"seq", "hash", "time", "key", "sig", "by"}
    assert stat.S_IMODE(os.stat(witness_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(witness_path.parent).st_mode) == 0o700


async def test_wiping_both_tables_is_found_and_the_range_named(
    store: Store, witness_path: Path
) -> None:
    await write(store, witness_path, range(1, 8))
    await sql(store, delete(AuditRecord))
    await sql(store, delete(AuditHead))
    assert (await verify_store(store.sessions, KEY)).ok  # the chain alone: "0 records"
    verdict = await verify_store(store.sessions, KEY, witness=[witness_path])
    assert not verdict.ok
    assert verdict.broken_seq == 1
    assert verdict.reason.startswith("record 1: records 1–7 are missing: the witness saw seq 7 at ")
    assert f"(witness line {len(lines(witness_path))} of {witness_path})" in verdict.reason
    assert verdict.reason.endswith("; the chain is empty")


async def test_rolling_back_to_an_older_signed_head_is_found(
    store: Store, witness_path: Path
) -> None:
    await write(store, witness_path, range(1, 4))
    older = await head_row(store)  # genuinely signed, at record 3
    await write(store, witness_path, range(4, 10))
    await sql(store, delete(AuditRecord).where(AuditRecord.seq > 3))
    await sql(store, update(AuditHead).values(older))
    assert (await verify_store(store.sessions, KEY)).ok  # the hole the witness closes
    verdict = await verify_store(store.sessions, KEY, witness=[witness_path])
    assert (verdict.ok, verdict.broken_seq) == (False, 4)
    assert verdict.reason.startswith("record 4: records 4–9 are missing: the witness saw seq 9 at ")
    assert verdict.reason.endswith("; the chain ends at record 3")


async def test_truncating_and_writing_on_is_found(store: Store, witness_path: Path) -> None:
    """Records 6-9 deleted, the head put back at 5, and the gateway writes on: the chain
    is whole again and longer than the witness saw, but its records 6-9 are others."""
    await write(store, witness_path, range(1, 6))
    older = await head_row(store)
    await write(store, witness_path, range(6, 10))
    await sql(store, delete(AuditRecord).where(AuditRecord.seq > 5))
    await sql(store, update(AuditHead).values(older))
    await write(store, witness_path, range(106, 112))  # records 6-11, other content
    assert await seqs(store) == list(range(1, 12))
    assert (await verify_store(store.sessions, KEY)).ok
    ok, reason = await verdict_of(store, witness_path)
    assert not ok
    assert reason.startswith("record 6: records 6–9 are missing or replaced: the witness saw seq 9")
    assert "the chain holds another record 6 than it saw" in reason


async def test_a_truncated_end_is_found_when_the_head_went_too(
    store: Store, witness_path: Path
) -> None:
    await write(store, witness_path, range(1, 6))
    await sql(store, delete(AuditRecord).where(AuditRecord.seq > 2))
    ok, reason = await verdict_of(store, witness_path)
    assert not ok
    assert reason.startswith("record 3 ")  # the signed head names it already


async def test_pruning_still_verifies(store: Store, witness_path: Path) -> None:
    writer = witnessed_writer(store, witness_path)
    assert writer.witness is not None
    for n in range(1, 9):
        await writer.write(entry(n, at=DAY0 + timedelta(days=n) if n < 6 else NOW))
        await writer.witness.flush()  # a line per record: a busy host may merge them
    await writer.aclose()
    assert len(lines(witness_path)) == 8
    witness = file_witness(witness_path)
    assert await prune(store.sessions, KEY, DAY0 + timedelta(days=50), witness=witness) == 5
    await witness.aclose()
    assert [line["seq"] for line in lines(witness_path)][-1] == 9  # the prune's own record
    ok, reason = await verdict_of(store, witness_path)
    assert ok, reason
    assert reason.startswith("4 records verified | witness: ")
    assert len(lines(witness_path)) > 4  # lines of pruned records are accounted for


async def test_a_checkpoint_that_disagrees_with_the_witness_is_found(
    store: Store, witness_path: Path
) -> None:
    writer = witnessed_writer(store, witness_path)
    for n in range(1, 4):
        await writer.write(entry(n, at=DAY0))
    await writer.write(entry(4, at=NOW))
    await writer.aclose()
    await prune(store.sessions, KEY, DAY0 + timedelta(days=1))
    async with store.sessions() as session:
        checkpoint = (await session.execute(select(AuditCheckpoint))).scalar_one()
    assert checkpoint.upto_seq == 3
    ok, reason = await verdict_of(store, witness_path)
    assert ok, reason


async def test_replicas_write_their_own_witness(database_url: str, tmp_path: Path) -> None:
    """Two gateways on one PostgreSQL (or SQLite file), each its own witness file: lines
    interleave in any order; verify reads both."""
    files = [tmp_path / f"replica{n}" / "audit.witness" for n in range(2)]
    stores = [await open_store(database_url) for _ in range(2)]
    writers = [witnessed_writer(s, f) for s, f in zip(stores, files, strict=True)]
    try:
        await asyncio.gather(*(writers[n % 2].write(entry(n)) for n in range(1, 61)))
        for writer in writers:
            await writer.aclose()
        assert all(lines(f) for f in files)
        ok, reason = await verdict_of(stores[0], *files)
        assert ok, reason
        older = await head_row(stores[0])
        await write(stores[0], files[1], range(61, 64))  # only replica 1 saw these
        await sql(stores[0], delete(AuditRecord).where(AuditRecord.seq > 60))
        await sql(stores[0], update(AuditHead).values(older))
        ok, reason = await verdict_of(stores[0], *files)
        assert not ok
        assert "records 61–63 are missing: the witness saw seq 63" in reason
        assert (await verdict_of(stores[0], files[0]))[0]  # replica 0 alone cannot tell
    finally:
        for s in stores:
            await s.aclose()


async def test_a_forged_witness_line_is_named(store: Store, witness_path: Path) -> None:
    await write(store, witness_path, range(1, 4))
    forged = {**lines(witness_path)[-1], "sig": "0" * 64}
    with witness_path.open("a") as file:
        file.write(json.dumps(forged) + "\n")
    ok, reason = await verdict_of(store, witness_path)
    assert not ok
    count = len(lines(witness_path))
    assert reason.startswith(f"witness line {count} of {witness_path} (seq 3): its signature")


async def test_an_unreadable_witness_line_is_named(store: Store, witness_path: Path) -> None:
    await write(store, witness_path, range(1, 3))
    with witness_path.open("a") as file:
        file.write("not a witness line\n")
    ok, reason = await verdict_of(store, witness_path)
    assert (ok, reason) == (False, f"witness line 3 of {witness_path}: not a witness line")


async def test_no_witness(store: Store, witness_path: Path) -> None:
    """A fresh install verifies; records without any witness line cannot be checked."""
    verdict = await verify_store(store.sessions, KEY, witness=[witness_path])
    assert (verdict.ok, verdict.unanchored) == (True, False)
    writer = AuditWriter(store.sessions, KEY, strict=True)  # no witness
    await writer.write(entry(1))
    await writer.aclose()
    verdict = await verify_store(store.sessions, KEY, witness=[witness_path])
    assert (verdict.ok, verdict.unanchored) == (False, True)
    assert verdict.reason.startswith(f"the witness {witness_path} does not exist, but the chain")
    # a gateway starting witnesses the head it finds
    writer = witnessed_writer(store, witness_path)
    await writer.witness_head()
    await writer.aclose()
    assert (await verify_store(store.sessions, KEY, witness=[witness_path])).ok


async def test_one_line_per_interval(store: Store, witness_path: Path) -> None:
    writer = AuditWriter(
        store.sessions, KEY, strict=True, witness=file_witness(witness_path, interval_s=3600)
    )
    for n in range(1, 11):
        await writer.write(entry(n))
    await writer.aclose()
    assert writer.batches == 10
    written = [line["seq"] for line in lines(witness_path)]
    assert len(written) == 2  # the first at once, the newest when the writer closed
    assert written[-1] == 10


# -- key rotation ------------------------------------------------------------------------


async def test_a_new_key_needs_resign(store: Store, witness_path: Path) -> None:
    await write(store, witness_path, range(1, 6))
    ok, reason = await verdict_of(store, witness_path, key=NEW_KEY)
    assert not ok
    assert "signature is invalid" in reason
    assert "enclave audit resign --old-key FILE" in reason
    witness = file_witness(witness_path, NEW_KEY)
    done = await resign(
        store.sessions, KEY, NEW_KEY, actor="ops", witness_files=[witness_path], witness=witness
    )
    await witness.aclose()
    assert (done.head.seq, done.checked, done.checkpoints) == (6, 5, 0)
    ok, reason = await verdict_of(store, witness_path, key=NEW_KEY)
    assert ok, reason
    assert reason.endswith("signed with an earlier key")
    assert not (await verify_store(store.sessions, KEY)).ok  # the old key no longer signs
    last = lines(witness_path)[-1]
    assert (last["seq"], last["key"], last["event"], last["old_key"]) == (
        6, key_id(NEW_KEY), "resign", key_id(KEY),
    )  # fmt: skip
    async with store.sessions() as session:
        note = (await session.execute(select(AuditRecord).where(AuditRecord.seq == 6))).scalar_one()
    assert (note.action, note.user) == ("audit.resign", "ops")
    assert note.detail == {
        "old_key": key_id(KEY), "new_key": key_id(NEW_KEY), "head_seq": 5, "checkpoints": 0,
    }  # fmt: skip
    await write(store, witness_path, range(7, 9), key=NEW_KEY)  # the gateway goes on
    assert (await verdict_of(store, witness_path, key=NEW_KEY))[0]


async def test_resign_keeps_checkpoints_valid(store: Store, witness_path: Path) -> None:
    writer = witnessed_writer(store, witness_path)
    for n in range(1, 4):
        await writer.write(entry(n, at=DAY0))
    await writer.write(entry(4, at=NOW))
    await writer.aclose()
    await prune(store.sessions, KEY, DAY0 + timedelta(days=1))
    done = await resign(store.sessions, KEY, NEW_KEY, witness_files=[witness_path])
    assert done.checkpoints == 1
    ok, reason = await verdict_of(store, witness_path, key=NEW_KEY)
    assert ok, reason


async def test_resign_refuses_a_broken_chain(store: Store, witness_path: Path) -> None:
    await write(store, witness_path, range(1, 5))
    older = await head_row(store)
    await sql(store, update(AuditRecord).where(AuditRecord.seq == 2).values(user="mallory"))
    with pytest.raises(AuditTampered, match="nothing re-signed: with the old key, record 2"):
        await resign(store.sessions, KEY, NEW_KEY, witness_files=[witness_path])
    assert await head_row(store) == older
    await sql(store, update(AuditRecord).where(AuditRecord.seq == 2).values(user="alice"))
    await sql(store, delete(AuditRecord).where(AuditRecord.seq > 3))
    await sql(store, delete(AuditHead))
    with pytest.raises(AuditTampered, match="missing"):  # a rollback is not laundered
        await resign(store.sessions, KEY, NEW_KEY, witness_files=[witness_path])


# -- syslog ------------------------------------------------------------------------------


@pytest.fixture
def syslog_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for /dev/log (short path: AF_UNIX limits it)."""
    path = f"/tmp/enclave-syslog-{os.getpid()}-{tmp_path.name[-8:]}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(10)
    try:
        yield path, server
    finally:
        server.close()
        os.unlink(path)


async def test_syslog_lines_can_be_verified(
    store: Store, tmp_path: Path, syslog_socket: tuple[str, socket.socket]
) -> None:
    address, server = syslog_socket
    writer = AuditWriter(
        store.sessions, KEY, strict=True, witness=Witness([SyslogSink(address)], KEY, 3600)
    )
    for n in range(1, 4):
        await writer.write(entry(n))
    await writer.aclose()
    messages = [server.recv(4096).decode() for _ in range(2)]  # the first, and at close
    # <86>: facility authpriv (10) * 8 + severity info (6)
    assert all(m.startswith("<86>enclave-audit: enclave-audit-witness {") for m in messages)
    extracted = tmp_path / "from-syslog.txt"
    extracted.write_text("".join(m.rstrip("\x00") + "\n" for m in messages))
    assert [s.seq for s in sightings(extracted, extracted.stat().st_size)][-1] == 3
    ok, reason = await verdict_of(store, extracted)
    assert ok, reason
    await sql(store, delete(AuditRecord))
    await sql(store, delete(AuditHead))
    ok, reason = await verdict_of(store, extracted)
    assert (ok, reason.startswith("record 1: records 1–3 are missing")) == (False, True)
