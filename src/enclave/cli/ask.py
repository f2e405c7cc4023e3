"""``ask``: one question to enclave, the answer streamed to the terminal.

    ask how do I list listening ports on linux
    ask -i screenshot.png what does this error mean
    echo "what is a goroutine" | ask
    cat error.log | ask "why did this fail?"     # stdin attached as a fenced block
    ask -f app.py --role review "anything wrong?"
    ask config                                   # effective settings and their sources

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
    parser.add_argument("--model", help="the model (default: ENCLAVE_MODEL, ask.toml, 'default')")
    parser.add_argument(
        "--role", metavar="NAME",
        help="a saved system prompt: shell, explain, review, or [roles.NAME] in ask.toml",
    )  # fmt: skip
    parser.add_argument("--system", metavar="TEXT", help="a system prompt; wins over --role")
    parser.add_argument("--url", help=f"the enclave gateway (default {DEFAULT_URL})")
    parser.add_argument("--api-key")
    parser.add_argument(
        "--max-stdin-bytes", type=int, metavar="N",
        help="keep at most the last N bytes of stdin and of each -f file (default 200000)",
    )  # fmt: skip
    parser.add_argument("--no-stream", action="store_true", help="print the answer at the end")
    parser.add_argument("--max-tokens", type=int, metavar="N")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--version", action="version", version=f"ask {__version__}")
    return parser


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.max_stdin_bytes is not None and args.max_stdin_bytes < 1:
        parser.error("--max-stdin-bytes must be at least 1")
    from enclave.client import askconfig
    from enclave.client.chat import ClientError

    try:
        config = askconfig.load(
            {
                "url": args.url,
                "api_key": args.api_key,
                "model": args.model,
                "role": args.role,
                "max_stdin_bytes": args.max_stdin_bytes,
            }
        )
        if args.question == ["config"]:  # the settings command only when it is all there is
            sys.stdout.write("".join(line + "\n" for line in askconfig.describe(config)))
            return 0
        system = args.system
        role = config.value("role")
        if role is not None:
            prompt = config.role_prompt(role)  # checked even when --system wins
            system = system if system is not None else prompt
        question = compose_question(args, config, sys.stdin, sys.stderr)
    except (askconfig.ConfigError, AttachmentError) as exc:
        print(f"ask: {exc}", file=sys.stderr)
        return 2
    if not question:
        parser.error("no question: give it as arguments or on stdin")
    url = str(config.value("url"))
    try:
        api_key = askconfig.resolve_api_key(config)
        ask(args, config, question, system, api_key)
    except askconfig.ConfigError as exc:
        print(f"ask: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        message, code = explain(exc, url)
        print(f"ask: {message}", file=sys.stderr)
        return code
    return 0


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
    if parts and not words:  # files but no question: the files need one
        return ""
    return "\n\n".join(parts)


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
        build_messages(question, args.image, system),
        max_tokens=args.max_tokens,
        temperature=args.temperature,
    )
    with ChatClient(str(config.value("url")), api_key=api_key) as client:
        if args.no_stream:
            print_whole(client, body, sys.stdout)
        else:
            print_stream(client, body, sys.stdout)


def build_messages(
    question: str, images: Sequence[Path], system: str | None
) -> list[dict[str, object]]:
    from enclave.client.chat import image_data_url, system_message, user_message

    urls = [image_data_url(path) for path in images]
    head = [system_message(system)] if system else []
    return [*head, user_message(question, urls)]


def print_whole(client: ChatClient, body: dict[str, object], out: TextIO) -> None:
    content = client.complete(body).content
    out.write(content if content.endswith("\n") else content + "\n")
    out.flush()


def print_stream(client: ChatClient, body: dict[str, object], out: TextIO) -> None:
    """Write each delta as it arrives; end the line even when the stream breaks."""
    at_line_start = True
    try:
        for delta in client.stream(body):
            if delta.content:
                out.write(delta.content)
                out.flush()
                at_line_start = delta.content.endswith("\n")
    finally:
        if not at_line_start:
            out.write("\n")
            out.flush()


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
