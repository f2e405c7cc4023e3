"""One question, its answer streamed (or printed whole, or as JSON) to the terminal, and
the exchange recorded in the history (:mod:`enclave.client.sessions`).

``-c`` and ``--session`` send the earlier turns of a conversation as context, trimmed
from the oldest to ``--context-chars``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from enclave.client.askconfig import AskConfig
    from enclave.client.chat import ChatClient
    from enclave.client.options import AskOptions
    from enclave.client.render import Renderer
    from enclave.client.sessions import Store


def answer(
    options: AskOptions,
    config: AskConfig,
    question: str,
    system: str | None,
    api_key: str | None,
) -> None:
    """Ask ``question``; print the answer and record the exchange (also when
    interrupted: what arrived, marked ``(interrupted)``)."""
    import time

    from enclave.client.chat import ChatClient

    body = request_body(options, config, question, system)
    store, conversation, context = open_history(options, config, len(question))
    if context:  # earlier turns go between the system prompt and the question
        sent = body["messages"]
        body["messages"] = [*sent[:-1], *context, sent[-1]]
    answered: list[str] = []
    asked_at = time.time()
    try:
        with ChatClient(str(config.value("url")), api_key=api_key) as client:
            if options.json:
                answered.append(print_json(client, body, sys.stdout))
            elif options.no_stream:
                answered.append(print_whole(client, body, sys.stdout))
            else:
                print_stream(client, body, renderer(options, config), answered)
    except BaseException as exc:
        if store is not None and (answered or isinstance(exc, KeyboardInterrupt)):
            text = "".join(answered).rstrip("\n")
            text = f"{text}\n(interrupted)" if text else "(interrupted)"
            record(
                store, conversation, options, config,
                question=question, answer=text, asked_at=asked_at,
            )  # fmt: skip
        raise
    else:
        if store is not None:
            record(
                store, conversation, options, config,
                question=question, answer="".join(answered), asked_at=asked_at,
            )  # fmt: skip
    finally:
        if store is not None:
            store.close()


def request_body(
    options: AskOptions, config: AskConfig, question: str, system: str | None
) -> dict[str, Any]:
    from enclave.client.attachments import build_messages
    from enclave.client.chat import chat_request

    return chat_request(
        str(config.value("model")),
        build_messages(
            question,
            options.images,
            system,
            clip_image=options.clip_image,
            max_side=int(config.value("max_image_side")),
            report=sys.stderr if options.verbose else None,
        ),
        max_tokens=options.max_tokens,
        temperature=options.temperature,
    )


def open_history(
    options: AskOptions, config: AskConfig, reserve: int
) -> tuple[Store | None, int | None, list[dict[str, str]]]:
    """The history to record into (``None`` when off), the conversation to continue
    (``None``: a new one) and its earlier turns as messages, trimmed from the oldest to
    ``--context-chars`` (with ``reserve`` for the question), with a notice on stderr."""
    from enclave.client import sessions

    recording = bool(config.value("history"))
    path = sessions.history_path()
    if not recording and not ((options.continue_last or options.session) and path.exists()):
        return None, None, []
    store = sessions.Store(path)
    conversation = None
    if options.continue_last:
        conversation = store.last()
    elif options.session:
        conversation = store.by_name(options.session)
    turns = store.turns(conversation) if conversation is not None else []
    kept, left_out = sessions.trim(turns, options.context_chars, reserve)
    if left_out:
        print(
            f"ask: context: left out the {left_out} oldest of {len(turns)} earlier turns "
            f"(--context-chars {options.context_chars})",
            file=sys.stderr,
        )
    if not recording:
        store.close()
        return None, conversation, sessions.as_messages(kept)
    return store, conversation, sessions.as_messages(kept)


def record(
    store: Store,
    conversation: int | None,
    options: AskOptions,
    config: AskConfig,
    *,
    question: str,
    answer: str,
    asked_at: float,
) -> None:
    """Save one exchange; a history that cannot be written is a warning, not a failure."""
    from enclave.errors import HistoryError

    model = str(config.value("model"))
    try:
        store.record(
            conversation, question, answer, model=model, asked_at=asked_at, name=options.session
        )
    except HistoryError as exc:
        print(f"ask: not recorded: {exc}", file=sys.stderr)


def print_whole(client: ChatClient, body: dict[str, object], out: TextIO) -> str:
    content = client.complete(body).content
    out.write(content if content.endswith("\n") else content + "\n")
    out.flush()
    return content


def renderer(options: AskOptions, config: AskConfig) -> Renderer:
    import os

    from enclave.client.render import for_terminal

    theme = str(config.value("theme"))
    return for_terminal(sys.stdout, raw=options.raw, theme=theme, env=dict(os.environ))


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
