"""``ask`` with no question on a terminal: a conversation, one prompt at a time.

    User > what does this stack trace mean?       (Enter sends; Alt-Enter: a new line)
    User > :img shot.png
    User (1 image) > what is wrong in this dialog?

Commands start with ``:`` (``:help`` lists them; Tab completes them and file paths).
Images and files are *staged*: they go with the next question and stay in the
conversation. Ctrl-C stops an answer (what arrived is kept) or clears the line; Ctrl-D
leaves. The conversation is sent whole each turn and, when it outgrows the model's
window (``max_model_len`` from ``/v1/models``; else ``--context-chars``), the oldest
turns are left out with a notice. Exchanges are recorded in the history like one-shot
questions (``ask -c`` and ``ask --session NAME`` open the REPL on that conversation when
no question is given).

prompt_toolkit and httpx are imported here, never by a one-shot ``ask``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from enclave.client.conversation import (
    Attachment,
    Conversation,
    fit,
    prompt_text,
    transcript_markdown,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from enclave.client.chat import ChatClient
    from enclave.client.render import Renderer
    from enclave.client.sessions import Store


@dataclass
class ReplSettings:
    """What the REPL runs with, from ``ask``'s flags and settings; ``:model``,
    ``:system`` and ``:clear`` change it as the conversation goes."""

    url: str
    api_key: str | None
    model: str
    system: str | None
    theme: str
    raw: bool
    max_side: int
    max_file_bytes: int
    context_chars: int
    max_tokens: int | None = None
    temperature: float | None = None
    session: str | None = None


@contextmanager
def typed_ahead_unechoed() -> Iterator[None]:
    """While an answer streams, keys typed ahead are not echoed into it: the tty keeps
    them (``TCSANOW`` flushes nothing) and the next prompt shows and takes them."""
    try:
        import termios
    except ImportError:  # Windows
        yield
        return
    try:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):  # not a tty
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO  # lflag
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


# --- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    run: Callable[[Repl, str], None]
    usage: str
    help: str
    paths: bool = False  # Tab completes file paths after it


class Leave(Exception):
    """``:exit``: unwinds from a command to the loop, which leaves with exit code 0.

    Control flow, not an error: the user sees nothing, so it stays out of the tree of
    :mod:`enclave.errors` (an ``except AskError`` must never catch it)."""


class Repl:
    def __init__(
        self, settings: ReplSettings, store: Store | None, out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.store = store
        self.out = out
        self.err = err
        self.chat = Conversation()
        self.prefill = ""  # a question that failed comes back in the next prompt
        self._client: ChatClient | None = None

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        session = self._prompt_session()
        self.say(
            f"ask — {self.settings.model} at {self.settings.url}. :help lists commands; "
            "Alt-Enter adds a line; Ctrl-C stops an answer; Ctrl-D leaves."
        )
        try:
            while True:
                try:
                    text = session.prompt(prompt_text(self.chat.staged), default=self.prefill)
                except KeyboardInterrupt:
                    self.prefill = ""
                    continue
                except EOFError:
                    return 0
                self.prefill = ""
                if not self.handle(text):
                    return 0
        finally:
            if self._client is not None:
                self._client.close()

    def handle(self, text: str) -> bool:
        """One line from the prompt; ``False`` to leave."""
        stripped = text.strip()
        if not stripped:
            return True
        if stripped.startswith(":"):
            name, _, arg = stripped[1:].partition(" ")
            command = COMMANDS.get(name)
            if command is None:
                self.say(f"unknown command :{name} — :help lists them")
                return True
            try:
                command.run(self, arg.strip())
            except Leave:
                return False
            return True
        self.ask(text.rstrip())
        return True

    def say(self, line: str) -> None:
        self.err.write(line + "\n")
        self.err.flush()

    def _prompt_session(self) -> Any:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.key_binding import KeyBindings

        from enclave.client.sessions import history_path

        keys = KeyBindings()

        # Only Alt-Enter adds a line. Ctrl-J keeps prompt_toolkit's meaning (Enter): a line
        # typed ahead while an answer streams reaches us through the cooked tty, which
        # turns its Enter into "\n", and it must still be sent.
        @keys.add("escape", "enter")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        history_file = history_path().with_name("ask_repl_history")
        history_file.parent.mkdir(parents=True, exist_ok=True)
        return PromptSession(
            history=FileHistory(str(history_file)),
            completer=ReplCompleter(self),
            complete_while_typing=False,
            key_bindings=keys,
            multiline=False,
            prompt_continuation=lambda width, line, wrap: "." * (width - 1) + " ",
        )

    # --- asking --------------------------------------------------------------------------

    def client(self) -> ChatClient:
        if self._client is None:
            from enclave.client.chat import ChatClient

            self._client = ChatClient(self.settings.url, api_key=self.settings.api_key)
        return self._client

    def ask(self, question: str) -> None:
        from enclave.client.attachments import fenced
        from enclave.client.chat import chat_request, system_message, user_message
        from enclave.client.failures import explain
        from enclave.errors import ClientError

        texts = [fenced(f"file {a.label}", a.text) for a in self.chat.staged if a.text is not None]
        urls = [a.image_url for a in self.chat.staged if a.image_url is not None]
        message = user_message("\n\n".join([question, *texts]), urls)
        context = self.context(message)
        head = [system_message(self.settings.system)] if self.settings.system else []
        body = chat_request(
            self.settings.model,
            [*head, *context, message],
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
        )
        answer: list[str] = []
        asked_at = time.time()
        try:
            interrupted = self.stream(body, answer)
        except ClientError as exc:
            self.say(f"ask: {explain(exc, self.settings.url)}")
            if not answer:  # nothing lost: the question and its attachments stay
                self.prefill = question
                return
            interrupted = True
        text = "".join(answer)
        if interrupted:
            text = f"{text}\n(interrupted)" if text else "(interrupted)"
        self.chat.messages += [message, {"role": "assistant", "content": text}]
        self.chat.staged = []
        self.record(message, text, asked_at)

    def stream(self, body: dict[str, Any], answer: list[str]) -> bool:
        """Paint the answer; ``True`` when Ctrl-C stopped it."""
        painter = self.renderer()
        interrupted = False
        try:
            with typed_ahead_unechoed():
                for delta in self.client().stream(body):
                    if delta.content:
                        answer.append(delta.content)
                        painter.feed(delta.content)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            painter.finish()
        if interrupted:
            self.say("(interrupted)")
        return interrupted

    def renderer(self) -> Renderer:
        import os

        from enclave.client.render import for_terminal

        return for_terminal(
            self.out, raw=self.settings.raw, theme=self.settings.theme, env=dict(os.environ)
        )

    def context(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """The earlier turns to send, trimmed to the window with a notice."""
        window = self.window()
        if window is not None:
            reserve = self.settings.max_tokens or min(1024, window // 4)
            budget, unit = window - reserve, f"{self.settings.model}'s {window}-token window"
        else:
            budget, unit = self.settings.context_chars // 3, "--context-chars"
        kept, left_out = fit(self.chat.messages, message, budget)
        if left_out:
            self.say(f"context: left out the {left_out} oldest messages to fit {unit}")
        return kept

    def window(self) -> int | None:
        """``max_model_len`` of the model, from ``/v1/models`` (asked once)."""
        if self.chat.models is None:
            cards = self.model_cards()
            self.chat.models = [str(card.get("id")) for card in cards]
            for card in cards:
                if card.get("id") == self.settings.model and card.get("max_model_len"):
                    self.chat.window = int(card["max_model_len"])
        return self.chat.window

    def model_cards(self) -> list[dict[str, Any]]:
        """The server's model cards; none when it cannot say (the question will tell)."""
        from enclave.errors import ClientError

        try:
            return self.client().models()
        except ClientError:
            return []

    def record(self, message: dict[str, Any], answer: str, asked_at: float) -> None:
        from enclave.errors import HistoryError

        if self.store is None:
            return
        content = message["content"]
        if isinstance(content, list):
            content = content[0]["text"]
        try:
            self.chat.id = self.store.record(
                self.chat.id, content, answer, model=self.settings.model, asked_at=asked_at,
                name=self.settings.session,
            )  # fmt: skip
        except HistoryError as exc:
            self.say(f"ask: not recorded: {exc}")

    # --- staging -------------------------------------------------------------------------

    def stage_image(self, data: bytes | None, path: Path | None) -> None:
        from enclave.client import imageprep
        from enclave.errors import ClientError

        try:
            if path is not None:
                image = imageprep.prepare_file(path, self.settings.max_side)
            else:
                assert data is not None
                image = imageprep.prepare(data, "clipboard", self.settings.max_side)
        except ClientError as exc:
            self.say(f"ask: {exc.message}")
            return
        self.chat.staged.append(Attachment(image.name, image_url=image.data_url))
        self.say(f"staged {image.report()}")

    def stage_file(self, path: Path) -> None:
        from enclave.client.attachments import read_text_file
        from enclave.errors import AttachmentError

        try:
            text = read_text_file(path, self.settings.max_file_bytes, self.err)
        except AttachmentError as exc:
            self.say(f"ask: {exc}")
            return
        self.chat.staged.append(Attachment(str(path), text=text))
        self.say(f"staged {path} ({len(text)} characters)")


