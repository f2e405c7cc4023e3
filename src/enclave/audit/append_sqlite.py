"""Appending a batch to the chain on SQLite in ONE trip to a thread.

Through aiosqlite every statement is a trip from the event loop to aiosqlite's thread
and back (a batch took 11). Here the writer keeps a plain :mod:`sqlite3` connection of
its own and runs the whole transaction — ``BEGIN IMMEDIATE`` (the write lock at once),
read the signed head, insert the records, sign and store the new head, ``COMMIT`` — as
one function on one thread: one hop per batch, whatever its size. Same pragmas as every
other connection (busy timeout, ``synchronous=NORMAL`` in WAL), so other processes and
the gateway's own aiosqlite connections wait on the same lock as before.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from enclave.audit.chain import (
    GENESIS,
    RECORD_FIELDS,
    AuditEntry,
    Head,
    head_is_genuine,
    linked_rows,
    signed_head,
)
from enclave.errors import AuditUnavailable
from enclave.store.db import BUSY_TIMEOUT_S, SQLITE_PRAGMAS

HEAD_ID = 1
TAMPERED_HEAD = (
    "the audit chain's head has an invalid signature (tampered, or secret.key was "
    "replaced: `enclave audit resign --old-key FILE`): run `enclave audit verify`"
)
_COLUMNS = ", ".join(f'"{name}"' for name in RECORD_FIELDS)
_MARKS = ", ".join("?" for _ in RECORD_FIELDS)
_INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES ({_MARKS})"  # noqa: S608 - own column names
_READ_HEAD = "SELECT seq, hash, signature FROM audit_head WHERE id = ?"
_GENESIS = "INSERT OR IGNORE INTO audit_head (id, seq, hash, signature) VALUES (?, ?, ?, ?)"
_SET_HEAD = "UPDATE audit_head SET seq = ?, hash = ?, signature = ? WHERE id = ?"
_JSON_FIELDS = frozenset({"images", "detail"})

ENTRY_SPECIFIC = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError)


def file_path(url: URL) -> str | None:
    """The file of a ``sqlite`` URL, or None where this module does not apply: an
    in-memory database, or a URI filename (left to the aiosqlite path as it was)."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return str(Path(database).expanduser())


def connect(path: str) -> sqlite3.Connection:
    """A connection for the writer's thread, with the pragmas every connection gets;
    autocommit mode, so the transaction is exactly what :func:`append` says."""
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    return conn


def append(conn: sqlite3.Connection, key: bytes, entries: list[AuditEntry]) -> Head:
    """On the calling thread, in one transaction: lock, link, insert, sign; the new head."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        head = _read_head(conn, key)
        if not head_is_genuine(key, head):
            raise AuditUnavailable(TAMPERED_HEAD)
        rows, new = linked_rows(key, head, entries)
        conn.executemany(_INSERT, [_row(row) for row in rows])
        conn.execute(_SET_HEAD, (new.seq, new.hash, new.signature, HEAD_ID))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return new


def _read_head(conn: sqlite3.Connection, key: bytes) -> Head:
    row = conn.execute(_READ_HEAD, (HEAD_ID,)).fetchone()
    if row is None:  # a new chain: its genesis head, as lock_head writes it
        genesis = signed_head(key, 0, GENESIS)
        conn.execute(_GENESIS, (HEAD_ID, 0, GENESIS, genesis.signature))
        row = conn.execute(_READ_HEAD, (HEAD_ID,)).fetchone()
    return Head(row[0], row[1], row[2])


def _row(values: dict[str, Any]) -> tuple[Any, ...]:
    """The record's values in column order; the JSON columns as SQLAlchemy stores them."""
    return tuple(
        json.dumps(values[name]) if name in _JSON_FIELDS else values[name] for name in RECORD_FIELDS
    )
