"""Reading the audit log for the admin console: filtered pages newest first (keyset on
``seq``, never an offset), one record whole, and a filtered export in seq order.

Every query reads at most one page or one batch; the export opens a session per batch,
so a slow download holds no transaction and memory stays constant however long it is.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from enclave.audit.chain import RECORD_FIELDS, StoredRecord
from enclave.errors import InvalidRequest, NotFound
from enclave.store.models import AuditRecord

BATCH = 1000  # records per export query
SUMMARY_FIELDS = (
    "seq", "ts", "kind", "action", "request_id", "user", "key_prefix", "client_ip", "model",
    "member", "status", "tokens_in", "tokens_out", "latency_ms",
)  # fmt: skip
_TABLE = AuditRecord.__table__.c
_SUMMARY = [_TABLE[name] for name in SUMMARY_FIELDS]
_WHOLE = [_TABLE[name] for name in RECORD_FIELDS]
_STATUS = re.compile(r"(?P<exact>[1-5][0-9]{2})|(?P<klass>[1-5])xx|error")


@dataclass(frozen=True)
class AuditFilter:
    """Which records: every field given must match (``None``: any).

    ``action`` matches a prefix (``keys.`` finds every key action); ``status`` is a code
    (``404``), a class (``5xx``) or ``error`` (400 and above); ``q`` is a substring of the
    action, model, user or request id, any case; ``since <= ts < until`` (``iso_utc``).
    """

    user: str | None = None
    model: str | None = None
    action: str | None = None
    kind: str | None = None
    status: str | None = None
    q: str | None = None
    since: str | None = None
    until: str | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        for name in ("user", "model", "kind"):
            value = getattr(self, name)
            if value is not None:
                found.append(_TABLE[name] == value)
        if self.action is not None:
            found.append(AuditRecord.action.startswith(self.action, autoescape=True))
        if self.status is not None:
            found.append(status_clause(self.status))
        if self.q:
            found.append(
                or_(*(_TABLE[name].icontains(self.q, autoescape=True)
                      for name in ("action", "model", "user", "request_id")))
            )  # fmt: skip
        if self.since is not None:
            found.append(AuditRecord.ts >= self.since)
        if self.until is not None:
            found.append(AuditRecord.ts < self.until)
        return found

    def described(self) -> dict[str, str]:
        """The filters given, for the audit record of an export."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


def status_clause(text: str) -> ColumnElement[bool]:
    """``404``, ``5xx`` or ``error`` as a condition on the status column."""
    match = _STATUS.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidRequest(
            f"status {text!r}: give a code (404), a class (5xx) or 'error'", param="status"
        )
    if match["exact"]:
        return AuditRecord.status == int(match["exact"])
    if match["klass"]:
        low = int(match["klass"]) * 100
        return AuditRecord.status.between(low, low + 99)
    return AuditRecord.status >= 400


@dataclass(frozen=True)
class AuditPage:
    rows: list[dict[str, Any]]  # SUMMARY_FIELDS of each record, newest first
    next_before: int | None  # pass as ``before`` for the next page; None: no more


async def page(
    sessions: async_sessionmaker[AsyncSession],
    where: AuditFilter,
    *,
    before: int | None = None,
    limit: int = 50,
) -> AuditPage:
    """Up to ``limit`` records with ``seq < before``, newest first."""
    query = _filtered(select(*_SUMMARY), where)
    if before is not None:
        query = query.where(AuditRecord.seq < before)
    query = query.order_by(AuditRecord.seq.desc()).limit(limit + 1)
    async with sessions() as session:
        rows = [dict(row) for row in (await session.execute(query)).mappings().all()]
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows, rows[-1]["seq"] if more and rows else None)


async def one(sessions: async_sessionmaker[AsyncSession], seq: int) -> dict[str, Any]:
    """Record ``seq`` whole: every column, ``detail``, content and hashes included."""
    async with sessions() as session:
        row = (
            (await session.execute(select(*_WHOLE).where(AuditRecord.seq == seq)))
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound(f"no audit record {seq} (pruned, or not written yet)", param="seq")
    return StoredRecord.from_row(row).as_row()


async def matching(
    sessions: async_sessionmaker[AsyncSession], where: AuditFilter, *, batch: int = BATCH
) -> AsyncIterator[dict[str, Any]]:
    """Every matching record whole, in seq order, ``batch`` per query and session."""
    after = 0
    while True:
        query = _filtered(select(*_WHOLE), where).where(AuditRecord.seq > after)
        query = query.order_by(AuditRecord.seq).limit(batch)
        async with sessions() as session:
            rows = (await session.execute(query)).mappings().all()
        for row in rows:
            yield StoredRecord.from_row(row).as_row()
        if len(rows) < batch:
            return
        after = rows[-1]["seq"]


async def export_lines(
    sessions: async_sessionmaker[AsyncSession], where: AuditFilter, fmt: str
) -> AsyncIterator[bytes]:
    """The matching records as JSON lines or CSV (a header row first), one batch of
    lines at a time, in the same form as ``enclave audit export``."""
    if fmt == "csv":
        yield csv_line(RECORD_FIELDS)
    lines: list[bytes] = []
    async for row in matching(sessions, where):
        if fmt == "csv":
            lines.append(csv_line([_cell(row[name]) for name in RECORD_FIELDS]))
        else:
            lines.append((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        if len(lines) >= BATCH:
            yield b"".join(lines)
            lines = []
    if lines:
        yield b"".join(lines)


def csv_line(cells: Iterator[Any] | tuple[Any, ...] | list[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().encode("utf-8")


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "" if value is None else value


def _filtered(query: Select[Any], where: AuditFilter) -> Select[Any]:
    clauses = where.clauses()
    return query.where(*clauses) if clauses else query
