"""``ask``: one question to enclave, the answer streamed to the terminal.

    ask how do I list listening ports on linux
    ask -i screenshot.png what does this error mean
    echo "what is a goroutine" | ask
    cat error.log | ask "why did this fail?"     # stdin attached as a fenced block
    ask -f app.py --role review "anything wrong?"
    ask config                                   # effective settings and their sources
    ask -c "and in python?"                      # continue the last conversation
    ask history tar                              # conversations that mention "tar"

Settings come from flags > environment > ``ask.toml`` > defaults
(:mod:`enclave.client.askconfig`). ``ask config`` is the settings command only when
``config`` is the whole question; ``ask config files in nginx`` is a question.

Exit codes: 0 answered; 1 the server refused or failed; 2 usage error, bad config,
server not reachable or unreadable attachment; 130 interrupted. Never a traceback.

Import cost matters here (``ask --version`` in a few tens of milliseconds): only the
standard library's ``sys`` is imported up front; argparse, httpx and the client load
when a question is actually asked.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from enclave import __version__

if TYPE_CHECKING:
    import argparse
    from pathlib import Path
    from typing import BinaryIO

    from enclave.client.askconfig import AskConfig
    from enclave.client.chat import ChatClient, ClientError
    from enclave.client.render import Renderer
    from enclave.client.sessions import Store

DEFAULT_URL = "http://127.0.0.1:8000"


class AttachmentError(Exception):
    """A file or stdin cannot be attached; ``str()`` is the one-line reason."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if wants_version(args):
        sys.stdout.write(f"ask {__version__}\n")
        return 0
    try:
        return run(args)
    except SystemExit as exc:  # argparse: --help, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        silence_stdout()
        return 1


def wants_version(args: list[str]) -> bool:
    options = args[: args.index("--")] if "--" in args else args
    return "--version" in options


