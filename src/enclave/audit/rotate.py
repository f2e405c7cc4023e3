"""Re-signing the chain after ``secret.key`` was replaced (``enclave audit resign``).

The head and the checkpoints are signed with the key; records are only hashed. So a
new key needs only those rows re-signed, after the chain was verified with the old key
(and against the witness): a broken chain is never re-signed, for that would launder
it. One transaction re-signs them and appends an ``audit.resign`` record naming both
keys by :func:`~enclave.audit.witness.key_id`; its head, signed with the new key, goes
to the witness with the old key's id. Witness lines signed with the old key stay as
they are: ``verify`` still checks them against the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from enclave.audit.chain import (
    AuditEntry,
    Checkpoint,
    Head,
    checkpoint_is_genuine,
    head_is_genuine,
    iso_utc,
    signed_checkpoint,
    signed_head,
)
from enclave.audit.ops import read_head, verify_store
from enclave.audit.witness import key_id
from enclave.audit.writer import HEAD_ID, extend, lock_head
from enclave.errors import AuditTampered, InvalidRequest
from enclave.store.models import AuditCheckpoint, AuditHead

if TYPE_CHECKING:
    from pathlib import Path

    from enclave.audit.witness import Witness


@dataclass(frozen=True, slots=True)
class Resigned:
    head: Head  # the new head: the audit.resign record, signed with the new key
    checked: int  # records verified with the old key
    checkpoints: int  # checkpoints re-signed


async def resign(
    sessions: async_sessionmaker[AsyncSession],
    old_key: bytes,
    new_key: bytes,
    *,
    actor: str | None = None,
    witness_files: list[Path] | None = None,
    witness: Witness | None = None,
) -> Resigned:
    """Verify the chain with ``old_key`` (and against ``witness_files``), then re-sign
    its head and checkpoints with ``new_key``. Raises :class:`AuditTampered` if it does
    not verify or changed meanwhile (a gateway still writing with the old key)."""
    if old_key == new_key:
        raise InvalidRequest("the old key is secret.key itself: nothing to re-sign")
    async with sessions() as session:
        before = await read_head(session)
    verdict = await verify_store(sessions, old_key, witness=witness_files)
    if not verdict.ok:
        raise AuditTampered(f"nothing re-signed: with the old key, {verdict.reason}")
    async with sessions() as session, session.begin():
        conn = await session.connection()
        head = await lock_head(conn, old_key)
        if before is not None and (head.seq, head.hash) != (before.seq, before.hash):
            raise AuditTampered(
                "nothing re-signed: the chain grew while it was verified; stop every gateway "
                "that uses the old key, then run resign again"
            )
        if not head_is_genuine(old_key, head):
            raise AuditTampered("nothing re-signed: the head is not signed with the old key")
        renewed = await _resign_checkpoints(session, old_key, new_key)
        fresh = signed_head(new_key, head.seq, head.hash)
        await session.execute(
            update(AuditHead).where(AuditHead.id == HEAD_ID).values(signature=fresh.signature)
        )
        note = AuditEntry(
            ts=iso_utc(datetime.now(UTC)),
            kind="admin",
            action="audit.resign",
            user=actor,
            detail={
                "old_key": key_id(old_key),
                "new_key": key_id(new_key),
                "head_seq": head.seq,
                "checkpoints": renewed,
            },
        )
        new_head = await extend(conn, new_key, [note])
    if witness is not None:
        witness.note(new_head, {"event": "resign", "old_key": key_id(old_key)})
    return Resigned(new_head, verdict.checked, renewed)


async def _resign_checkpoints(session: AsyncSession, old_key: bytes, new_key: bytes) -> int:
    rows = (
        await session.execute(
            select(
                AuditCheckpoint.id,
                AuditCheckpoint.upto_seq,
                AuditCheckpoint.last_hash,
                AuditCheckpoint.created_at,
                AuditCheckpoint.signature,
            )
        )
    ).all()
    renewed = 0
    for row_id, upto, last_hash, created_at, signature in rows:
        if not checkpoint_is_genuine(old_key, Checkpoint(upto, last_hash, created_at, signature)):
            raise AuditTampered(
                f"nothing re-signed: the checkpoint at record {upto} is not signed with the old key"
            )
        fresh = signed_checkpoint(new_key, upto, last_hash, created_at)
        await session.execute(
            update(AuditCheckpoint)
            .where(AuditCheckpoint.id == row_id)
            .values(signature=fresh.signature)
        )
        renewed += 1
    return renewed
