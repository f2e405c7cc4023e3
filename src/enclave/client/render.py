"""How ``ask`` paints a streamed answer: plain text, or Markdown on a terminal.

:class:`Plain` writes each piece as it arrives (pipes, ``--raw``, ``NO_COLOR``).

:class:`Markdown` colours Markdown *while it streams*, never repainting what is already
on the screen, except one code line at a time. Every character is painted the moment it
arrives, in a style decided by what came before it on its line: a heading (``# ``), a
list marker, a quote, ``**bold**``, ```code spans```. The markers stay visible (dimmed),
as in a Markdown editor, so nothing has to be taken back. Inside a fenced code block a
line is painted plainly as it streams; when its newline arrives, that one line is
repainted with syntax highlighting (Pygments, in the ``theme`` style), if it fits on one
terminal row. The whole block so far is lexed each time, so multi-line strings and
comments are coloured correctly.
"""

from __future__ import annotations

import contextlib
import threading
import unicodedata
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from pygments.formatter import Formatter
    from pygments.lexer import Lexer
    from pygments.token import _TokenType

RESET = "\x1b[0m"
DIM = "\x1b[2m"
BOLD = "\x1b[1m"
HEADING = "\x1b[1;36m"
CODE_SPAN = "\x1b[33m"
MARKER = "\x1b[35m"
QUOTE = "\x1b[3;37m"
ERASE_LINE = "\r\x1b[2K"


class Renderer(Protocol):
    def feed(self, text: str) -> None: ...

    def finish(self) -> None:
        """End the answer: reset styles, end the last line."""
        ...