def build_parser() -> argparse.ArgumentParser:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="ask",
        description="Ask enclave a question; the answer streams as it is written. "
        "Piped stdin is attached to the question (or is the question when none is given). "
        "`ask config` alone prints the effective settings.",
        epilog="Settings: flags > ENCLAVE_URL/ENCLAVE_API_KEY/ENCLAVE_MODEL > "
        "~/.config/enclave/ask.toml (or $ASK_CONFIG) > defaults.",
    )
    parser.add_argument("question", nargs="*", help="the question (read from stdin if absent)")
    parser.add_argument(
        "-i", "--image", action="append", type=Path, default=[], metavar="PATH",
        help="attach an image (png, jpeg, webp, gif, bmp); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "-f", "--file", action="append", type=Path, default=[], metavar="PATH",
        help="attach a text file as a fenced block; repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--clip", action="store_true",
        help="attach the clipboard: its image, else its text as a fenced block",
    )  # fmt: skip
    parser.add_argument(
        "--max-image-side", type=int, metavar="PX",
        help="downscale images so the longest side is at most PX (default 1568)",
    )  # fmt: skip
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="report image sizes before and after"
    )
    parser.set_defaults(clip_image=None)  # set by compose_question when --clip finds an image
    parser.add_argument("--model", help="the model (default: ENCLAVE_MODEL, ask.toml, 'default')")
    parser.add_argument(
        "--role", metavar="NAME",
        help="a saved system prompt: shell, explain, review, or [roles.NAME] in ask.toml",
    )  # fmt: skip
    parser.add_argument("--system", metavar="TEXT", help="a system prompt; wins over --role")
    parser.add_argument(
        "-x", "--execute", action="store_true",
        help="propose a shell command for the request and run it once you confirm",
    )  # fmt: skip
    parser.add_argument("--url", help=f"the enclave gateway (default {DEFAULT_URL})")
    parser.add_argument("--api-key")
    parser.add_argument(
        "--max-stdin-bytes", type=int, metavar="N",
        help="keep at most the last N bytes of stdin and of each -f file (default 200000)",
    )  # fmt: skip
    parser.add_argument("--no-stream", action="store_true", help="print the answer at the end")
    parser.add_argument(
        "--raw", action="store_true", help="plain text even on a terminal (no Markdown styling)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the server's whole response as JSON"
    )
    parser.add_argument("--max-tokens", type=int, metavar="N")
    parser.add_argument("--temperature", type=float)
    parser.add_argument(
        "-c", "--continue", dest="continue_last", action="store_true",
        help="continue the last conversation (its turns are sent as context)",
    )  # fmt: skip
    parser.add_argument(
        "--session", metavar="NAME", help="use (start or continue) a named conversation"
    )
    parser.add_argument(
        "--context-chars", type=int, default=24000, metavar="N",
        help="with -c/--session, send the newest earlier turns that fit in N characters "
        "(default 24000)",
    )  # fmt: skip
    parser.add_argument(
        "--no-history", action="store_true", help="do not record this question and answer"
    )
    parser.add_argument(
        "--show", metavar="ID|NAME", help="with `ask history`: print one conversation"
    )
    parser.add_argument("--version", action="version", version=f"ask {__version__}")
    return parser


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.max_stdin_bytes is not None and args.max_stdin_bytes < 1:
        parser.error("--max-stdin-bytes must be at least 1")
    if args.max_image_side is not None and args.max_image_side < 16:
        parser.error("--max-image-side must be at least 16")
    from enclave.client import askconfig
    from enclave.client.sessions import HistoryError

    if args.continue_last and args.session:
        parser.error("-c/--continue and --session cannot be combined")
    try:
        config = askconfig.load(
            {
                "url": args.url,
                "api_key": args.api_key,
                "model": args.model,
                "role": args.role,
                "max_stdin_bytes": args.max_stdin_bytes,
                "history": False if args.no_history else None,
                "max_image_side": args.max_image_side,
            }
        )
        if args.question == ["config"]:  # the settings command only when it is all there is
            sys.stdout.write("".join(line + "\n" for line in askconfig.describe(config)))
            return 0
        if args.question[:1] == ["history"] and len(args.question) <= 2:  # like `config`
            return show_history(args.show, (args.question[1:] or [None])[0])
        if args.show is not None:
            parser.error("--show goes with `ask history`")
        system = args.system
        role = config.value("role")
        if role is not None:
            prompt = config.role_prompt(role)  # checked even when --system wins
            system = system if system is not None else prompt
        question = compose_question(args, config, sys.stdin, sys.stderr)
    except (askconfig.ConfigError, AttachmentError, HistoryError) as exc:
        print(f"ask: {exc}", file=sys.stderr)
        return 2
    if not question:
        if not args.question and interactive(sys.stdin):
            return start_repl(args, config, system)
        parser.error("no question: give it as arguments or on stdin")
    return answer_one(args, config, question, system)


