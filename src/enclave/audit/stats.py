"""The admin dashboard's numbers, from the audit log's records of ``/v1`` calls (kind
``api``: chat, embeddings, models; the admin API's own calls are not counted).

Counts and sums (requests, errors, 5xx, tokens) are aggregated in SQL over the whole
window, per time bucket and per group (model, user or key). Latency and time-to-first-
token percentiles need the values themselves: they are computed here over the newest
``max_rows`` records of the window at most (``truncated`` says when the window held
more), so one request's work is bounded however busy the gateway was.

A record's time is its ``ts`` text (``2025-01-31T12:00:00.000000Z``); the bucket is
worked out in SQL from its first 19 characters, the one dialect-specific expression
(:class:`_Epoch`). ``ttft_ms`` is in ``detail`` of streamed calls (records written
before it was kept have none, and count for everything but the TTFT percentiles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import BigInteger, ColumnElement, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from enclave.audit.chain import iso_utc
from enclave.store.models import AuditRecord

By = Literal["model", "user", "key"]
GROUP_COLUMNS = {"model": "model", "user": "user", "key": "key_prefix"}
MAX_GROUPS = 100  # groups listed, the busiest first
SAMPLE_CHUNK = 20_000  # sample rows read per query
V1 = " /v1/"  # in the action of an API call of the OpenAI surface: "POST /v1/embeddings"


class _Epoch(FunctionElement[int]):
    """Seconds since 1970 of an ``iso_utc`` text column (its first 19 characters)."""

    type = BigInteger()
    inherit_cache = True
    name = "enclave_epoch"


@compiles(_Epoch, "sqlite")
def _epoch_sqlite(element: _Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    return f"CAST(strftime('%s', substr({arg}, 1, 19)) AS INTEGER)"


@compiles(_Epoch, "postgresql")
def _epoch_postgresql(element: _Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(EPOCH FROM CAST(substr({arg}, 1, 19) AS TIMESTAMP)) AS BIGINT)"


@dataclass(frozen=True)
class Window:
    """``buckets`` buckets of ``bucket_s`` seconds from ``start`` (a multiple of
    ``bucket_s`` since 1970, so that buckets stay put from one refresh to the next)."""

    start: datetime
    bucket_s: int
    buckets: int

    @classmethod
    def ending(cls, now: datetime, window_s: int, bucket_s: int) -> Window:
        epoch = int(now.timestamp())
        first = (epoch - window_s) // bucket_s * bucket_s
        buckets = -(-(epoch + 1 - first) // bucket_s)
        return cls(datetime.fromtimestamp(first, UTC), bucket_s, buckets)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.bucket_s * self.buckets)

    def at(self, index: int) -> str:
        moment = self.start + timedelta(seconds=self.bucket_s * index)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Tally:
    """What one bucket, one group or the whole window counted."""

    requests: int = 0
    errors: int = 0
    errors_5xx: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latencies: list[int] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)

    def add(self, row: Any) -> None:
        self.requests += int(row.requests or 0)
        self.errors += int(row.errors or 0)
        self.errors_5xx += int(row.errors_5xx or 0)
        self.tokens_in += int(row.tokens_in or 0)
        self.tokens_out += int(row.tokens_out or 0)

    def summary(self) -> dict[str, Any]:
        lat, ttft = sorted(self.latencies), sorted(self.ttfts)
        return {
            "requests": self.requests, "errors": self.errors, "errors_5xx": self.errors_5xx,
            "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
            "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95),
            "p99_ms": percentile(lat, 99),
            "ttft_p50_ms": percentile(ttft, 50), "ttft_p95_ms": percentile(ttft, 95),
        }  # fmt: skip


def percentile(ordered: list[int] | list[float], p: float) -> int | None:
    """The nearest-rank ``p``-th percentile of sorted values, in whole ms (None: none)."""
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)])


@dataclass
class Stats:
    window: Window
    series: list[Tally]
    groups: dict[str | None, Tally]
    totals: Tally
    truncated: bool
    sampled: int  # records the percentiles were computed over


async def stats(
    sessions: async_sessionmaker[AsyncSession],
    window: Window,
    by: By,
    *,
    max_rows: int,
    max_groups: int = MAX_GROUPS,
) -> Stats:
    """The window's counts per bucket and group, and percentiles from a bounded sample."""
    column = AuditRecord.__table__.c[GROUP_COLUMNS[by]]
    # whole numbers written into the SQL: the same text in SELECT and GROUP BY (bound
    # parameters would be two different expressions to PostgreSQL)
    start = literal_column(str(int(window.start.timestamp())), BigInteger)
    index = (_Epoch(AuditRecord.ts) - start) // literal_column(str(window.bucket_s), BigInteger)
    where = [
        AuditRecord.kind == "api",
        AuditRecord.action.contains(V1),  # the model traffic, not the console's own calls
        AuditRecord.ts >= iso_utc(window.start),
        AuditRecord.ts < iso_utc(window.end),
    ]
    result = Stats(window, [Tally() for _ in range(window.buckets)], {}, Tally(), False, 0)
    async with sessions() as session:
        # The window's records as a range of the primary key too (every record of the
        # window has a seq from this one on): the sample below walks that range newest
        # first instead of sorting the whole window the ts index finds.
        first = await session.scalar(
            select(func.min(AuditRecord.seq)).where(AuditRecord.ts >= iso_utc(window.start))
        )
        where.append(AuditRecord.seq >= (first or 0))
        for row in await _sums(session, index, where):
            if 0 <= row.key < window.buckets:  # every record of the window is in one
                result.series[row.key].add(row)
                result.totals.add(row)
        for row in await _sums(session, column, where, limit=max_groups):
            result.groups[row.key] = tally = Tally()
            tally.add(row)
        await _sample(
            session, result=result, index=index, column=column, where=where, max_rows=max_rows
        )
    return result


