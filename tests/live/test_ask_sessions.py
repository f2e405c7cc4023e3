"""``ask`` sessions: the real executable against the real fake upstream, with the history
in a temporary ``$ASK_HISTORY`` file."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.helpers import run_ask

PAD = " ".join(f"t{i}" for i in range(7, 17))


@pytest.fixture
def history(tmp_path: Path, fake: FakeUpstream) -> Path:
    fake.reset()
    return tmp_path / "data" / "ask.db"


def ask(
    *args: str, fake: FakeUpstream, history: Path, config: str = "/nonexistent/ask.toml"
) -> subprocess.CompletedProcess[str]:
    return run_ask(*args, url=fake.root, ASK_CONFIG=config, ASK_HISTORY=str(history))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def sent(fake: FakeUpstream) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = fake.stats()["last_request"]["messages"]
    return messages


def answer(question: str, texts: int = 1) -> str:
    return f"echo: {question} images=0 texts={texts} {PAD}"


def test_continue_sends_the_previous_turns(fake: FakeUpstream, history: Path) -> None:
    ok(ask("what", "is", "tar", fake=fake, history=history))
    assert history.is_file()
    assert sent(fake) == [{"role": "user", "content": "what is tar"}]
    ok(ask("-c", "and", "zip?", fake=fake, history=history))
    assert sent(fake) == [
        {"role": "user", "content": "what is tar"},
        {"role": "assistant", "content": answer("what is tar")},
        {"role": "user", "content": "and zip?"},
    ]
    ok(ask("--system", "be brief", "--continue", "and", "7z?", fake=fake, history=history))
    messages = sent(fake)
    assert messages[0] == {"role": "system", "content": "be brief"}
    assert [m["content"] for m in messages[1:]][::2] == ["what is tar", "and zip?", "and 7z?"]
    listing = ok(ask("history", fake=fake, history=history)).splitlines()
    assert len(listing) == 1
    assert "6 turns" in listing[0]
    assert listing[0].endswith("what is tar")


def test_a_plain_question_starts_a_new_conversation(fake: FakeUpstream, history: Path) -> None:
    ok(ask("one", fake=fake, history=history))
    ok(ask("two", fake=fake, history=history))
    assert sent(fake) == [{"role": "user", "content": "two"}]
    listing = ok(ask("history", fake=fake, history=history)).splitlines()
    assert [line.split()[-1] for line in listing] == ["two", "one"]  # newest first


def test_named_sessions_are_separate(fake: FakeUpstream, history: Path) -> None:
    ok(ask("--session", "a", "alpha", fake=fake, history=history))
    ok(ask("--session", "b", "beta", fake=fake, history=history))
    ok(ask("--session", "a", "alpha2", fake=fake, history=history))
    assert [m["content"] for m in sent(fake)][::2] == ["alpha", "alpha2"]
    ok(ask("--session", "b", "beta2", fake=fake, history=history))
    assert [m["content"] for m in sent(fake)][::2] == ["beta", "beta2"]
    ok(ask("-c", "last", fake=fake, history=history))  # the last one is b
    assert [m["content"] for m in sent(fake)][::2] == ["beta", "beta2", "last"]
    shown = ok(ask("history", "--show", "a", fake=fake, history=history))
    assert shown.startswith("# conversation 1 (a)\n")
    assert "] you:\nalpha2\n" in shown
    assert "] assistant (fake-model):\necho: alpha images=0 texts=1 " in shown
    assert "beta" not in shown
    assert "beta2" in ok(ask("history", "--show", "2", fake=fake, history=history))


def test_history_search(fake: FakeUpstream, history: Path) -> None:
    ok(ask("tar 命令如何排除特定文件夹?", fake=fake, history=history))
    ok(ask("how do I read a TAR file", fake=fake, history=history))
    ok(ask("what is rsync", fake=fake, history=history))
    found = ok(ask("history", "tar", fake=fake, history=history)).splitlines()
    assert len(found) == 2
    assert found[0].endswith("how do I read a TAR file")
    assert found[1].endswith("tar 命令如何排除特定文件夹?")
    zh = ok(ask("history", "排除", fake=fake, history=history)).splitlines()
    assert len(zh) == 1
    assert zh[0].endswith("排除特定文件夹?")
    none = ask("history", "nothing-like-this", fake=fake, history=history)
    assert ok(none) == ""
    assert "no conversation mentions 'nothing-like-this'" in none.stderr


def test_history_is_a_command_only_with_at_most_one_term(fake: FakeUpstream, history: Path) -> None:
    result = ask("history", "of", "unix", fake=fake, history=history)
    assert ok(result).startswith("echo: history of unix ")  # a question
    assert "history of unix" in ok(ask("history", fake=fake, history=history))


def test_history_before_anything_was_recorded(fake: FakeUpstream, history: Path) -> None:
    result = ask("history", fake=fake, history=history)
    assert ok(result) == ""
    assert "no conversations recorded yet" in result.stderr
    assert not history.exists()
    missing = ask("history", "--show", "3", fake=fake, history=history)
    assert missing.returncode == 2
    assert fake.stats()["completed"] == 0


def test_unknown_conversation_and_show_without_history(fake: FakeUpstream, history: Path) -> None:
    ok(ask("hi", fake=fake, history=history))
    result = ask("history", "--show", "nope", fake=fake, history=history)
    assert result.returncode == 2
    assert result.stderr == f"ask: no conversation 'nope' in {history}\n"
    misuse = ask("--show", "1", "hello", fake=fake, history=history)
    assert misuse.returncode == 2
    assert "--show goes with `ask history`" in misuse.stderr
    both = ask("-c", "--session", "a", "hi", fake=fake, history=history)
    assert both.returncode == 2


def test_context_is_trimmed_with_a_notice(fake: FakeUpstream, history: Path) -> None:
    ok(ask("first " + "x" * 300, fake=fake, history=history))
    ok(ask("-c", "second", fake=fake, history=history))
    result = ask("-c", "--context-chars", "200", "third", fake=fake, history=history)
    ok(result)
    contents = [m["content"] for m in sent(fake)]
    assert contents[0] == "second"  # the long first exchange was left out
    assert contents[-1] == "third"
    assert len(contents) == 3
    assert result.stderr == (
        "ask: context: left out the 2 oldest of 4 earlier turns (--context-chars 200)\n"
    )
    quiet = ask("-c", "fourth", fake=fake, history=history)
    assert ok(quiet)
    assert quiet.stderr == ""
    assert len(sent(fake)) == 7


def test_no_history(fake: FakeUpstream, history: Path, tmp_path: Path) -> None:
    ok(ask("--no-history", "secret", fake=fake, history=history))
    assert not history.exists()
    ok(ask("kept", fake=fake, history=history))
    ok(ask("-c", "--no-history", "private follow-up", fake=fake, history=history))
    assert [m["content"] for m in sent(fake)][::2] == ["kept", "private follow-up"]
    config = tmp_path / "ask.toml"
    config.write_text("history = false\n")
    ok(ask("also secret", fake=fake, history=history, config=str(config)))
    listing = ok(ask("history", fake=fake, history=history))
    assert "kept" in listing
    assert "2 turns" in listing
    assert "secret" not in listing
    assert "private" not in listing
    assert ok(ask("history", "secret", fake=fake, history=history)) == ""


def test_a_broken_stream_is_recorded_as_interrupted(history: Path) -> None:
    with run_fake_upstream(error_after=3) as breaking:
        result = ask("one", "two", "three", fake=breaking, history=history)
    assert result.returncode == 1
    with run_fake_upstream() as fine:
        shown = ok(ask("history", "--show", "1", fake=fine, history=history))
    assert "echo: one two\n(interrupted)\n" in shown


def test_server_down_records_nothing(history: Path) -> None:
    with run_fake_upstream() as gone:
        pass
    result = ask("hello", fake=gone, history=history)
    assert result.returncode == 2
    with run_fake_upstream() as fine:
        assert ok(ask("history", fake=fine, history=history)) == ""
