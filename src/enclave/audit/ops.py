"""Reading the stored chain: verify it, export it, prune it (retention).

Records are read in seq order in batches (keyset pagination), so memory stays constant
however long the chain is.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TextIO

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from enclave.audit.chain import (
    RECORD_FIELDS,
    AuditEntry,
    Checkpoint,
    Head,
    StoredRecord,
    Verdict,
    Verifier,
    iso_utc,
    signed_checkpoint,
)
from enclave.audit.writer import HEAD_ID, extend, lock_head
from enclave.errors import AuditTampered
from enclave.store.models import AuditCheckpoint, AuditHead, AuditRecord

if TYPE_CHECKING:
    from pathlib import Path

    from enclave.audit.witness import Witness

log = logging.getLogger("enclave.audit")

BATCH = 1000  # records per query
CHUNK = 10_000  # records pruned per transaction
_COLUMNS = [AuditRecord.__table__.c[name] for name in RECORD_FIELDS]


async def verify_store(
    sessions: async_sessionmaker[AsyncSession],
    key: bytes,
    *,
    batch: int = BATCH,
    witness: list[Path] | None = None,
) -> Verdict:
    """Verify the whole stored chain: records, checkpoint and signed head; and, given
    ``witness`` files, the chain against them (:mod:`enclave.audit.evidence`: a missing
    file is read as empty, and an unwitnessed chain that holds records is not ok)."""
    verdict, checkpoint = await _verify_once(sessions, key, batch, witness)
    if not verdict.ok:  # a prune may have moved the checkpoint while we read: look again
        async with sessions() as session:
            if await read_checkpoint(session) != checkpoint:
                verdict, _ = await _verify_once(sessions, key, batch, witness)
    return verdict


async def _verify_once(
    sessions: async_sessionmaker[AsyncSession], key: bytes, batch: int, witness: list[Path] | None
) -> tuple[Verdict, Checkpoint | None]:
    from enclave.audit import evidence

    sources = evidence.measure(witness, required=False) if witness is not None else None
    async with sessions() as session:
        if session.get_bind().dialect.name == "postgresql":  # one snapshot for the whole pass
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        head = await read_head(session)
        checkpoint = await read_checkpoint(session)
        verifier = Verifier(head, checkpoint, key)
        async for record in records(session, upto=head.seq if head else None, batch=batch):
            if not verifier.feed(record):
                break
        verdict = verifier.finish()
        if verdict.ok and sources is not None:
            verdict = await evidence.check(
                session, sources, key, head=head, checkpoint=checkpoint, verdict=verdict
            )
    if verdict.ok and head is not None:
        verdict = await _check_beyond(sessions, head, verdict)
    return verdict, checkpoint


async def _check_beyond(
    sessions: async_sessionmaker[AsyncSession], head: Head, verdict: Verdict
) -> Verdict:
    """Records past the head are fine only if a writer committed them meanwhile."""
    async with sessions() as session:
        beyond = await session.scalar(
            select(func.min(AuditRecord.seq)).where(AuditRecord.seq > head.seq)
        )
        if beyond is None:
            return verdict
        now = await read_head(session)
    if now is not None and now.seq >= beyond:
        return verdict
    reason = f"record {beyond}: beyond the signed head at record {head.seq} (inserted)"
    return Verdict(False, verdict.checked, beyond, reason)


async def read_head(session: AsyncSession) -> Head | None:
    row = (
        await session.execute(
            select(AuditHead.seq, AuditHead.hash, AuditHead.signature).where(
                AuditHead.id == HEAD_ID
            )
        )
    ).first()
    return Head(row[0], row[1], row[2]) if row is not None else None


async def read_checkpoint(session: AsyncSession) -> Checkpoint | None:
    """The latest checkpoint (the one with the highest ``upto_seq``)."""
    row = (
        await session.execute(
            select(
                AuditCheckpoint.upto_seq,
                AuditCheckpoint.last_hash,
                AuditCheckpoint.created_at,
                AuditCheckpoint.signature,
            )
            .order_by(AuditCheckpoint.upto_seq.desc(), AuditCheckpoint.id.desc())
            .limit(1)
        )
    ).first()
    return Checkpoint(row[0], row[1], row[2], row[3]) if row is not None else None


async def records(
    session: AsyncSession,
    *,
    upto: int | None = None,
    since: str | None = None,
    until: str | None = None,
    batch: int = BATCH,
) -> AsyncIterator[StoredRecord]:
    """Stored records in seq order, ``batch`` rows per query."""
    after: int | None = None
    while True:
        query = select(*_COLUMNS).order_by(AuditRecord.seq).limit(batch)
        if after is not None:
            query = query.where(AuditRecord.seq > after)
        if upto is not None:
            query = query.where(AuditRecord.seq <= upto)
        if since is not None:
            query = query.where(AuditRecord.ts >= since)
        if until is not None:
            query = query.where(AuditRecord.ts < until)
        rows = (await session.execute(query)).mappings().all()
        for row in rows:
            yield StoredRecord.from_row(row)
        if len(rows) < batch:
            return
        after = rows[-1]["seq"]


async def export(
    sessions: async_sessionmaker[AsyncSession],
    out: TextIO,
    since: datetime | None = None,
    until: datetime | None = None,
    fmt: Literal["jsonl", "csv"] = "jsonl",
) -> int:
    """Write the records with ``since <= ts < until`` (every column); how many."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown export format {fmt!r}")
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(RECORD_FIELDS)
    count = 0
    first = iso_utc(since) if since else None
    end = iso_utc(until) if until else None
    async with sessions() as session:
        async for record in records(session, since=first, until=end):
            row = record.as_row()
            if writer is not None:
                writer.writerow([_csv_cell(row[name]) for name in RECORD_FIELDS])
            else:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "" if value is None else value


