"""``ask`` on a real terminal: the REPL, Markdown painting and ``-x``, driven in tmux
(send-keys / capture-pane) against the real fake upstream.

tmux is installed by ``./task test`` (``need_x11``); without it these tests are skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.helpers import fake_upstream_for
from tests.terminal import Terminal

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.fake_upstream(vision=True, tokens=60, context_length=4096),
]
ASK = Path(sys.executable).parent / "ask"
PNG = Path(__file__).resolve().parents[1] / "data" / "ocr_chinese.png"


def ask_env(fake: FakeUpstream, home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "SHELL": "/bin/sh",
        "ENCLAVE_URL": fake.root,
        "ENCLAVE_MODEL": "fake-model",
        "ASK_CONFIG": "/nonexistent/ask.toml",
        "ASK_HISTORY": str(home / "ask.db"),
    }


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeUpstream]:
    """A fresh fake for each test, not one per module: tests stop answers midway."""
    with fake_upstream_for(request.node) as upstream:
        yield upstream


@pytest.fixture
def terminal(fake: FakeUpstream, tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal([str(ASK)], ask_env(fake, tmp_path), tmp_path)
    yield term
    term.close()


PROMPT = re.compile(r"User( \([^)]*\))? >$")


def send(terminal: Terminal, text: str) -> None:
    """Type a line once the prompt waits for it, then Enter, and wait until the line is
    taken. Keys typed ahead can reach the terminal between two prompts, where the tty
    (not prompt_toolkit) reads them and turns Enter into a newline."""
    terminal.wait_for(PROMPT.pattern)
    terminal.type(text)
    terminal.wait_for(PROMPT.pattern[:-1] + " " + re.escape(text) + "$")
    terminal.keys("Enter")
    terminal.wait_for(re.escape(text) + r"\n(?!\.)")  # taken: not a continuation line


def last_line(screen: str) -> str:
    return [line for line in screen.splitlines() if line.strip()][-1].rstrip()


def test_stage_an_image_ask_stop_mid_answer_and_go_on(
    fake: FakeUpstream, terminal: Terminal, tmp_path: Path
) -> None:
    terminal.wait_for(r"User >$")
    terminal.type(f":img {PNG}")
    terminal.keys("Enter")
    terminal.wait_for(r"staged image .*520x140")
    terminal.wait_for(r"User \(1 image\) >$")

    fake.configure(itl_ms=100)
    terminal.type("what is in this picture?")
    terminal.keys("Enter")
    terminal.wait_for(r"echo: what is in this picture\? images=1 texts=1 .*t12")
    terminal.keys("C-c")
    screen = terminal.wait_for(r"\(interrupted\)\nUser >")
    assert "t60" not in screen  # stopped: the answer did not run to its end
    fake.wait_stats(lambda s: s["cancelled"] == 1)  # and the server stopped generating

    fake.configure(itl_ms=0)
    terminal.type("and now?")
    terminal.keys("Enter")
    # the image and the interrupted exchange are still in the conversation
    terminal.wait_for(r"(?s)echo: and now\? images=1 texts=3 .* t60\nUser >$")

    terminal.type(f":save {tmp_path / 'chat.md'}")
    terminal.keys("Enter")
    terminal.wait_for("saved 4 messages to")
    saved = (tmp_path / "chat.md").read_text()
    assert "## User (1 image)\n\nwhat is in this picture?" in saved
    assert "(interrupted)\n\n## User\n\nand now?" in saved

    terminal.keys("C-d")
    terminal.wait_for(r"\[exit 0\]")
    listed = subprocess.run(
        [str(ASK), "history"], env=ask_env(fake, tmp_path), capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert re.search(
        r"^\s+1\s+-\s+\S+ \S+\s+4 turns\s+what is in this picture\?$", listed.stdout, re.M
    )


def test_commands_completion_and_multi_line_input(
    fake: FakeUpstream, terminal: Terminal, tmp_path: Path
) -> None:
    terminal.wait_for(r"User >$")
    terminal.type(":he")
    terminal.keys("Tab")
    terminal.wait_for(r"User > :help$")
    terminal.keys("Enter")
    screen = terminal.wait_for(r":exit +leave")
    for usage in (":img PATH", ":clip", ":file PATH", ":drop", ":clear", ":model [NAME]"):
        assert usage in screen
    for usage in (":system [TEXT|off]", ":save FILE.md", ":history [SEARCH]"):
        assert usage in screen

    terminal.type(f":img {PNG.parent}/ocr_chi")
    terminal.keys("Tab")
    terminal.wait_for(r"User > :img \S+/ocr_chinese\.png$")
    terminal.keys("Enter")
    terminal.wait_for(r"User \(1 image\) >$")
    send(terminal, ":file /no/such/file.txt")
    terminal.wait_for(r"ask: cannot read /no/such/file.txt: No such file or directory")
    send(terminal, ":drop")
    terminal.wait_for(r"dropped 1 staged attachment\nUser >$")
    send(terminal, ":nope")
    terminal.wait_for(r"unknown command :nope")

    send(terminal, ":system answer briefly")
    terminal.wait_for(r"system prompt set\nUser >$")
    terminal.type("first line")
    terminal.keys("Escape", "Enter")  # Alt-Enter: a new line, not sent yet
    terminal.wait_for(r"User > first line\n\.+$")
    terminal.type("second line")
    assert "echo:" not in terminal.screen()
    terminal.keys("Enter")
    # one question of two lines, after the system prompt: two text parts in all
    terminal.wait_for(r"echo: first line second line images=0 texts=2")

    send(terminal, ":clear")
    send(terminal, ":system off")
    send(terminal, "fresh")
    terminal.wait_for(r"echo: fresh images=0 texts=1")  # no earlier turns, no system prompt

    send(terminal, ":model nosuch")
    send(terminal, "hello")
    terminal.wait_for(r"ask: 404: .*nosuch")
    assert last_line(terminal.wait_for(r"User > hello$")) == "User > hello"  # kept to retry
    terminal.keys("C-c")  # clears the line
    send(terminal, ":exit")
    terminal.wait_for(r"\[exit 0\]")

    again = Terminal([str(ASK)], ask_env(fake, tmp_path), tmp_path)  # input history persists
    try:
        again.wait_for(r"User >$")
        again.keys("Up")
        again.wait_for(r"User > :exit$")
        again.keys("Up")
        again.wait_for(r"User > hello$")
    finally:
        again.close()


def test_a_question_typed_while_an_answer_streams_is_sent_after_it(
    fake: FakeUpstream, terminal: Terminal
) -> None:
    fake.configure(itl_ms=50)
    send(terminal, "first")
    terminal.wait_for(r"echo: first .*t5")
    # typed ahead: the tty, not the prompt, reads these keys, and turns Enter into "\n"
    terminal.type("second")
    terminal.keys("Enter")
    screen = terminal.wait_for(r"(?s)echo: second images=0 texts=3 .*t60\nUser >$")
    first = re.search(r"(?s)echo: first (.*)\nUser > second\n", screen)
    assert first, screen
    assert first[1].endswith(" t60")  # the first answer ran to its end
    assert "second" not in first[1]  # and the keys were not echoed into it
    assert "\n......" not in screen  # never a continuation line
    fake.configure(itl_ms=0)
    terminal.keys("C-d")
    terminal.wait_for(r"\[exit 0\]")


def test_the_context_is_trimmed_to_the_models_window(tmp_path: Path) -> None:
    with run_fake_upstream(tokens=8, context_length=300) as fake:
        term = Terminal([str(ASK)], ask_env(fake, tmp_path), tmp_path)
        try:
            term.wait_for(r"User >$")
            for n in range(1, 5):
                term.type(f"question {n} " + "lorem ipsum dolor sit amet " * 8)
                term.keys("Enter")
                term.wait_for(rf"echo: question {n} lorem")
            screen = term.screen()
            assert (
                "context: left out the 2 oldest messages to fit fake-model's 300-token window"
                in screen
            )
            assert "ask: " not in screen  # no error: the server never saw more than its window
            assert fake.stats()["completed"] == 4
        finally:
            term.close()


MARKDOWN = "# Fix\n\nUse **sudo** and `ls`:\n\n```python\ndef f():\n    return 1\n```\nDone.\n"


def test_markdown_on_a_terminal_plain_when_piped_or_raw(fake: FakeUpstream, tmp_path: Path) -> None:
    fake.configure(reply=MARKDOWN)
    term = Terminal([str(ASK), "how?"], ask_env(fake, tmp_path), tmp_path)
    try:
        term.wait_for(r"\[exit 0\]")
        text = term.screen()
        assert text.startswith("# Fix\n\nUse **sudo** and `ls`:\n\n```python\ndef f():\n")
        styled = term.screen(styles=True)
        assert re.search(r"\x1b\[[0-9;]*1[;m][^\n]*Fix", styled)  # the heading is bold
        code = styled.split("```python")[1].split("```")[0]
        assert len(set(re.findall(r"\x1b\[[0-9;]+m", code))) >= 2  # highlighted
    finally:
        term.close()

    raw = Terminal([str(ASK), "--raw", "how?"], ask_env(fake, tmp_path), tmp_path)
    try:
        raw.wait_for(r"\[exit 0\]")
        assert "\x1b[" not in raw.screen(styles=True).split("[exit 0]")[0].replace("\x1b[0m", "")
    finally:
        raw.close()

    piped = subprocess.run(
        [str(ASK), "how?"], env=ask_env(fake, tmp_path), capture_output=True, text=True,
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert piped.stdout == MARKDOWN


def test_json_prints_the_whole_response(fake: FakeUpstream, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ASK), "--json", "hi"], env=ask_env(fake, tmp_path), capture_output=True, text=True,
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    body = json.loads(done.stdout)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].startswith("echo: hi ")
    assert body["usage"]["completion_tokens"] == 60


def test_execute_runs_a_command_only_after_yes(fake: FakeUpstream, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    fake.configure(reply=f"```sh\ntouch {marker} && echo made-$((6*7))\n```")
    env = ask_env(fake, tmp_path)

    declined = Terminal([str(ASK), "-x", "make a file"], env, tmp_path)
    try:
        declined.wait_for(r"Run it\? \[y\]es / \[e\]dit / \[N\]o:$")
        assert f"  touch {marker} && echo made-$((6*7))" in declined.screen()
        declined.type("n")
        declined.keys("Enter")
        declined.wait_for(r"ask: not run\n\[exit 0\]")
        assert not marker.exists()
    finally:
        declined.close()

    accepted = Terminal([str(ASK), "-x", "make a file"], env, tmp_path)
    try:
        accepted.wait_for(r"Run it\? ")
        accepted.type("y")
        accepted.keys("Enter")
        accepted.wait_for(r"made-42\n\[exit 0\]")
        assert marker.exists()
    finally:
        accepted.close()

    marker.unlink()
    unattended = subprocess.run(
        [str(ASK), "-x", "make a file"], env=env, capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL, start_new_session=True,  # no controlling terminal
    )  # fmt: skip
    assert unattended.returncode == 2
    assert unattended.stderr == "ask: not run: no terminal to confirm on\n"
    assert unattended.stdout == f"touch {marker} && echo made-$((6*7))\n"
    assert not marker.exists()
