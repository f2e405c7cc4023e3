"""The admin console's reads of the audit log on a real SQLite and PostgreSQL: stats per
bucket and group (the bucket is computed in SQL, per dialect), the bounded percentile
sample, filtered keyset pages, one record whole, and the filtered export."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from enclave.audit import AuditEntry, AuditWriter, verify_store
from enclave.audit.chain import RECORD_FIELDS, iso_utc
from enclave.audit.query import AuditFilter, export_lines, one, page
from enclave.audit.stats import Window, stats
from enclave.errors import InvalidRequest, NotFound
from enclave.gateway.admin_audit import _verify_apart
from enclave.store.repos import Store

pytestmark = pytest.mark.anyio

KEY = bytes(range(32))
NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)


def api(at: datetime, **fields: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "ts": iso_utc(at), "kind": "api", "action": "POST /v1/chat/completions",
        "user": "alice", "key_prefix": "sk-a", "model": "m1", "status": 200,
        "tokens_in": 10, "tokens_out": 5, "latency_ms": 100, "request_id": "req-1",
    }  # fmt: skip
    return AuditEntry(**(values | fields))


async def write(store: Store, entries: list[AuditEntry]) -> None:
    writer = AuditWriter(store.sessions, KEY)
    await writer.append(entries)
    await writer.aclose()


async def test_stats_count_per_bucket_and_group_with_percentiles(store: Store) -> None:
    hour = timedelta(hours=1)
    entries = [
        # two hours ago: 3 calls of m1 by alice, one an error
        api(NOW - 2 * hour, latency_ms=100, detail={"ttft_ms": 20}),
        api(NOW - 2 * hour, latency_ms=300, detail={"ttft_ms": 40}),
        api(NOW - 2 * hour, latency_ms=200, status=502, tokens_out=None),
        # now: 2 calls of m2 by bob
        api(NOW, model="m2", user="bob", key_prefix="sk-b", latency_ms=50, status=429),
        api(NOW, model="m2", user="bob", key_prefix="sk-b", latency_ms=70),
        # not counted: an admin action, the admin API's own call, a call outside the window
        AuditEntry(ts=iso_utc(NOW), kind="admin", action="keys.create", status=200),
        api(NOW, action="GET /api/admin/stats", model=None),
        api(NOW - timedelta(days=3)),
    ]
    await write(store, entries)
    window = Window.ending(NOW, 6 * 3600, 3600)
    assert window.start == datetime(2025, 3, 1, 6, tzinfo=UTC)
    assert window.buckets == 7
    found = await stats(store.sessions, window, "model", max_rows=1000)
    assert not found.truncated
    assert found.sampled == 5
    by_time = {window.at(i): t.summary() for i, t in enumerate(found.series) if t.requests}
    assert set(by_time) == {"2025-03-01T10:00:00Z", "2025-03-01T12:00:00Z"}
    early = by_time["2025-03-01T10:00:00Z"]
    assert early["requests"] == 3
    assert early["errors"] == 1
    assert early["errors_5xx"] == 1
    assert early["tokens_in"] == 30
    assert early["tokens_out"] == 10
    assert (early["p50_ms"], early["p95_ms"], early["p99_ms"]) == (200, 300, 300)
    assert (early["ttft_p50_ms"], early["ttft_p95_ms"]) == (20, 40)
    late = by_time["2025-03-01T12:00:00Z"]
    assert late["errors"] == 1
    assert late["errors_5xx"] == 0
    assert late["ttft_p50_ms"] is None
    assert {k: g.requests for k, g in found.groups.items()} == {"m1": 3, "m2": 2}
    assert found.groups["m2"].summary()["p50_ms"] == 50
    assert found.totals.summary()["requests"] == 5
    by_key = await stats(store.sessions, window, "key", max_rows=1000)
    assert {k: g.requests for k, g in by_key.groups.items()} == {"sk-a": 3, "sk-b": 2}


async def test_stats_percentiles_are_bounded_to_the_newest_rows(store: Store) -> None:
    await write(store, [api(NOW - timedelta(minutes=i), latency_ms=i) for i in range(9, -1, -1)])
    found = await stats(store.sessions, Window.ending(NOW, 3600, 600), "user", max_rows=4)
    assert found.truncated
    assert found.sampled == 4
    assert found.totals.requests == 10  # counts cover the whole window
    assert sorted(found.totals.latencies) == [0, 1, 2, 3]  # the newest four


async def test_pages_filter_and_go_back_by_seq(store: Store) -> None:
    entries = [
        api(NOW, request_id=f"req-{n}", status=200 if n % 3 else 500, user=f"u{n % 2}")
        for n in range(1, 11)
    ]
    entries.append(AuditEntry(ts=iso_utc(NOW), kind="admin", action="keys.create", user="root"))
    await write(store, entries)
    first = await page(store.sessions, AuditFilter(), limit=4)
    assert [r["seq"] for r in first.rows] == [11, 10, 9, 8]
    assert first.next_before == 8
    second = await page(store.sessions, AuditFilter(), before=first.next_before, limit=4)
    assert [r["seq"] for r in second.rows] == [7, 6, 5, 4]
    last = await page(store.sessions, AuditFilter(), before=4, limit=4)
    assert [r["seq"] for r in last.rows] == [3, 2, 1]
    assert last.next_before is None
    assert "detail" not in first.rows[0]
    assert "hash" not in first.rows[0]

    async def seqs(**given: Any) -> list[int]:
        return [r["seq"] for r in (await page(store.sessions, AuditFilter(**given))).rows]

    assert await seqs(kind="admin") == [11]
    assert await seqs(action="keys.") == [11]
    assert await seqs(status="5xx") == [9, 6, 3]
    assert await seqs(status="error") == [9, 6, 3]
    assert await seqs(status="500", user="u1") == [9, 3]
    assert await seqs(q="REQ-1") == [10, 1]  # any case: req-10, req-1
    assert await seqs(q="100%") == []  # % is a character, not a wildcard
    assert await seqs(since=iso_utc(NOW + timedelta(seconds=1))) == []
    with pytest.raises(InvalidRequest, match="status"):
        await seqs(status="7xx")


async def test_one_record_whole_and_export_filtered(store: Store) -> None:
    await write(store, [api(NOW, detail={"ttft_ms": 12}, content="x" * 10) for _ in range(3)])
    record = await one(store.sessions, 2)
    assert record["detail"] == {"ttft_ms": 12}
    assert record["content"] == "x" * 10
    assert len(record["hash"]) == 64
    assert len(record["prev_hash"]) == 64
    with pytest.raises(NotFound):
        await one(store.sessions, 99)
    jsonl = b"".join([b async for b in export_lines(store.sessions, AuditFilter(), "jsonl")])
    assert [json.loads(line)["seq"] for line in jsonl.splitlines()] == [1, 2, 3]
    since = AuditFilter(status="200")
    text = b"".join([b async for b in export_lines(store.sessions, since, "csv")]).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == RECORD_FIELDS
    assert len(rows) == 4
    assert (await verify_store(store.sessions, KEY)).ok  # ttft_ms in detail is chained


async def test_verify_runs_apart_on_its_own_connection(store: Store, database_url: str) -> None:
    """What POST /api/admin/audit/verify runs in a worker thread: its own loop and store."""
    await write(store, [api(NOW) for _ in range(5)])
    verdict = await asyncio.to_thread(_verify_apart, database_url, KEY, None)
    assert verdict.ok
    assert verdict.checked == 5