class Plain:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.at_line_start = True

    def feed(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self.at_line_start = text.endswith("\n")

    def finish(self) -> None:
        if not self.at_line_start:
            self.out.write("\n")
            self.out.flush()
        self.at_line_start = True


def display_width(text: str) -> int:
    """Terminal columns of ``text``: CJK wide characters take two, combining marks none,
    a tab up to eight (counted as eight: only ever used to decide a line still fits)."""
    width = 0
    for char in text:
        if char == "\t":
            width += 8
        elif unicodedata.combining(char):
            continue
        elif unicodedata.east_asian_width(char) in ("W", "F"):
            width += 2
        else:
            width += 1
    return width


def fence_of(line: str) -> tuple[str, str] | None:
    """``("```", "python")`` for a fence line, else ``None``."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3:
        return None
    for mark in ("`", "~"):
        run = len(stripped) - len(stripped.lstrip(mark))
        if run >= 3:
            info = stripped[run:].strip()
            if mark == "`" and "`" in info:
                return None
            return mark * run, info.split(" ")[0] if info else ""
    return None


def closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and not stripped.lstrip(fence[0])


class Markdown:
    """Streams Markdown to a terminal with ANSI styles (see the module docstring)."""

    def __init__(self, out: TextIO, *, theme: str = "monokai", columns: int = 80) -> None:
        self.out = out
        self.theme = theme
        self.columns = columns
        self.line = ""  # the current line's text so far (already painted)
        self.style = ""  # the ANSI style in effect at the end of the painted text
        self.fence: str | None = None  # inside a code block: its fence
        self.lang = ""
        self.block: list[str] = []  # the code block's finished lines
        self.bold = False
        self.span = 0  # inside a code span: the length of its opening backtick run
        self.ticks = 0  # backticks just seen (a run may be longer than one)
        self._lexer: Lexer | None = None
        self._formatter: Formatter[str] | None = None
        self._loading: threading.Thread | None = None

    def preload(self) -> None:
        """Import Pygments and the theme in the background, while the answer is awaited:
        done on the first code line, the import would hold up the chunks behind it."""
        threading.Thread(target=_import_pygments, args=(self.theme,), daemon=True).start()

    # --- streaming -----------------------------------------------------------------------

    def feed(self, text: str) -> None:
        pieces: list[str] = []
        for char in text:
            if char == "\n":
                pieces.append(self._end_line())
            else:
                pieces.append(self._char(char))
        self.out.write("".join(pieces))
        self.out.flush()

    def finish(self) -> None:
        tail = RESET if self.style else ""
        if self.line:
            tail += "\n"
        self.out.write(tail)
        self.out.flush()
        self.line, self.style, self.fence, self.block = "", "", None, []
        self.bold, self.span, self.ticks = False, 0, 0

    # --- one character -----------------------------------------------------------------

    def _char(self, char: str) -> str:
        before = self.line
        self.line += char
        if self.fence is not None:
            mark = self.line.strip(" ")
            return self._paint(char, DIM if mark and not mark.strip(self.fence[0]) else "")
        if not before.strip(" ") and char == "~":
            return self._paint(char, DIM)  # maybe a fence; decided at the newline
        if fence_of(before) is not None:
            return self._paint(char, DIM)  # the info string of a fence
        return self._paint(char, self._prose_style(before, char))

    def _prose_style(self, before: str, char: str) -> str:
        head = before.lstrip(" ")
        line = head + char
        if line.startswith("#"):
            hashes = len(line) - len(line.lstrip("#"))
            if hashes <= 6 and (len(line) == hashes or line[hashes] == " "):
                return HEADING if len(line) > hashes + 1 else MARKER
        if line.startswith(">"):
            return QUOTE
        if self._is_marker(head, char):
            return MARKER
        return self._inline(char)

    @staticmethod
    def _is_marker(head: str, char: str) -> bool:
        """A list bullet or number (``- ``, ``* ``, ``1. ``) as it is being typed."""
        if not head:
            return char in "-*+" or char.isdigit()
        if head in ("-", "*", "+") and char == " ":
            return True
        return head.isdigit() and (char.isdigit() or char in ".)")

    def _inline(self, char: str) -> str:
        if char == "`":
            self.ticks += 1
            if self.span and self.ticks == self.span:
                self.span = 0
                self.ticks = 0
                return DIM
            return DIM
        if self.ticks and not self.span:
            self.span = self.ticks  # a run of backticks opened a span
        self.ticks = 0
        if self.span:
            return CODE_SPAN
        if char == "*":
            if self.line.endswith("**"):
                self.bold = not self.bold
            return DIM
        return BOLD if self.bold else ""

    def _paint(self, char: str, style: str) -> str:
        if style == self.style:
            return char
        self.style = style
        return RESET + style + char if style else RESET + char

    # --- the end of a line -------------------------------------------------------------

    def _end_line(self) -> str:
        line, painted = self.line, RESET if self.style else ""
        self.line, self.style = "", ""
        self.bold, self.span, self.ticks = False, 0, 0
        if self.fence is None:
            found = fence_of(line)
            if found is not None:
                self.fence, self.lang = found
                self.block, self._lexer, self._formatter = [], None, None
                self._loading = threading.Thread(target=self._load_tools, daemon=True)
                self._loading.start()  # the lexer loads while the first code line streams
            return painted + "\n"
        if closes(line, self.fence):
            self.fence = None
            return painted + "\n"
        self.block.append(line)
        return painted + self._highlighted(line) + "\n"

    def _highlighted(self, line: str) -> str:
        """The code line again, coloured, over its plain self; "" when it wrapped."""
        if not self.lang or not line.strip() or display_width(line) >= self.columns:
            return ""
        coloured = self._highlight_last()
        return ERASE_LINE + coloured + RESET if coloured else ""

    def _highlight_last(self) -> str:
        from pygments import lex

        if self._loading is not None:
            self._loading.join()
            self._loading = None
        if self._lexer is None or self._formatter is None:
            return ""
        source = "\n".join(self.block) + "\n"
        lines: list[list[tuple[_TokenType, str]]] = [[]]
        for kind, value in lex(source, self._lexer):
            parts = value.split("\n")
            for index, part in enumerate(parts):
                if index:
                    lines.append([])
                if part:
                    lines[-1].append((kind, part))
        last = lines[-2] if len(lines) > 1 else lines[-1]
        return self._format(last)

    def _format(self, tokens: list[tuple[_TokenType, str]]) -> str:
        import io

        assert self._formatter is not None
        buffer = io.StringIO()
        self._formatter.format(iter(tokens), buffer)
        return buffer.getvalue().rstrip("\n")

    def _load_tools(self) -> None:
        self._lexer, self._formatter = self._tools()

    def _tools(self) -> tuple[Lexer, Formatter[str] | None]:
        from pygments.formatters import Terminal256Formatter
        from pygments.lexers import TextLexer, get_lexer_by_name
        from pygments.util import ClassNotFound

        try:
            lexer: Lexer = get_lexer_by_name(self.lang) if self.lang else TextLexer()
        except ClassNotFound:
            lexer = TextLexer()
        lexer.stripnl = False
        lexer.ensurenl = False
        try:
            return lexer, Terminal256Formatter(style=self.theme)
        except ClassNotFound:
            return lexer, None  # an unknown theme: code stays plain


def _import_pygments(theme: str) -> None:
    from pygments.formatters import Terminal256Formatter
    from pygments.util import ClassNotFound

    with contextlib.suppress(ClassNotFound):
        Terminal256Formatter(style=theme)


def for_terminal(out: TextIO, *, raw: bool, theme: str, env: dict[str, str]) -> Renderer:
    """Markdown when ``out`` is a terminal that takes colour; plain otherwise."""
    import shutil

    if raw or theme == "none" or "NO_COLOR" in env or env.get("TERM") == "dumb":
        return Plain(out)
    try:
        tty = out.isatty()
    except ValueError:
        tty = False
    if not tty:
        return Plain(out)
    painter = Markdown(out, theme=theme, columns=shutil.get_terminal_size().columns)
    painter.preload()
    return painter