async def _sums(
    session: AsyncSession,
    key: ColumnElement[Any],
    where: list[ColumnElement[bool]],
    limit: int | None = None,
) -> list[Any]:
    status = AuditRecord.status
    columns = [
        func.count().label("requests"),
        func.sum(case((status >= 400, 1), else_=0)).label("errors"),
        func.sum(case((status >= 500, 1), else_=0)).label("errors_5xx"),
        func.sum(AuditRecord.tokens_in).label("tokens_in"),
        func.sum(AuditRecord.tokens_out).label("tokens_out"),
    ]
    query = select(key.label("key"), *columns).where(*where).group_by(key)
    if limit is not None:
        query = query.order_by(func.count().desc()).limit(limit)
    return list((await session.execute(query)).all())


async def _sample(
    session: AsyncSession,
    *,
    result: Stats,
    index: ColumnElement[Any],
    column: ColumnElement[Any],
    where: list[ColumnElement[bool]],
    max_rows: int,
) -> None:
    """Latency and TTFT of the newest ``max_rows`` records, into each tally: read
    ``SAMPLE_CHUNK`` rows per query, newest first, by key on seq."""
    ttft = AuditRecord.detail["ttft_ms"].as_float()
    columns = (AuditRecord.seq, index, column, AuditRecord.latency_ms, ttft)
    before = (await session.scalar(select(func.max(AuditRecord.seq)))) or 0
    before += 1
    while result.sampled < max_rows:
        take = min(SAMPLE_CHUNK, max_rows - result.sampled)
        query = (
            select(*columns)
            .where(*where, AuditRecord.seq < before)
            .order_by(AuditRecord.seq.desc())
            .limit(take)
        )
        rows = (await session.execute(query)).all()
        for _, bucket, key, latency, first in rows:
            _note(result, bucket, key, latency, first)
        result.sampled += len(rows)
        if len(rows) < take:
            break
        before = rows[-1][0]
    result.truncated = result.totals.requests > result.sampled


def _note(result: Stats, bucket: int, key: Any, latency: int | None, first: float | None) -> None:
    targets = [result.totals]
    if 0 <= bucket < len(result.series):
        targets.append(result.series[bucket])
    if key in result.groups:
        targets.append(result.groups[key])
    for tally in targets:
        if latency is not None:
            tally.latencies.append(latency)
        if first is not None:
            tally.ttfts.append(first)