async def prune(
    sessions: async_sessionmaker[AsyncSession],
    key: bytes,
    older_than: datetime,
    *,
    actor: str | None = None,
    now: datetime | None = None,
    chunk: int = CHUNK,
    witness: Witness | None = None,
) -> int:
    """Delete the records older than ``older_than`` — the longest prefix of the chain
    that is all older — through a signed checkpoint; how many went.

    The prefix is verified first (without locking writers out): a broken chain raises
    :class:`AuditTampered` and nothing is pruned, for pruning must not erase evidence.
    Then each ``chunk`` of records goes in one short transaction that also replaces the
    checkpoint, so writers wait for one chunk at most and the chain verifies after each.
    The last transaction appends an ``audit.prune`` record (by ``actor``) to the chain,
    and its head goes to ``witness``.
    """
    cutoff = iso_utc(older_than)
    async with sessions() as session:
        head = await read_head(session)
        checkpoint = await read_checkpoint(session)
        start = checkpoint.upto_seq if checkpoint else 0
        upto = await _prunable_upto(session, cutoff, head)
        if head is None or upto <= start:
            return 0
        boundaries = [*range(start + chunk, upto, chunk), upto]
        hashes = await _verified_prefix(session, key, head, checkpoint, boundaries)
    created_at = iso_utc(now or datetime.now(UTC))
    pruned = 0
    for step in boundaries:
        note = AuditEntry(
            ts=created_at,
            kind="admin",
            action="audit.prune",
            user=actor,
            detail={"older_than": cutoff, "upto_seq": upto, "records": pruned},
        )
        count, head = await _prune_step(
            sessions, key, step, hashes[step], created_at=created_at, note=note, last=step == upto
        )
        pruned += count
        if head is not None and witness is not None:
            witness.note(head)
    return pruned


