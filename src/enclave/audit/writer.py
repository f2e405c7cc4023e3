"""Appending to the chain with group commit.

``write`` puts an entry on a queue; one task takes everything queued and, in ONE
transaction, locks and reads the signed head, links each entry to the one before,
inserts them, signs the new head and commits; then it resolves each waiter. The head
lock serialises writers: ``SELECT ... FOR UPDATE`` on PostgreSQL (several gateway
replicas), the write lock taken by ``UPDATE ... RETURNING`` on SQLite.

Strict: ``write`` returns once its record is committed, and raises
:class:`AuditUnavailable` if it could not be. Otherwise ``write`` returns at once and a
failure is logged. A failed batch is rolled back and retried one entry at a time, so a
bad entry fails alone; the next batch re-reads the head, so the chain never forks. The
writer keeps one connection of its own; when it is lost, the batch is tried again once
on a new one (if the lost commit had in fact gone through, the records appear twice —
never a gap). After each commit the new signed head goes to the witness
(:mod:`enclave.audit.witness`), outside the database.

What a batch costs: on PostgreSQL ONE round trip, a single statement that extends the
head the writer last signed (:mod:`enclave.audit.append_pg`), falling back to the locked
path (:func:`extend`, five round trips) only when the head moved under it; on a SQLite
file ONE hop to the writer's thread, which runs the whole transaction on a connection of
its own (:mod:`enclave.audit.append_sqlite`). Anything else (an in-memory SQLite) takes
the locked path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from enclave.audit import append_pg, append_sqlite
from enclave.audit.chain import (
    GENESIS,
    AuditEntry,
    Head,
    head_is_genuine,
    iso_utc,
    linked_rows,
    signed_head,
)
from enclave.errors import AuditUnavailable
from enclave.store.models import AuditHead, AuditRecord

if TYPE_CHECKING:
    from enclave.audit.witness import Witness

log = logging.getLogger("enclave.audit")

HEAD_ID = 1
MAX_BATCH = 512  # records per transaction
MAX_QUEUE = 100_000  # records waiting; beyond, writes fail (the database is not keeping up)
_STRING_FIELDS = (
    "kind", "action", "request_id", "user", "key_prefix", "client_ip", "model", "member",
)  # fmt: skip
_INT_FIELDS = ("status", "tokens_in", "tokens_out", "latency_ms")  # INTEGER columns
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_LENGTHS: dict[str, int] = {
    name: int(AuditRecord.__table__.c[name].type.length)  # type: ignore[attr-defined]
    for name in _STRING_FIELDS
}

FOREIGN_HEAD = (
    "the audit chain's head is not signed by this gateway's secret.key, so every audited "
    "call will fail: gateway replicas on one database must share ONE secret.key "
    "(docs/replicas.md); after replacing the key, run `enclave audit resign --old-key FILE`"
)

_Item = tuple[AuditEntry, "asyncio.Future[None] | None"]


class AuditWriter:
    """Appends entries to the chain; see the module docstring."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        key: bytes,
        *,
        strict: bool = True,
        max_batch: int = MAX_BATCH,
        max_queue: int = MAX_QUEUE,
        witness: Witness | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.sessions = sessions
        self.key = key
        self.witness = witness
        self.strict = strict
        self.max_batch = max_batch
        self.written = 0  # records committed
        self.failed = 0  # records that could not be committed
        self.batches = 0  # transactions committed
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._conn: AsyncConnection | None = None
        self._driver: Any = None  # the asyncpg connection under self._conn
        self._head: Head | None = None  # the head this writer last committed
        self._sqlite: sqlite3.Connection | None = None  # used on the executor's thread only
        self._executor = executor  # SQLite: the one thread a batch runs on
        self._owns_executor = executor is None

    def start(self) -> None:
        """Start the writer task (``write`` also starts it on first use)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def write(self, entry: AuditEntry) -> None:
        """Queue ``entry``; in strict mode, return once it is committed."""
        if self._closed:
            raise AuditUnavailable("the audit writer is closed")
        self.start()
        fitted = fit(entry)
        done = asyncio.get_running_loop().create_future() if self.strict else None
        try:
            self._queue.put_nowait((fitted, done))
        except asyncio.QueueFull:
            self.failed += 1
            log.error("audit record dropped (%s): the queue is full", entry.action)
            raise AuditUnavailable("the audit log is not keeping up; try again") from None
        if done is not None:
            await done

    async def aclose(self) -> None:
        """Commit everything queued, witness the head, then stop."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            await self._queue.put(None)
            await self._task
        await self._disconnect()
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sqlite)
            if self._owns_executor:
                self._executor.shutdown(wait=False)
        if self.witness is not None:
            await self.witness.aclose()

    async def witness_head(self) -> None:
        """Witness the stored head as it is now (a gateway starting: the chain written
        before, or while the witness was off, is anchored at once). A head this key did
        not sign is logged as an error at once: every audited call would fail."""
        query = select(AuditHead.seq, AuditHead.hash, AuditHead.signature)
        try:
            async with self.sessions() as session:
                row = (await session.execute(query.where(AuditHead.id == HEAD_ID))).first()
        except Exception as exc:
            log.warning("audit witness: cannot read the head: %s", exc)
            return
        if row is None:
            return
        head = Head(row[0], row[1], row[2])
        if not head_is_genuine(self.key, head):
            log.error(FOREIGN_HEAD)
        elif self.witness is not None:
            self.witness.note(head)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            items = [item for item in batch if item is not None]
            if items:
                await self._commit(items)
            if len(items) < len(batch):
                return

    async def _commit(self, items: list[_Item]) -> None:
        try:
            await self._append_reconnecting([entry for entry, _ in items])
        except Exception as exc:
            if len(items) == 1 or not _entry_specific(exc):
                self._settle(items, exc)
                return
            for item in items:  # one bad entry must not fail the others
                await self._commit([item])
            return
        self._settle(items, None)

    async def _append_reconnecting(self, entries: list[AuditEntry]) -> int:
        """:meth:`append`, once more on a new connection if the old one was lost (the
        database restarted, an idle connection was cut)."""
        try:
            return await self.append(entries)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.warning("audit: database connection lost (%s); reconnecting", exc.orig)
        return await self.append(entries)

    def _settle(self, items: list[_Item], exc: Exception | None) -> None:
        if exc is None:
            self.written += len(items)
        else:
            self.failed += len(items)
            log.error("audit record not committed (%s): %s", items[0][0].action, exc)
            exc = exc if isinstance(exc, AuditUnavailable) else _unavailable(exc)
        for _, done in items:
            if done is None or done.done():  # not strict, or the caller went away
                continue
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

    async def append(self, entries: list[AuditEntry]) -> int:
        """Link and insert ``entries`` in one transaction; the seq of the last one."""
        engine = self._engine()
        sqlite_file = append_sqlite.file_path(engine.url) if engine.name == "sqlite" else None
        try:
            if sqlite_file is not None:
                head = await self._append_sqlite(sqlite_file, entries)
            else:
                fast = await self._append_pg(entries) if engine.name == "postgresql" else None
                head = fast or await self._append_locked(entries)
        except BaseException:
            self._head = None
            raise
        self._head = head
        self.batches += 1
        if self.witness is not None:
            self.witness.note(head)
        return head.seq

    async def _append_locked(self, entries: list[AuditEntry]) -> Head:
        conn = await self._connection()
        try:
            async with conn.begin():
                return await extend(conn, self.key, entries)
        except BaseException:
            await self._disconnect()  # whatever went wrong, the next batch starts afresh
            raise

    async def _append_pg(self, entries: list[AuditEntry]) -> Head | None:
        """One round trip after the head this writer knows; None: take the locked path
        (no head known yet, it moved, or the statement failed: the locked path tells why)."""
        if self._head is None:
            return None
        conn = await self._connection()
        if self._driver is None:  # asked once per connection: a greenlet hop each time
            self._driver = (await conn.get_raw_connection()).driver_connection
        driver = self._driver
        try:
            return await append_pg.append(driver, self.key, self._head, entries)
        except Exception as exc:
            log.debug("audit: one-statement append failed (%s); taking the locked path", exc)
            # SQLAlchemy did not see the failure: drop the connection rather than pool it
            with contextlib.suppress(Exception):
                await conn.invalidate()
            await self._disconnect()
            return None

    async def _append_sqlite(self, path: str, entries: list[AuditEntry]) -> Head:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="audit-sqlite")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._sqlite_batch, path, entries)

    def _sqlite_batch(self, path: str, entries: list[AuditEntry]) -> Head:
        """On the executor's thread: the whole transaction (see append_sqlite)."""
        if self._sqlite is None:
            self._sqlite = append_sqlite.connect(path)
        try:
            return append_sqlite.append(self._sqlite, self.key, entries)
        except BaseException:
            self._close_sqlite()  # whatever went wrong, the next batch starts afresh
            raise

    def _close_sqlite(self) -> None:
        conn, self._sqlite = self._sqlite, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _engine(self) -> AsyncEngine:
        engine = self.sessions.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("AuditWriter needs a sessionmaker bound to an AsyncEngine")
        return engine

    async def _connection(self) -> AsyncConnection:
        """The writer's own connection: no pool round trip per batch."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            await self._disconnect()
            self._conn = await self._engine().connect()
        return self._conn

    async def _disconnect(self) -> None:
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


_INSERT = insert(AuditRecord)
_SET_HEAD = (
    update(AuditHead)
    .where(AuditHead.id == bindparam("b_id"))
    .values(seq=bindparam("b_seq"), hash=bindparam("b_hash"), signature=bindparam("b_sig"))
)
_LOCK_SQLITE = text("UPDATE audit_head SET seq = seq WHERE id = :id RETURNING seq, hash, signature")
_LOCK_FOR_UPDATE = (
    select(AuditHead.seq, AuditHead.hash, AuditHead.signature)
    .where(AuditHead.id == bindparam("id"))
    .with_for_update()
)


async def extend(conn: AsyncConnection, key: bytes, entries: list[AuditEntry]) -> Head:
    """In the caller's transaction: lock the head, append ``entries``, sign the new head."""
    head = await lock_head(conn, key)
    if not head_is_genuine(key, head):
        raise AuditUnavailable(append_sqlite.TAMPERED_HEAD)
    rows, new = linked_rows(key, head, entries)
    await conn.execute(_INSERT, rows if len(rows) > 1 else rows[0])
    await conn.execute(
        _SET_HEAD, {"b_id": HEAD_ID, "b_seq": new.seq, "b_hash": new.hash, "b_sig": new.signature}
    )
    return new


