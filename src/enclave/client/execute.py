"""``ask -x "find files over 1 GB"``: propose a shell command, run it only when confirmed.

The model answers with the ``shell`` role (one command, no prose). The command is shown
and the user is asked on the terminal itself (``/dev/tty``, so it works with piped
stdin): ``y`` runs it with ``$SHELL -c`` (exit code: the command's), ``e`` edits it first,
anything else leaves it unrun (exit 0). Without a terminal to ask on, nothing runs
(exit 2): a proposed command is never executed unseen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from enclave.client.askconfig import AskConfig
    from enclave.client.options import AskOptions

FENCED = re.compile(r"```[\w+-]*\n(.*?)\n?```", re.DOTALL)


def propose_and_run(
    options: AskOptions,
    config: AskConfig,
    question: str,
    system: str | None,
    api_key: str | None,
) -> int:
    """``-x``: the proposed command, run only after the user confirms on the terminal."""
    from enclave.client.attachments import build_messages
    from enclave.client.chat import ChatClient, chat_request

    messages = build_messages(
        question, options.images, system, max_side=int(config.value("max_image_side"))
    )
    body = chat_request(str(config.value("model")), messages, max_tokens=options.max_tokens)
    with ChatClient(str(config.value("url")), api_key=api_key) as client:
        command = extract_command(client.complete(body).content)
    if not command:
        print("ask: the model proposed no command", file=sys.stderr)
        return 1
    tty = open_tty()
    if tty is None:
        print(command)
        print("ask: not run: no terminal to confirm on", file=sys.stderr)
        return 2
    chosen = confirm(command, tty)
    if chosen is None:
        print("ask: not run", file=sys.stderr)
        return 0
    return run(chosen)


def extract_command(answer: str) -> str:
    """The command in a model's answer: inside a code fence if there is one, without a
    ``$ `` prompt or wrapping backticks."""
    found = FENCED.search(answer)
    text = found.group(1) if found else answer
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    lines = [line[2:] if line.startswith("$ ") else line for line in lines]
    command = "\n".join(lines).strip()
    if command.startswith("`") and command.endswith("`"):
        command = command.strip("`").strip()
    return command


def open_tty() -> tuple[TextIO, TextIO] | None:
    """The controlling terminal for reading and writing, or ``None``."""
    try:
        reader = open("/dev/tty")  # noqa: SIM115 - closed by confirm()
    except OSError:
        return None
    return reader, open("/dev/tty", "w")


def confirm(command: str, tty: tuple[TextIO, TextIO]) -> str | None:
    """Ask; the command to run (maybe edited) or ``None``."""
    reader, writer = tty
    try:
        writer.write(f"\n  {command}\n\nRun it? [y]es / [e]dit / [N]o: ")
        writer.flush()
        reply = reader.readline().strip().lower()
        if reply in ("y", "yes"):
            return command
        if reply in ("e", "edit"):
            return edit(command, writer)
        return None
    finally:
        reader.close()
        writer.close()


def edit(command: str, writer: TextIO) -> str | None:
    from prompt_toolkit import prompt

    edited = prompt("$ ", default=command).strip()
    return edited or None


def run(command: str, env: dict[str, str] | None = None) -> int:
    environ = dict(os.environ if env is None else env)
    shell = environ.get("SHELL") or "/bin/sh"
    return subprocess.run([shell, "-c", command], env=environ, check=False).returncode