async def _prune_step(
    sessions: async_sessionmaker[AsyncSession],
    key: bytes,
    upto: int,
    last_hash: str,
    *,
    created_at: str,
    note: AuditEntry,
    last: bool,
) -> tuple[int, Head | None]:
    """One transaction: delete records up to ``upto``, sign a checkpoint there; how
    many went, and the new head if this ``last`` step appended ``note``."""
    async with sessions() as session, session.begin():
        conn = await session.connection()
        await lock_head(conn, key)  # one pruner at a time, and writers wait for this one
        current = await read_checkpoint(session)
        if current is not None and current.upto_seq >= upto:
            return 0, None  # another pruner got here first
        found = await session.scalar(select(AuditRecord.hash).where(AuditRecord.seq == upto))
        if found != last_hash:
            raise AuditTampered(f"record {upto} changed while it was being pruned")
        signed = signed_checkpoint(key, upto, last_hash, created_at)
        result = await session.execute(delete(AuditRecord).where(AuditRecord.seq <= upto))
        await session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.upto_seq < upto))
        await session.execute(
            insert(AuditCheckpoint).values(
                created_at=signed.created_at,
                upto_seq=signed.upto_seq,
                last_hash=signed.last_hash,
                signature=signed.signature,
            )
        )
        count = int(result.rowcount)  # type: ignore[attr-defined]
        if not last:
            return count, None
        detail = {**note.detail, "records": int(note.detail["records"]) + count}
        return count, await extend(conn, key, [dataclasses.replace(note, detail=detail)])


async def _prunable_upto(session: AsyncSession, cutoff: str, head: Head | None) -> int:
    """The last seq of the longest prefix of records all older than ``cutoff``."""
    first_kept = await session.scalar(
        select(func.min(AuditRecord.seq)).where(AuditRecord.ts >= cutoff)
    )
    if first_kept is not None:
        return int(first_kept) - 1
    return head.seq if head is not None else 0


async def _verified_prefix(
    session: AsyncSession,
    key: bytes,
    head: Head,
    checkpoint: Checkpoint | None,
    boundaries: list[int],
) -> dict[int, str]:
    """Verify records up to the last boundary and the link to the next one; the hashes
    of the records at ``boundaries``. Raises :class:`AuditTampered` if it is broken."""
    upto = boundaries[-1]
    verifier = Verifier(head, checkpoint, key)
    wanted = set(boundaries)
    hashes: dict[int, str] = {}
    async for record in records(session, upto=upto + 1):
        if not verifier.feed(record):
            break
        if record.seq in wanted:
            hashes[record.seq] = record.hash
    if upto == head.seq or verifier.failure is not None or verifier.next_seq != upto + 2:
        verdict = verifier.finish()  # the whole chain goes, or something is wrong
        if not verdict.ok:
            raise AuditTampered(f"audit chain broken, nothing pruned: {verdict.reason}")
    return hashes


async def retain(
    sessions: async_sessionmaker[AsyncSession],
    key: bytes,
    days: int | Callable[[], int],
    *,
    every_s: float = 3600.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    witness: Witness | None = None,
) -> None:
    """``audit.retention_days``: prune now and every ``every_s`` until cancelled (a
    background task of the gateway; replicas doing it at once is harmless). ``days`` may
    be read anew each time (a reload changes it); 0 keeps everything."""
    while True:
        kept = days() if callable(days) else days
        try:
            if kept > 0:
                await _retain_once(sessions, key, kept, clock(), witness)
        except AuditTampered as exc:
            log.error("audit retention: %s", exc.message)
        except Exception:
            log.exception("audit retention failed; trying again later")
        await asyncio.sleep(every_s)


async def _retain_once(
    sessions: async_sessionmaker[AsyncSession],
    key: bytes,
    days: int,
    now: datetime,
    witness: Witness | None,
) -> None:
    cutoff = now - timedelta(days=days)
    count = await prune(sessions, key, cutoff, actor="retention", witness=witness)
    if count:
        log.info("audit retention: pruned %d records older than %d days", count, days)
