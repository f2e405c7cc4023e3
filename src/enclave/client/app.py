"""What ``ask`` does once its flags are parsed (:mod:`enclave.cli.ask`): load the
settings, then ``ask config``, ``ask history``, one question answered
(:mod:`enclave.client.oneshot`, ``-x``: :mod:`enclave.client.execute`) or, on a terminal
with no question, the REPL (:mod:`enclave.client.repl`).

Every error meant for the user is an :class:`~enclave.errors.AskError`, caught here in
one place: one line on stderr and its ``exit_code``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TextIO

from enclave.errors import AskError

if TYPE_CHECKING:
    from enclave.client.askconfig import AskConfig
    from enclave.client.options import AskOptions

ReportUsage = Callable[[str], NoReturn]  # argparse's parser.error: usage, the message, exit 2


def run(options: AskOptions, report_usage: ReportUsage) -> int:
    """The exit code of one ``ask``; usage mistakes found late go to ``report_usage``."""
    config: AskConfig | None = None
    try:
        from enclave.client import askconfig

        config = askconfig.load(options.setting_flags())
        return dispatch(options, config, report_usage)
    except AskError as exc:
        from enclave.client.failures import explain

        url = str(config.value("url")) if config is not None else ""
        print(f"ask: {explain(exc, url)}", file=sys.stderr)
        return exc.exit_code


def dispatch(options: AskOptions, config: AskConfig, report_usage: ReportUsage) -> int:
    from enclave.client import askconfig
    from enclave.client.attachments import compose_question

    if options.question == ["config"]:  # the settings command only when it is all there is
        sys.stdout.write("".join(line + "\n" for line in askconfig.describe(config)))
        return 0
    if options.question[:1] == ["history"] and len(options.question) <= 2:  # like `config`
        search = options.question[1] if len(options.question) == 2 else None
        return show_history(options.show, search)
    if options.show is not None:
        report_usage("--show goes with `ask history`")
    system = options.system
    role = config.value("role")
    if role is not None:
        prompt = config.role_prompt(role)  # checked even when --system wins
        system = system if system is not None else prompt
    cap = int(config.value("max_stdin_bytes"))
    question = compose_question(options, cap, sys.stdin, sys.stderr)
    if not question:
        if not options.question and interactive(sys.stdin):
            return start_repl(options, config, system)
        report_usage("no question: give it as arguments or on stdin")
    return answer_one(options, config, question, system)


def answer_one(options: AskOptions, config: AskConfig, question: str, system: str | None) -> int:
    from enclave.client import askconfig

    api_key = askconfig.resolve_api_key(config)
    if options.execute:
        from enclave.client.execute import propose_and_run

        if options.system is None and options.role is None:
            system = config.role_prompt("shell")
        return propose_and_run(options, config, question, system, api_key)
    from enclave.client.oneshot import answer

    answer(options, config, question, system, api_key)
    return 0


def interactive(stdin: TextIO | None) -> bool:
    try:
        return stdin is not None and stdin.isatty()
    except ValueError:
        return False


def start_repl(options: AskOptions, config: AskConfig, system: str | None) -> int:
    """``ask`` on a terminal with no question: the REPL (:mod:`enclave.client.repl`),
    on the conversation of ``-c``/``--session`` if given, with ``-i``/``-f`` staged."""
    from enclave.client import askconfig
    from enclave.client.oneshot import open_history
    from enclave.client.repl import Repl, ReplSettings

    api_key = askconfig.resolve_api_key(config)
    store, conversation, _ = open_history(options, config, 0)
    settings = ReplSettings(
        url=str(config.value("url")), api_key=api_key, model=str(config.value("model")),
        system=system, theme=str(config.value("theme")), raw=options.raw,
        max_side=int(config.value("max_image_side")),
        max_file_bytes=int(config.value("max_stdin_bytes")),
        context_chars=options.context_chars, max_tokens=options.max_tokens,
        temperature=options.temperature, session=options.session,
    )  # fmt: skip
    repl = Repl(settings, store)
    if store is not None and conversation is not None:
        from enclave.client.sessions import as_messages

        repl.chat.id = conversation
        repl.chat.messages = list(as_messages(store.turns(conversation)))
    for path in options.images:
        repl.stage_image(None, path)
    if options.clip_image is not None:
        repl.stage_image(options.clip_image, None)
    for path in options.files:
        repl.stage_file(path)
    try:
        return repl.run()
    finally:
        if store is not None:
            store.close()


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
