"""Conversations for bench/web_console.py, written straight into the gateway's SQLite
database (seconds for 10,000, where the chat API would take minutes): plain SQL on the
tables of migration 0006, times as the store keeps them in SQLite (naive UTC)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

TOPICS = ["invoices", "the VPN", "a SQL index", "holiday rota", "release notes", "the budget",
          "onboarding", "a Python error", "customer email", "the roadmap"]  # fmt: skip
NEEDLE = "quarterly"  # in the title of one conversation in 100: what the search finds
LONG_TITLE = "A long thread (bench)"
LAST_WORDS = "END-OF-THREAD"  # in the last message of the long conversation
SMALL_TITLE = "A short thread (bench)"

ANSWER = """Here is what I found about {topic} (message {n}).

1. The first point, with `inline code` and **bold** text.
2. The second point, which runs a little longer so that the line wraps on a narrow screen.

```python
def step_{n}(values):
    return sorted(v for v in values if v > {n})
```

That should cover it; ask again if something is unclear."""


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def conversation_row(
    owner: str, title: str, kind: str, model: str, at: datetime
) -> tuple[str, ...]:
    when = stamp(at)
    return (str(uuid.uuid4()), owner, owner, model, kind, title, when, when)


INSERT_CONVERSATION = (
    "INSERT INTO conversations (external_id, subject, owner, assistant, kind, title, created_at,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_MESSAGE = (
    "INSERT INTO conversation_messages (conversation_id, role, content, citations, meta,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?)"
)


def seed(database: Path, owner: str, model: str, conversations: int, messages: int) -> str:
    """``conversations`` one-exchange conversations of ``owner`` a minute apart, a short
    one, and (newest) one of ``messages`` messages; the long one's id."""
    now = datetime.now(UTC)
    rows = [
        conversation_row(
            owner, f"Conversation {n} about {TOPICS[n % len(TOPICS)]}"
            + (f" ({NEEDLE} review)" if n % 100 == 7 else ""),
            "model", model, now - timedelta(minutes=n + 10),
        )
        for n in range(conversations)
    ]  # fmt: skip
    small = conversation_row(owner, SMALL_TITLE, "model", model, now - timedelta(minutes=1))
    long = conversation_row(owner, LONG_TITLE, "model", model, now)
    with sqlite3.connect(database, timeout=60) as db:
        db.executemany(INSERT_CONVERSATION, [*rows, small, long])
        ids = dict(
            db.execute("SELECT external_id, id FROM conversations WHERE owner = ?", (owner,))
        )
        db.executemany(INSERT_MESSAGE, [m for r in rows for m in exchange(ids[r[0]], 0, now)])
        db.executemany(
            INSERT_MESSAGE, [m for n in range(2) for m in exchange(ids[small[0]], n, now)]
        )
        thread = [m for n in range(messages // 2) for m in exchange(ids[long[0]], n, now)]
        last = list(thread[-1])
        last[2] = f"{last[2]}\n\n{LAST_WORDS}"
        thread[-1] = tuple(last)
        db.executemany(INSERT_MESSAGE, thread)
    return long[0]


def exchange(conversation: int, n: int, now: datetime) -> list[tuple[object, ...]]:
    """A question and its answer (Markdown with a list and a code block), with meta."""
    topic = TOPICS[n % len(TOPICS)]
    when = stamp(now)
    meta = {"model": "fake-model", "upstream": "fake", "tokens_in": 20 + n, "tokens_out": 80,
            "ttft_ms": 12.5, "latency_ms": 420.0}  # fmt: skip
    return [
        (
            conversation,
            "user",
            f"Question {n}: what should I know about {topic}?",
            "[]",
            None,
            when,
        ),
        (conversation, "assistant", ANSWER.format(topic=topic, n=n), "[]", json.dumps(meta), when),
    ]
