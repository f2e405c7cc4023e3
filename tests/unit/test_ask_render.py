"""``ask``'s streaming Markdown painter and the REPL's and ``-x``'s pure helpers."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from enclave.client.conversation import (
    IMAGE_TOKENS,
    Attachment,
    estimate_tokens,
    fit,
    prompt_text,
    transcript_markdown,
)
from enclave.client.execute import extract_command
from enclave.client.render import (
    BOLD,
    CODE_SPAN,
    ERASE_LINE,
    HEADING,
    Markdown,
    Plain,
    display_width,
    fence_of,
    for_terminal,
)

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

ANSWER = (
    "# Fixing it\n\nRun **this** with `sudo`:\n- one\n\n```python\n"
    'def f(x):\n    return """a\nb"""\n```\n'
    "Then 中文 text.\n"
)


def screen(painted: str) -> str:
    """What a terminal shows: styles dropped; a line erased with ``\\r\\x1b[2K`` and
    written again counts once."""
    lines = []
    for line in painted.split("\n"):
        shown = line.rsplit(ERASE_LINE, 1)[1] if ERASE_LINE in line else line
        lines.append(ANSI.sub("", shown))
    return "\n".join(lines)


def paint(text: str, step: int, columns: int = 80) -> str:
    out = io.StringIO()
    painter = Markdown(out, columns=columns)
    for start in range(0, len(text), step):
        painter.feed(text[start : start + step])
    painter.finish()
    return out.getvalue()


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_the_screen_shows_exactly_the_answer_however_it_is_chunked(step: int) -> None:
    painted = paint(ANSWER, step)
    assert screen(painted) == ANSWER
    assert painted == paint(ANSWER, 1)  # styles decided per character, not per chunk


def test_prose_is_styled_without_ever_being_repainted() -> None:
    painted = paint(ANSWER, 3)
    prose = painted.split("```python")[0]
    assert "\r" not in prose
    assert HEADING + "Fixing it" in prose
    assert BOLD + "this" in prose
    assert CODE_SPAN + "sudo" in prose


def test_each_finished_code_line_is_repainted_once_with_highlighting() -> None:
    painted = paint(ANSWER, 5)
    assert painted.count(ERASE_LINE) == 3  # the three lines inside the fence
    code_lines = [line for line in painted.split("\n") if ERASE_LINE in line]
    assert all("\x1b[38;5;" in line.split(ERASE_LINE)[1] for line in code_lines)
    # the string's second line is coloured as a string: the block is lexed as a whole
    string_colour = re.search(r"(\x1b\[38;5;\d+m)a", code_lines[1])
    assert string_colour is not None
    assert string_colour.group(1) + "b" in code_lines[2]


def test_a_code_line_wider_than_the_terminal_is_left_as_streamed() -> None:
    long_line = "x = " + "1 + " * 30 + "1"
    painted = paint(f"```python\n{long_line}\nok = 1\n```\n", 4, columns=60)
    assert painted.count(ERASE_LINE) == 1  # only the short line
    assert screen(painted).splitlines()[1] == long_line


def test_an_unknown_language_or_theme_leaves_code_plain() -> None:
    out = io.StringIO()
    painter = Markdown(out, theme="no-such-theme")
    painter.feed("```python\nx = 1\n```\n```nosuchlang\ny\n```\n")
    painter.finish()
    assert ERASE_LINE not in out.getvalue()
    assert screen(out.getvalue()) == "```python\nx = 1\n```\n```nosuchlang\ny\n```\n"


def test_an_unfinished_answer_gets_its_line_ended_and_styles_reset() -> None:
    out = io.StringIO()
    painter = Markdown(out)
    painter.feed("some `cod")
    painter.finish()
    assert out.getvalue().endswith("\x1b[0m\n")


def test_fences_and_widths() -> None:
    assert fence_of("```python") == ("```", "python")
    assert fence_of("  ~~~~") == ("~~~~", "")
    assert fence_of("``x`` y") is None
    assert fence_of("     ```") is None  # indented code, not a fence
    assert display_width("中文ab") == 6


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_markdown_only_on_a_terminal_that_takes_colour() -> None:
    assert isinstance(for_terminal(FakeTty(), raw=False, theme="monokai", env={}), Markdown)
    assert isinstance(for_terminal(io.StringIO(), raw=False, theme="monokai", env={}), Plain)
    assert isinstance(for_terminal(FakeTty(), raw=True, theme="monokai", env={}), Plain)
    assert isinstance(for_terminal(FakeTty(), raw=False, theme="none", env={}), Plain)
    env = {"NO_COLOR": "1"}
    assert isinstance(for_terminal(FakeTty(), raw=False, theme="monokai", env=env), Plain)


def test_plain_writes_what_arrives_and_ends_the_line() -> None:
    out = io.StringIO()
    painter = Plain(out)
    painter.feed("a **b**")
    painter.finish()
    assert out.getvalue() == "a **b**\n"


# --- the REPL's helpers -------------------------------------------------------------------


def test_the_prompt_counts_what_is_staged() -> None:
    image = Attachment("a.png", image_url="data:image/png;base64,AA==")
    text = Attachment("b.txt", text="hello")
    assert prompt_text([]) == "User > "
    assert prompt_text([image]) == "User (1 image) > "
    assert prompt_text([image, image, text]) == "User (2 images, 1 file) > "


def test_token_estimates_count_cjk_and_images_cautiously() -> None:
    ascii_only = estimate_tokens({"role": "user", "content": "a" * 400})
    chinese = estimate_tokens({"role": "user", "content": "中" * 400})
    assert ascii_only < 120
    assert chinese >= 400
    with_image = {
        "role": "user",
        "content": [
            {"type": "text", "text": "hi"},
            {"type": "image_url", "image_url": {"url": "data:"}},
        ],
    }
    assert estimate_tokens(with_image) > IMAGE_TOKENS


def turn(role: str, words: int) -> dict[str, object]:
    return {"role": role, "content": "word " * words}


def test_fit_drops_the_oldest_turns_and_never_starts_with_an_answer() -> None:
    history = [turn("user", 100), turn("assistant", 100), turn("user", 10), turn("assistant", 10)]
    question = turn("user", 10)
    kept, left_out = fit(history, question, budget=10_000)
    assert (kept, left_out) == (history, 0)
    kept, left_out = fit(history, question, budget=60)
    assert kept == history[2:]
    assert left_out == 2
    short = [turn("user", 100), turn("assistant", 10), turn("user", 10), turn("assistant", 10)]
    kept, left_out = fit(short, question, budget=70)  # room for the last three messages...
    assert kept == short[2:]  # ...but an answer without its question goes
    assert left_out == 2


def test_a_saved_conversation_is_markdown_with_both_sides() -> None:
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:"}},
            ],
        },
        {"role": "assistant", "content": "A dialog.\n"},
    ]
    text = transcript_markdown(messages, "qwen")
    assert text.startswith("# ask — qwen, ")
    assert "## User (1 image)\n\nwhat is this?\n\n## Assistant\n\nA dialog.\n" in text


# --- ask -x ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "command"),
    [
        ("find / -size +1G", "find / -size +1G"),
        ("```bash\n$ du -sh * | sort -h\n```", "du -sh * | sort -h"),
        ("Here you go:\n```sh\nls -la\n```\nThat lists files.", "ls -la"),
        ("`df -h`", "df -h"),
        ("   ", ""),
    ],
)
def test_the_command_is_taken_out_of_the_answer(answer: str, command: str) -> None:
    assert extract_command(answer) == command
