"""Appending a batch to the chain on PostgreSQL in ONE round trip.

The locked path (:func:`enclave.audit.writer.extend`) takes five: BEGIN, ``SELECT …
FOR UPDATE`` of the head, INSERT, head UPDATE, COMMIT. But the writer already knows the
head: it signed the last one. So it links the batch to that head in Python and sends a
single statement, in autocommit, that moves the head only if it is still exactly the one
the writer knows (seq, hash AND signature), and inserts the records only if the head
moved::

    WITH moved AS (UPDATE audit_head SET … WHERE id = 1 AND seq = … AND hash = … AND
                   signature = … RETURNING id),
         added AS (INSERT INTO audit SELECT … WHERE EXISTS (SELECT FROM moved) …)
    SELECT count(*) FROM added

One statement is one transaction: both happen or neither. The row lock of the UPDATE
serialises it with every other writer (another replica, a prune, a resign); under READ
COMMITTED a concurrent change makes the WHERE false, so nothing is written and the
caller falls back to the locked path, which reads the head afresh and checks its
signature. The chain therefore cannot fork, and a head this gateway did not sign is
never extended without that check.
"""

from __future__ import annotations

import json
from typing import Any

from enclave.audit.chain import RECORD_FIELDS, AuditEntry, Head, linked_rows

HEAD_ID = 1
_COLUMNS = ", ".join(f'"{name}"' for name in RECORD_FIELDS)
APPEND = f"""
WITH moved AS (
    UPDATE audit_head SET seq = $1, hash = $2, signature = $3
    WHERE id = {HEAD_ID} AND seq = $4 AND hash = $5 AND signature = $6
    RETURNING id
), added AS (
    INSERT INTO audit ({_COLUMNS})
    SELECT {_COLUMNS} FROM json_populate_recordset(NULL::audit, $7::text::json)
    WHERE EXISTS (SELECT FROM moved)
    RETURNING 1
)
SELECT count(*) FROM added
"""  # noqa: S608 - the names are the table's own columns, the values are parameters


def plan(key: bytes, head: Head, entries: list[AuditEntry]) -> tuple[Head, str]:
    """The head after ``entries`` and the records as one JSON array (the statement's $7)."""
    rows, new = linked_rows(key, head, entries)
    return new, json.dumps(rows, ensure_ascii=False)


async def append(driver: Any, key: bytes, head: Head, entries: list[AuditEntry]) -> Head | None:
    """Append ``entries`` after ``head`` with the asyncpg connection ``driver``, in one
    round trip; the new head, or None if nothing was written: the stored head is no
    longer ``head``, or the records hold what the statement cannot carry (a NUL in a
    ``detail`` string, which the locked path stores)."""
    new, rows = plan(key, head, entries)
    if "\\u0000" in rows:  # json_populate_recordset refuses NUL, which a json column keeps
        return None
    params = (new.seq, new.hash, new.signature, head.seq, head.hash, head.signature, rows)
    added = await driver.fetchval(APPEND, *params)
    if added == 0:
        return None
    if added != len(entries):  # cannot happen: one statement, all or nothing
        raise RuntimeError(f"audit: {added} of {len(entries)} records inserted")
    return new