# --- the commands themselves -------------------------------------------------------------


def cmd_img(repl: Repl, arg: str) -> None:
    if not arg:
        repl.say("usage: :img PATH")
        return
    repl.stage_image(None, Path(arg).expanduser())


def cmd_file(repl: Repl, arg: str) -> None:
    if not arg:
        repl.say("usage: :file PATH")
        return
    repl.stage_file(Path(arg).expanduser())


def cmd_clip(repl: Repl, arg: str) -> None:
    from enclave.client import clipboard
    from enclave.errors import ClipboardError

    try:
        clip = clipboard.read()
    except ClipboardError as exc:
        repl.say(f"ask: {exc}")
        return
    if clip.image is not None:
        repl.stage_image(clip.image, None)
    else:
        text = clip.text or ""
        repl.chat.staged.append(Attachment("clipboard", text=text))
        repl.say(f"staged the clipboard's text ({len(text)} characters)")


def cmd_drop(repl: Repl, arg: str) -> None:
    count = len(repl.chat.staged)
    repl.chat.staged = []
    repl.say(f"dropped {count} staged attachment{'s' if count != 1 else ''}")


def cmd_clear(repl: Repl, arg: str) -> None:
    repl.chat.messages = []
    repl.chat.id = None
    repl.settings.session = None
    repl.say("a new conversation")


