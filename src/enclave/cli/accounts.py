"""What the commands on the server's database share: the store, the audit writer, output."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from enclave.config import Settings
from enclave.errors import InvalidRequest

if TYPE_CHECKING:
    from enclave.audit.writer import AuditWriter
    from enclave.identity import Identity
    from enclave.store.repos import Store

T = TypeVar("T")


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[tuple[Store, AuditWriter | None]]:
    """The store (migrated) and, unless auditing is off, a strict audit writer; both
    closed again, everything queued committed."""
    from enclave.audit.witness import open_witness
    from enclave.audit.writer import AuditWriter
    from enclave.secretkey import load_or_create
    from enclave.store.repos import open_store

    store = await open_store(settings.database)
    audit = None
    try:
        if settings.audit.enabled:
            key = load_or_create(settings.secret_file)
            witness = open_witness(settings, key)
            audit = AuditWriter(store.sessions, key, strict=True, witness=witness)
        yield store, audit
    finally:
        if audit:
            await audit.aclose()
        await store.aclose()


def with_identity(settings: Settings, work: Callable[[Identity], Awaitable[T]]) -> T:
    """Open the store (migrating it), run ``work``, and close everything again."""

    async def run() -> T:
        from enclave.identity import Identity

        async with opened(settings) as (store, audit):
            return await work(Identity(store, audit))

    return asyncio.run(run())


def read_password(from_stdin: bool) -> str:
    """From standard input (one line) or typed twice at a prompt, never echoed."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not sys.stdin.isatty():
        raise InvalidRequest("no terminal to type the password on: use --password-stdin")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise InvalidRequest("the two passwords differ")
    if not password:
        raise InvalidRequest("the password is empty")
    return password


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_text(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def show(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    print(json.dumps(rows, indent=2, ensure_ascii=False) if as_json else table(rows, columns))


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