async def lock_head(conn: AsyncConnection, key: bytes) -> Head:
    """The head row, locked until the transaction ends; created at genesis when missing.

    PostgreSQL: ``SELECT ... FOR UPDATE``. SQLite: an ``UPDATE`` takes the database's
    write lock at once (rather than at the first INSERT, after the head was read).
    """
    dialect = conn.dialect.name
    lock = _LOCK_SQLITE if dialect == "sqlite" else _LOCK_FOR_UPDATE
    for _ in range(2):
        row = (await conn.execute(lock, {"id": HEAD_ID})).first()
        if row is not None:
            return Head(row[0], row[1], row[2])
        genesis = signed_head(key, 0, GENESIS)
        values = {"id": HEAD_ID, "seq": 0, "hash": GENESIS, "signature": genesis.signature}
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await conn.execute(dialect_insert(AuditHead).values(values).on_conflict_do_nothing())
    raise AuditUnavailable("cannot create the audit head row")


def fit(entry: AuditEntry) -> AuditEntry:
    """``entry`` as it will be stored (and hashed): a canonical ``ts``, strings cut to
    their column and without NUL (PostgreSQL refuses it), integers the columns cannot
    hold moved to ``detail["out_of_range"]`` (an upstream's odd usage), ``detail`` as
    plain JSON."""
    changes: dict[str, Any] = {"ts": iso_utc(datetime.fromisoformat(entry.ts))}
    for name in _STRING_FIELDS:
        value = getattr(entry, name)
        if isinstance(value, str):
            clean = value.replace("\x00", "")[: _LENGTHS[name]]
            if clean != value:
                changes[name] = clean
    if entry.content is not None and "\x00" in entry.content:
        changes["content"] = entry.content.replace("\x00", "")
    changes["images"] = [str(image) for image in entry.images]
    detail = dict(entry.detail)
    odd = {name: value for name in _INT_FIELDS if _unstorable(value := getattr(entry, name))}
    if odd:  # kept in detail, as reported; the column gets NULL
        changes.update(dict.fromkeys(odd))
        detail["out_of_range"] = odd
    changes["detail"] = json.loads(json.dumps(detail, default=str, allow_nan=False))
    return replace(entry, **changes)


def _unstorable(value: object) -> bool:
    """Would an INTEGER column (int32 on PostgreSQL) refuse ``value`` or store another one
    than was hashed (``True`` comes back as ``1``)? Either would fail the whole batch or
    make ``enclave audit verify`` call the record edited."""
    if value is None:
        return False
    return type(value) is not int or not INT32_MIN <= value <= INT32_MAX


def _entry_specific(exc: Exception) -> bool:
    """Could this failure be one entry's fault (rather than the database's)?"""
    if isinstance(exc, IntegrityError | DataError | TypeError | ValueError):
        return True
    if isinstance(exc, append_sqlite.ENTRY_SPECIFIC):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def _unavailable(exc: Exception) -> AuditUnavailable:
    error = AuditUnavailable(f"the audit record could not be committed: {exc}")
    error.__cause__ = exc
    return error
