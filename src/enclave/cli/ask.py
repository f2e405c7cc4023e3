"""``ask``: one question to enclave, the answer streamed to the terminal.

    ask how do I list listening ports on linux
    ask -i screenshot.png what does this error mean
    echo "what is a goroutine" | ask

Exit codes: 0 answered; 1 the server refused or failed; 2 usage error, server not
reachable or unreadable image; 130 interrupted. Never a traceback.

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

    from enclave.client.chat import ChatClient, ClientError

DEFAULT_URL = "http://127.0.0.1:8000"


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
    import os
    from pathlib import Path

    env = os.environ
    parser = argparse.ArgumentParser(
        prog="ask", description="Ask enclave a question; the answer streams as it is written."
    )
    parser.add_argument("question", nargs="*", help="the question (read from stdin if absent)")
    parser.add_argument(
        "-i", "--image", action="append", type=Path, default=[], metavar="PATH",
        help="attach an image (png, jpeg, webp, gif, bmp); repeatable",
    )  # fmt: skip
    parser.add_argument("--model", default=env.get("ENCLAVE_MODEL") or "default")
    parser.add_argument("--system", metavar="TEXT", help="a system prompt")
    parser.add_argument(
        "--url", default=env.get("ENCLAVE_URL") or DEFAULT_URL, help="the enclave gateway"
    )
    parser.add_argument("--api-key", default=env.get("ENCLAVE_API_KEY") or None)
    parser.add_argument("--no-stream", action="store_true", help="print the answer at the end")
    parser.add_argument("--max-tokens", type=int, metavar="N")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--version", action="version", version=f"ask {__version__}")
    return parser


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    question = read_question(args.question, sys.stdin)
    if not question:
        parser.error("no question: give it as arguments or on stdin")
    from enclave.client.chat import ClientError

    try:
        ask(args, question)
    except ClientError as exc:
        message, code = explain(exc, args.url)
        print(f"ask: {message}", file=sys.stderr)
        return code
    return 0


def read_question(words: list[str], stdin: TextIO | None) -> str:
    if words:
        return " ".join(words).strip()
    if stdin is None or stdin.isatty():
        return ""
    return stdin.read().strip()


def ask(args: argparse.Namespace, question: str) -> None:
    from enclave.client.chat import ChatClient, chat_request

    body = chat_request(
        args.model,
        build_messages(question, args.image, args.system),
        max_tokens=args.max_tokens,
        temperature=args.temperature,
    )
    with ChatClient(args.url, api_key=args.api_key) as client:
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
