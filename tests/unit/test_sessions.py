"""``enclave.client.sessions``: the SQLite store of ``ask`` conversations, and trimming."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from enclave.client import sessions
from enclave.client.sessions import Store, Turn, trim
from enclave.errors import HistoryError


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "sub" / "ask.db")


def test_history_path() -> None:
    assert sessions.history_path({"ASK_HISTORY": "/x/h.db"}) == Path("/x/h.db")
    assert sessions.history_path({"XDG_DATA_HOME": "/d"}) == Path("/d/enclave/ask.db")
    assert sessions.history_path({}).parts[-3:] == ("share", "enclave", "ask.db")


def test_file_is_private_wal_and_versioned(store: Store) -> None:
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    store.close()
    Store(store.path).close()  # reopening keeps one version row
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)


def test_newer_schema_is_refused(store: Store) -> None:
    store.db.execute("UPDATE schema_version SET version = 99")
    store.close()
    with pytest.raises(HistoryError, match="schema version 99 is newer"):
        Store(store.path)


def test_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no such file"):
        Store(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()


def test_record_append_and_turns(store: Store) -> None:
    first = store.record(None, "q1", "a1", model="m", asked_at=100.0)
    assert store.record(first, "q2", "a2", model="m") == first
    store.append(first, "user", "q3", "m2", at=200.0)
    turns = store.turns(first)
    assert [(t.role, t.content) for t in turns] == [
        ("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"), ("user", "q3"),
    ]  # fmt: skip
    assert turns[0].at == 100.0
    assert (turns[0].model, turns[-1].model) == ("m", "m2")
    assert store.last() == first


def test_named_conversations(store: Store) -> None:
    a = store.record(None, "in a", "ok", name="a")
    b = store.record(None, "in b", "ok", name="b")
    assert a != b
    assert store.by_name("a") == a
    assert store.start("a") == a  # the existing one
    assert store.find("a") == a
    assert store.find(str(b)) == b
    assert store.find("zzz") is None
    assert store.last() == b


def test_list_newest_first_with_first_question(store: Store) -> None:
    one = store.record(None, "first question\nsecond line", "a", asked_at=10.0)
    two = store.record(None, "other", "b", name="work")
    store.record(one, "follow-up", "c")  # one is now the newest
    items = store.conversations()
    assert [item.id for item in items] == [one, two]
    assert items[0].first_question == "first question\nsecond line"
    assert items[0].turns == 4
    assert items[1].name == "work"
    lines = sessions.summary_lines(items)
    assert "first question second line" in lines[0]
    assert "4 turns" in lines[0]
    assert "work" in lines[1]


def test_search_case_insensitive_and_chinese(store: Store) -> None:
    tar = store.record(None, "How to use TAR --exclude?", "use tar --exclude=DIR")
    zh = store.record(None, "tar 命令如何排除特定文件夹?", "用 --exclude")
    other = store.record(None, "ÉCOLE 50%_off", "nothing")
    assert [i.id for i in store.conversations("tar")] == [zh, tar]
    assert [i.id for i in store.conversations("Exclude=dir")] == [tar]
    assert [i.id for i in store.conversations("排除")] == [zh]
    assert [i.id for i in store.conversations("école")] == [other]
    assert [i.id for i in store.conversations("50%_")] == [other]  # not wildcards
    assert store.conversations("0%x") == []
    assert store.conversations("nope") == []


def test_conversation_lines(store: Store) -> None:
    conv = store.record(None, "q", "a\n", model="m", name="n")
    summary = store.summary(conv)
    assert summary is not None
    lines = sessions.conversation_lines(summary, store.turns(conv))
    assert lines[0] == f"# conversation {conv} (n)"
    assert lines[2].endswith("] you:")
    assert lines[3] == "q"
    assert lines[5].endswith("] assistant (m):")
    assert lines[6] == "a"


def turns(*sizes: int) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", "x" * n) for i, n in enumerate(sizes)]


def test_trim_keeps_everything_that_fits() -> None:
    kept, left = trim(turns(10, 10, 10, 10), budget=100, reserve=5)
    assert (len(kept), left) == (4, 0)


def test_trim_drops_oldest_first() -> None:
    history = turns(50, 50, 10, 10)
    kept, left = trim(history, budget=30, reserve=5)
    assert kept == history[2:]
    assert left == 2


def test_trim_never_starts_with_an_answer() -> None:
    history = turns(50, 10, 10, 10)
    kept, left = trim(history, budget=35)  # the answer at [1] fits, its question does not
    assert kept == history[2:]
    assert left == 2


def test_trim_question_alone_over_budget() -> None:
    kept, left = trim(turns(1, 1), budget=10, reserve=20)
    assert (kept, left) == ([], 2)
    assert sessions.as_messages(turns(3)) == [{"role": "user", "content": "xxx"}]
