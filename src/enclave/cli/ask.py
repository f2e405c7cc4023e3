"""``ask``: one question to enclave, the answer streamed to the terminal.

    ask how do I list listening ports on linux
    ask -i screenshot.png what does this error mean
    echo "what is a goroutine" | ask
    cat error.log | ask "why did this fail?"     # stdin attached as a fenced block
    ask -f app.py --role review "anything wrong?"
    ask config                                   # effective settings and their sources
    ask -c "and in python?"                      # continue the last conversation
    ask history tar                              # conversations that mention "tar"

This module only parses the flags and hands off to :mod:`enclave.client.app`. Settings
come from flags > environment > ``ask.toml`` > defaults (:mod:`enclave.client.askconfig`).
``ask config`` is the settings command only when ``config`` is the whole question;
``ask config files in nginx`` is a question.

Exit codes: 0 answered; 1 the server refused or failed; 2 usage error, bad config,
server not reachable or unreadable attachment; 130 interrupted. Never a traceback.

Import cost matters here (``ask --version`` in a few tens of milliseconds): only the
standard library's ``sys`` is imported up front; argparse, httpx and the client load
when a question is actually asked.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from enclave import __version__

if TYPE_CHECKING:
    import argparse

    from enclave.client.options import AskOptions


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

    from enclave.client.askconfig import DEFAULT_URL

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
    """Parse, check what argparse cannot, and hand off to :mod:`enclave.client.app`."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.max_stdin_bytes is not None and args.max_stdin_bytes < 1:
        parser.error("--max-stdin-bytes must be at least 1")
    if args.max_image_side is not None and args.max_image_side < 16:
        parser.error("--max-image-side must be at least 16")
    if args.continue_last and args.session:
        parser.error("-c/--continue and --session cannot be combined")
    from enclave.client import app

    return app.run(options_of(args), parser.error)


def options_of(args: argparse.Namespace) -> AskOptions:
    from enclave.client.options import AskOptions

    values = vars(args)
    values["images"] = values.pop("image")
    values["files"] = values.pop("file")
    return AskOptions(**values)


def silence_stdout() -> None:
    """After a broken pipe, stop Python from complaining while it flushes stdout at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
