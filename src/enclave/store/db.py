"""The async engine and sessions. SQLite gets WAL, foreign keys and a busy timeout."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

__all__ = ["AsyncSession", "make_engine", "sessions"]

BUSY_TIMEOUT_S = 30  # four gateways starting together on a slow host waited over 5 s
SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}",
    "PRAGMA synchronous=NORMAL",  # WAL: a process crash loses nothing committed
    "PRAGMA foreign_keys=ON",
)


def make_engine(url: str, **options: Any) -> AsyncEngine:
    engine = create_async_engine(url, **options)
    if engine.dialect.name == "sqlite":
        prepare_sqlite_file(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def prepare_sqlite_file(url: str) -> None:
    """Create the database file (owner only) and its folder, and put it in WAL mode.

    WAL is a property of the file, so it is set once here and not by every connection:
    a connection switching a new file to WAL while another process held the write lock
    for its migrations deadlocked the two until the busy timeout (SQLite does not call
    the busy handler there). Racing switches alone fail fast and are retried.
    """
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    if database.startswith("file:"):  # a URI filename, with its query, is left to SQLite
        database = url.split(":///", 1)[1]
        if "mode=memory" in database:
            return
    else:
        database = str(Path(database).expanduser())
        _create_private(Path(database))
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            with contextlib.closing(sqlite3.connect(database, uri=True, timeout=1)) as db:
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _create_private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # SQLite gives -wal and -shm the mode of the database file: make that its owner's only
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