def answer_one(
    args: argparse.Namespace, config: AskConfig, question: str, system: str | None
) -> int:
    from enclave.client import askconfig
    from enclave.client.chat import ClientError
    from enclave.client.sessions import HistoryError

    url = str(config.value("url"))
    try:
        api_key = askconfig.resolve_api_key(config)
        if args.execute:
            if args.system is None and args.role is None:
                system = config.role_prompt("shell")
            return execute(args, config, question, system, api_key)
        ask(args, config, question, system, api_key)
    except (askconfig.ConfigError, HistoryError) as exc:
        print(f"ask: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        message, code = explain(exc, url)
        print(f"ask: {message}", file=sys.stderr)
        return code
    return 0


def execute(
    args: argparse.Namespace,
    config: AskConfig,
    question: str,
    system: str | None,
    api_key: str | None,
) -> int:
    """``-x``: the proposed command, run only after the user confirms on the terminal."""
    from enclave.cli import ask_exec
    from enclave.client.chat import ChatClient, chat_request

    messages = build_messages(
        question, args.image, system, max_side=int(config.value("max_image_side"))
    )
    body = chat_request(str(config.value("model")), messages, max_tokens=args.max_tokens)
    with ChatClient(str(config.value("url")), api_key=api_key) as client:
        command = ask_exec.extract_command(client.complete(body).content)
    if not command:
        print("ask: the model proposed no command", file=sys.stderr)
        return 1
    tty = ask_exec.open_tty()
    if tty is None:
        print(command)
        print("ask: not run: no terminal to confirm on", file=sys.stderr)
        return 2
    chosen = ask_exec.confirm(command, tty)
    if chosen is None:
        print("ask: not run", file=sys.stderr)
        return 0
    return ask_exec.run(chosen)


def interactive(stdin: TextIO | None) -> bool:
    try:
        return stdin is not None and stdin.isatty()
    except ValueError:
        return False


def start_repl(args: argparse.Namespace, config: AskConfig, system: str | None) -> int:
    """``ask`` on a terminal with no question: the REPL (:mod:`enclave.cli.ask_repl`),
    on the conversation of ``-c``/``--session`` if given, with ``-i``/``-f`` staged."""
    from enclave.cli import ask_repl
    from enclave.client import askconfig
    from enclave.client.sessions import HistoryError

    try:
        api_key = askconfig.resolve_api_key(config)
        store, conversation, _ = open_history(args, config, 0)
    except (askconfig.ConfigError, HistoryError) as exc:
        print(f"ask: {exc}", file=sys.stderr)
        return 2
    settings = ask_repl.Settings(
        url=str(config.value("url")), api_key=api_key, model=str(config.value("model")),
        system=system, theme=str(config.value("theme")), raw=args.raw,
        max_side=int(config.value("max_image_side")),
        max_file_bytes=int(config.value("max_stdin_bytes")), context_chars=args.context_chars,
        max_tokens=args.max_tokens, temperature=args.temperature, session=args.session,
    )  # fmt: skip
    repl = ask_repl.Repl(settings, store)
    if store is not None and conversation is not None:
        from enclave.client.sessions import as_messages

        repl.chat.id = conversation
        repl.chat.messages = list(as_messages(store.turns(conversation)))
    for path in args.image:
        repl.stage_image(None, path)
    if args.clip_image is not None:
        repl.stage_image(args.clip_image, None)
    for path in args.file:
        repl.stage_file(path)
    try:
        return repl.run()
    finally:
        if store is not None:
            store.close()


def compose_question(
    args: argparse.Namespace, config: AskConfig, stdin: TextIO | None, err: TextIO
) -> str:
    """The question words, then piped stdin and each ``-f`` file as fenced blocks."""
    cap = int(config.value("max_stdin_bytes"))
    words = " ".join(args.question).strip()
    piped = read_stdin(stdin, cap, err)
    if not words:  # stdin is the question itself
        words, piped = piped.strip(), ""
    parts = [words] if words else []
    if piped.strip():
        parts.append(fenced("stdin", piped))
    for path in args.file:
        parts.append(fenced(f"file {path}", read_text_file(path, cap, err), path.suffix[1:]))
    if args.clip:
        clip_text = read_clipboard(args, cap, err)
        if clip_text is not None:
            parts.append(fenced("clipboard", clip_text))
    if parts and not words:  # files but no question: the files need one
        return ""
    return "\n\n".join(parts)


def read_clipboard(args: argparse.Namespace, cap: int, err: TextIO) -> str | None:
    """``--clip``: an image is kept in ``args.clip_image``; text is returned (capped)."""
    import io

    from enclave.client import clipboard

    try:
        clip = clipboard.read()
    except clipboard.ClipboardError as exc:
        raise AttachmentError(str(exc)) from None
    if clip.image is not None:
        args.clip_image = clip.image
        return None
    data, total = read_tail(io.BytesIO((clip.text or "").encode("utf-8")), cap)
    return as_text(data, total, "clipboard", err)


def stdin_is_piped(stdin: TextIO | None) -> bool:
    """A pipe or a redirected file; never a terminal or an inherited socket (no hang)."""
    import os
    import stat

    if stdin is None:
        return False
    try:
        mode = os.fstat(stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def read_stdin(stdin: TextIO | None, cap: int, err: TextIO) -> str:
    if stdin is None or not stdin_is_piped(stdin):
        return ""
    data, total = read_tail(stdin.buffer, cap)
    return as_text(data, total, "stdin", err)


def read_text_file(path: Path, cap: int, err: TextIO) -> str:
    try:
        with path.open("rb") as handle:
            data, total = read_tail(handle, cap)
    except OSError as exc:
        raise AttachmentError(f"cannot read {path}: {exc.strerror or exc}") from None
    return as_text(data, total, str(path), err)


def read_tail(stream: BinaryIO, cap: int) -> tuple[bytes, int]:
    """The last ``cap`` bytes (moved forward to a UTF-8 character start) and the total size.

    The end is kept because that is where a log says what went wrong. Memory stays
    bounded at about twice the cap, however much is piped in.
    """
    kept = bytearray()
    total = 0
    while chunk := stream.read(1 << 16):
        total += len(chunk)
        kept += chunk
        if len(kept) > 2 * cap:
            del kept[: len(kept) - cap]
    if total > cap:
        del kept[: len(kept) - cap]
        skip = 0
        while skip < min(3, len(kept)) and kept[skip] & 0xC0 == 0x80:  # continuation bytes
            skip += 1
        del kept[:skip]
    return bytes(kept), total


def as_text(data: bytes, total: int, name: str, err: TextIO) -> str:
    if b"\x00" in data:
        raise AttachmentError(f"{name} is binary, not text (attach images with -i)")
    text = data.decode("utf-8", errors="replace")
    if len(data) < total:
        note = f"{name}: kept the last {len(data)} of {total} bytes"
        print(f"ask: {note}", file=err)
        text = f"[{note}]\n{text}"
    return text


def fenced(label: str, text: str, lang: str = "") -> str:
    """``label:`` and the text in a fence longer than any backtick run inside it."""
    longest, run = 0, 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{label}:\n{fence}{lang}\n{text.rstrip(chr(10))}\n{fence}"


def ask(
    args: argparse.Namespace,
    config: AskConfig,
    question: str,
    system: str | None,
    api_key: str | None,
) -> None:
    from enclave.client.chat import ChatClient, chat_request

    body = chat_request(
        str(config.value("model")),
        build_messages(
            question,
            args.image,
            system,
            clip_image=args.clip_image,
            max_side=int(config.value("max_image_side")),
            report=sys.stderr if args.verbose else None,
        ),
        max_tokens=args.max_tokens,
        temperature=args.temperature,
    )
    import time

    store, conversation, context = open_history(args, config, len(question))
    if context:  # earlier turns go between the system prompt and the question
        sent = body["messages"]
        body["messages"] = [*sent[:-1], *context, sent[-1]]
    answer: list[str] = []
    asked_at = time.time()
    try:
        with ChatClient(str(config.value("url")), api_key=api_key) as client:
            if args.json:
                answer.append(print_json(client, body, sys.stdout))
            elif args.no_stream:
                answer.append(print_whole(client, body, sys.stdout))
            else:
                print_stream(client, body, renderer(args, config), answer)
    except BaseException as exc:
        if store is not None and (answer or isinstance(exc, KeyboardInterrupt)):
            text = "".join(answer).rstrip("\n")
            text = f"{text}\n(interrupted)" if text else "(interrupted)"
            record(
                store, conversation, args, config, question=question, answer=text, asked_at=asked_at
            )
        raise
    else:
        if store is not None:
            answered = "".join(answer)
            record(
                store,
                conversation,
                args,
                config,
                question=question,
                answer=answered,
                asked_at=asked_at,
            )
    finally:
        if store is not None:
            store.close()


def open_history(
    args: argparse.Namespace, config: AskConfig, reserve: int
) -> tuple[Store | None, int | None, list[dict[str, str]]]:
    """The history to record into (``None`` when off), the conversation to continue
    (``None``: a new one) and its earlier turns as messages, trimmed from the oldest to
    ``--context-chars`` (with ``reserve`` for the question), with a notice on stderr."""
    from enclave.client import sessions

    recording = bool(config.value("history"))
    path = sessions.history_path()
    if not recording and not ((args.continue_last or args.session) and path.exists()):
        return None, None, []
    store = sessions.Store(path)
    conversation = None
    if args.continue_last:
        conversation = store.last()
    elif args.session:
        conversation = store.by_name(args.session)
    turns = store.turns(conversation) if conversation is not None else []
    kept, left_out = sessions.trim(turns, args.context_chars, reserve)
    if left_out:
        print(
            f"ask: context: left out the {left_out} oldest of {len(turns)} earlier turns "
            f"(--context-chars {args.context_chars})",
            file=sys.stderr,
        )
    if not recording:
        store.close()
        return None, conversation, sessions.as_messages(kept)
    return store, conversation, sessions.as_messages(kept)


def record(
    store: Store,
    conversation: int | None,
    args: argparse.Namespace,
    config: AskConfig,
    *,
    question: str,
    answer: str,
    asked_at: float,
) -> None:
    """Save one exchange; a history that cannot be written is a warning, not a failure."""
    from enclave.client.sessions import HistoryError

    model = str(config.value("model"))
    try:
        store.record(
            conversation, question, answer, model=model, asked_at=asked_at, name=args.session
        )
    except HistoryError as exc:
        print(f"ask: not recorded: {exc}", file=sys.stderr)


def show_history(show: str | None, search: str | None) -> int:
    """``ask history [SEARCH]`` and ``ask history --show ID|NAME``."""
    from enclave.client import sessions

    path = sessions.history_path()
    if not path.exists():
        print(f"ask: no conversations recorded yet ({path})", file=sys.stderr)
        return 2 if show is not None else 0
    with sessions.Store(path, create=False) as store:
        if show is not None:
            conversation = store.find(show)
            summary = store.summary(conversation) if conversation is not None else None
            if conversation is None or summary is None:
                print(f"ask: no conversation {show!r} in {path}", file=sys.stderr)
                return 2
            lines = sessions.conversation_lines(summary, store.turns(conversation))
        else:
            items = store.conversations(search)
            if not items:
                what = f"mentions {search!r}" if search else "recorded yet"
                print(f"ask: no conversation {what} ({path})", file=sys.stderr)
            lines = sessions.summary_lines(items)
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def build_messages(
    question: str,
    images: Sequence[Path],
    system: str | None,
    *,
    clip_image: bytes | None = None,
    max_side: int = 1568,
    report: TextIO | None = None,
) -> list[dict[str, object]]:
    """The messages; each image downscaled and re-encoded (:mod:`enclave.client.imageprep`),
    with a line per image on ``report`` (``-v``)."""
    from enclave.client.chat import system_message, user_message

    urls: list[str] = []
    if images or clip_image is not None:
        from enclave.client import imageprep

        prepared = [imageprep.prepare_file(path, max_side) for path in images]
        if clip_image is not None:
            prepared.append(imageprep.prepare(clip_image, "clipboard", max_side))
        for image in prepared:
            if report is not None:
                print(image.report(), file=report)
            urls.append(image.data_url)
    head = [system_message(system)] if system else []
    return [*head, user_message(question, urls)]


def print_whole(client: ChatClient, body: dict[str, object], out: TextIO) -> str:
    content = client.complete(body).content
    out.write(content if content.endswith("\n") else content + "\n")
    out.flush()
    return content


def renderer(args: argparse.Namespace, config: AskConfig) -> Renderer:
    import os

    from enclave.client.render import for_terminal

    theme = str(config.value("theme"))
    return for_terminal(sys.stdout, raw=args.raw, theme=theme, env=dict(os.environ))


def print_json(client: ChatClient, body: dict[str, object], out: TextIO) -> str:
    """The whole response body, indented; returns the answer's text for the history."""
    import json

    raw = client.complete_raw(body)
    out.write(json.dumps(raw, ensure_ascii=False, indent=2) + "\n")
    out.flush()
    from enclave.client.chat import parse_completion

    return parse_completion(raw).content


def print_stream(
    client: ChatClient, body: dict[str, object], out: Renderer, sink: list[str] | None = None
) -> None:
    """Paint each delta as it arrives (and keep it in ``sink``); end the line even when
    the stream breaks."""
    try:
        for delta in client.stream(body):
            if delta.content:
                if sink is not None:
                    sink.append(delta.content)
                out.feed(delta.content)
    finally:
        out.finish()


def explain(exc: ClientError, url: str) -> tuple[str, int]:
    """The one line ``ask`` prints for a client error, and the exit code."""
    from enclave.client.chat import AuthRefused, ImageError, StatusError, Unreachable

    if isinstance(exc, Unreachable):
        return f"cannot reach enclave at {url.rstrip('/')} — is `enclave serve` running?", 2
    if isinstance(exc, AuthRefused):
        return "the API key was refused", 1
    if isinstance(exc, StatusError):
        return f"{exc.status}: {exc.message}", 1
    return exc.message, 2 if isinstance(exc, ImageError) else 1


def silence_stdout() -> None:
    """After a broken pipe, stop Python from complaining while it flushes stdout at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