def cmd_model(repl: Repl, arg: str) -> None:
    if not arg:
        repl.window()
        known = ", ".join(repl.chat.models or []) or "none listed"
        repl.say(f"model: {repl.settings.model} (the server has: {known})")
        return
    repl.settings.model = arg
    repl.chat.window = None
    repl.chat.models = None
    repl.say(f"model: {arg}")


def cmd_system(repl: Repl, arg: str) -> None:
    if not arg:
        repl.say(f"system: {repl.settings.system or '(none)'} — `:system off` removes it")
        return
    repl.settings.system = None if arg == "off" else arg
    repl.say("system prompt removed" if arg == "off" else "system prompt set")


def cmd_save(repl: Repl, arg: str) -> None:
    if not arg:
        repl.say("usage: :save FILE.md")
        return
    path = Path(arg).expanduser()
    try:
        path.write_text(transcript_markdown(repl.chat.messages, repl.settings.model) + "\n")
    except OSError as exc:
        repl.say(f"ask: cannot write {path}: {exc.strerror or exc}")
        return
    repl.say(f"saved {len(repl.chat.messages)} messages to {path}")


def cmd_history(repl: Repl, arg: str) -> None:
    from enclave.client.sessions import summary_lines

    if repl.store is None:
        repl.say("history is off (--no-history or history = false)")
        return
    lines = summary_lines(repl.store.conversations(arg or None))
    repl.out.write("".join(line + "\n" for line in lines) or "no conversation found\n")
    repl.out.flush()


def cmd_help(repl: Repl, arg: str) -> None:
    width = max(len(command.usage) for command in COMMANDS.values())
    for command in dict.fromkeys(COMMANDS.values()):
        repl.say(f"  {command.usage:<{width}}  {command.help}")


def cmd_exit(repl: Repl, arg: str) -> None:
    raise Leave


COMMANDS: dict[str, Command] = {
    "img": Command(cmd_img, ":img PATH", "stage an image for the next question", paths=True),
    "clip": Command(cmd_clip, ":clip", "stage the clipboard (its image, else its text)"),
    "file": Command(cmd_file, ":file PATH", "stage a text file", paths=True),
    "drop": Command(cmd_drop, ":drop", "unstage everything staged"),
    "clear": Command(cmd_clear, ":clear", "start a new conversation"),
    "model": Command(cmd_model, ":model [NAME]", "show or switch the model"),
    "system": Command(cmd_system, ":system [TEXT|off]", "show, set or remove the system prompt"),
    "save": Command(cmd_save, ":save FILE.md", "write this conversation as Markdown", paths=True),
    "history": Command(cmd_history, ":history [SEARCH]", "list (or search) saved conversations"),
    "help": Command(cmd_help, ":help", "this list"),
    "exit": Command(cmd_exit, ":exit", "leave (or Ctrl-D)"),
}
COMMANDS["quit"] = COMMANDS["exit"]


class ReplCompleter(Completer):
    """Tab: command names after ``:``; file paths after ``:img``, ``:file``, ``:save``;
    model names after ``:model``."""

    def __init__(self, repl: Repl) -> None:
        self.repl = repl
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith(":"):
            return
        name, space, rest = text[1:].partition(" ")
        if not space:
            for command in COMMANDS:
                if command.startswith(name):
                    yield Completion(command + " ", start_position=-len(name))
            return
        found = COMMANDS.get(name)
        if found is not None and found.paths:
            yield from self.paths.get_completions(Document(rest, len(rest)), event)
        elif name == "model":
            for model in self.repl.chat.models or []:
                if model.startswith(rest):
                    yield Completion(model, start_position=-len(rest))
