"""``ask``'s conversations, kept locally in SQLite (storage only, no network).

The file is ``$ASK_HISTORY`` if set, else ``$XDG_DATA_HOME/enclave/ask.db`` (default
``~/.local/share/enclave/ask.db``); it is created readable by its owner only, in WAL mode
so that two ``ask`` processes can record at once. ``schema_version`` says which layout the
file has, so the layout can grow.

A conversation is a row of ``conversations`` (optionally with a unique name) and its
``messages``: user and assistant turns, each with its time and model. Errors are
:class:`~enclave.errors.HistoryError`, whose ``str()`` is a one-line reason.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from enclave.errors import HistoryError

SCHEMA_VERSION = 1
DEFAULT_CONTEXT_CHARS = 24_000
INTERRUPTED = "(interrupted)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    model TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, id);
"""


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str
    model: str | None = None
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Summary:
    id: int
    name: str | None
    first_question: str
    last_at: float
    turns: int


def history_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("ASK_HISTORY"):
        return Path(env["ASK_HISTORY"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(base) / "enclave" / "ask.db"


def _fold(text: str | None) -> str | None:
    return text.casefold() if isinstance(text, str) else text


class Store:
    """One open history file. ``create=False`` opens only a file that exists."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        try:
            if not path.exists():
                if not create:
                    raise HistoryError(f"history {path}: no such file")
                path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.db = sqlite3.connect(path, timeout=5.0, isolation_level=None)
            self.db.create_function("fold", 1, _fold, deterministic=True)
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA journal_mode = WAL")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"history {path}: {_reason(exc)}") from None

    def _migrate(self) -> None:
        self.db.executescript(_SCHEMA)  # every statement is idempotent
        with self._transaction():
            row = self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] if row else None
            if version is None:
                self.db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise HistoryError(
                    f"history {self.path}: schema version {version} is newer than this ask "
                    f"({SCHEMA_VERSION})"
                )

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- finding conversations ---------------------------------------------------------

    def last(self) -> int | None:
        """The conversation with the most recent turn."""
        row = self.db.execute(
            "SELECT conversation_id FROM messages ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return int(row[0]) if row else None

    def by_name(self, name: str) -> int | None:
        row = self.db.execute("SELECT id FROM conversations WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else None

    def find(self, ref: str) -> int | None:
        """A conversation by id (digits) or by name."""
        if ref.isdigit():
            row = self.db.execute("SELECT id FROM conversations WHERE id = ?", (int(ref),))
            found = row.fetchone()
            if found:
                return int(found[0])
        return self.by_name(ref)

    def start(self, name: str | None = None) -> int:
        """A new conversation, or the existing one of that name."""
        with self._transaction():
            return self._start(name)

    def _start(self, name: str | None) -> int:
        if name is not None:
            self.db.execute(
                "INSERT OR IGNORE INTO conversations (name, created) VALUES (?, ?)",
                (name, time.time()),
            )
            found = self.by_name(name)
            assert found is not None
            return found
        cursor = self.db.execute("INSERT INTO conversations (created) VALUES (?)", (time.time(),))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    # --- turns -------------------------------------------------------------------------

    def append(
        self,
        conversation: int,
        role: str,
        content: str,
        model: str | None = None,
        at: float | None = None,
    ) -> None:
        with self._transaction():
            self._append(conversation, role, content, model, at)

    def _append(
        self, conversation: int, role: str, content: str, model: str | None, at: float | None
    ) -> None:
        self.db.execute(
            "INSERT INTO messages (conversation_id, role, content, model, at) "
            "VALUES (?, ?, ?, ?, ?)",
            (conversation, role, content, model, time.time() if at is None else at),
        )

    def record(
        self,
        conversation: int | None,
        question: str,
        answer: str,
        *,
        model: str | None = None,
        asked_at: float | None = None,
        name: str | None = None,
    ) -> int:
        """Both turns of one exchange in one transaction, starting the conversation if
        ``conversation`` is ``None`` (named ``name``, if given); returns its id."""
        try:
            with self._transaction():
                if conversation is None:
                    conversation = self._start(name)
                self._append(conversation, "user", question, model, asked_at)
                self._append(conversation, "assistant", answer, model, None)
        except sqlite3.Error as exc:
            raise HistoryError(f"history {self.path}: {_reason(exc)}") from None
        return conversation

    def turns(self, conversation: int) -> list[Turn]:
        rows = self.db.execute(
            "SELECT role, content, model, at FROM messages WHERE conversation_id = ? ORDER BY id",
            (conversation,),
        )
        return [Turn(role, content, model, at) for role, content, model, at in rows]

    # --- listing -----------------------------------------------------------------------

    def conversations(self, search: str | None = None) -> list[Summary]:
        """Newest first; with ``search``, those with a message containing it (any case)."""
        pattern = None
        if search:
            escaped = search.casefold().replace("\\", "\\\\").replace("%", "\\%")
            pattern = "%" + escaped.replace("_", "\\_") + "%"
        rows = self.db.execute(
            "SELECT c.id, c.name, "
            " (SELECT content FROM messages WHERE conversation_id = c.id AND role = 'user'"
            "  ORDER BY id LIMIT 1),"
            " MAX(m.at), COUNT(m.id), MAX(m.id) AS newest "
            "FROM conversations c JOIN messages m ON m.conversation_id = c.id "
            "WHERE ?1 IS NULL OR c.id IN (SELECT conversation_id FROM messages "
            "  WHERE fold(content) LIKE ?1 ESCAPE '\\') "
            "GROUP BY c.id ORDER BY newest DESC",
            (pattern,),
        )
        return [Summary(int(i), name, first or "", at, n) for i, name, first, at, n, _ in rows]

    def summary(self, conversation: int) -> Summary | None:
        for item in self.conversations():
            if item.id == conversation:
                return item
        return None


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK``); nested uses join the outer one."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.outer and self.db.in_transaction:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")


# --- context for a continued conversation ------------------------------------------------


def trim(turns: Sequence[Turn], budget: int, reserve: int = 0) -> tuple[list[Turn], int]:
    """The newest turns whose text, with ``reserve`` characters (the new question), stays
    within ``budget``; and how many older turns were left out. The kept turns never start
    with an assistant turn (its question would be missing)."""
    kept: list[Turn] = []
    used = reserve
    for turn in reversed(turns):
        if used + len(turn.content) > budget:
            break
        kept.append(turn)
        used += len(turn.content)
    kept.reverse()
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept, len(turns) - len(kept)


def as_messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    return [{"role": turn.role, "content": turn.content} for turn in turns]


# --- what `ask history` prints ------------------------------------------------------------


def when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def one_line(text: str, width: int = 70) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def summary_lines(items: Sequence[Summary]) -> list[str]:
    """``ID  NAME  LAST TIME  TURNS  FIRST QUESTION``, one line each."""
    names = [item.name or "-" for item in items]
    width = max([len(name) for name in names] + [1])
    return [
        f"{item.id:>4}  {name:<{width}}  {when(item.last_at)}  {item.turns:>3} turns  "
        f"{one_line(item.first_question)}"
        for item, name in zip(items, names, strict=True)
    ]


def conversation_lines(item: Summary, turns: Sequence[Turn]) -> list[str]:
    title = f"# conversation {item.id}" + (f" ({item.name})" if item.name else "")
    lines = [title]
    for turn in turns:
        who = "you" if turn.role == "user" else f"assistant ({turn.model or '?'})"
        lines += ["", f"[{when(turn.at)}] {who}:", turn.content.rstrip("\n")]
    return lines


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
