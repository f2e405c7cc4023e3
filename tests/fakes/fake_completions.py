"""The fake upstream's legacy ``POST /v1/completions``, in vLLM's shape.

Each prompt (a text, or one text's token ids) gets its own choice, ``index`` in prompt
order: ``echo: <the prompt>`` (``echo: ids=<N>`` for token ids), padded or cut to exactly
``max_tokens`` (or ``--tokens``) words, ``stop`` applied. Streamed, one word per chunk,
prompt after prompt, each ending with its ``finish_reason`` chunk; then the usage chunk
(``choices: []``) when ``stream_options.include_usage`` asks for it, and ``[DONE]``.
A prompt whose words (or ids) and ``max_tokens`` exceed ``--context-length`` is a 400
``context_length_exceeded``, as vLLM answers. The call goes through the chat route's
admission (:meth:`FakeUpstream.admit`): the API key, the counters, ``hang``, the
scripted failures and ``script`` steps (``error:K``, ``drop:K``, ``end:K``, ``ttft:MS``
count content tokens over all the prompts), ``error_after``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from enclave.sse import DONE, encode_json
from tests.fakes.fake_upstream import (
    DropConnection,
    FakeError,
    FakeUpstream,
    Step,
    apply_stop,
    error_event,
    extras_header,
    output_limit,
)

PATH = "/v1/completions"


@dataclass(frozen=True)
class Answer:
    """One prompt's choice."""

    pieces: list[str]
    finish_reason: str
    prompt_tokens: int


def prompts(body: dict[str, Any]) -> list[str | list[int]]:
    value = body.get("prompt")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str | list) for v in value):
        return list(value)
    raise FakeError(400, "prompt must be a string, strings or token ids", "invalid_request_error")


def answer(prompt: str | list[int], body: dict[str, Any], default: int) -> Answer:
    limit, asked = output_limit(body, default)
    if isinstance(prompt, str):
        words, used = f"echo: {prompt}".split(), len(prompt.split())
    else:
        words, used = ["echo:", f"ids={len(prompt)}"], len(prompt)
    words += [f"t{i}" for i in range(len(words) + 1, limit + 1)]
    text, stopped = apply_stop(" ".join(words[:limit]), body.get("stop"))
    finish = "stop" if stopped or not asked else "length"
    return Answer(re.findall(r"\s*\S+", text), finish, used)


def check_length(answers: list[Answer], body: dict[str, Any], context_length: int) -> None:
    limit, _ = output_limit(body, 0)
    for item in answers:
        wanted = item.prompt_tokens + limit
        if wanted > context_length:
            message = (
                f"This model's maximum context length is {context_length} tokens. "
                f"However, you requested {wanted} tokens."
            )
            raise FakeError(400, message, "invalid_request_error", "context_length_exceeded")


def usage(answers: list[Answer]) -> dict[str, int]:
    prompt = sum(a.prompt_tokens for a in answers)
    done = sum(len(a.pieces) for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def envelope(body: dict[str, Any], cid: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": choices,
    }


def choice(index: int, text: str, finish: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}


def handler(fake: FakeUpstream) -> Callable[[Request], Awaitable[Response]]:
    async def completions(request: Request) -> Response:
        body, step = await fake.admit(request)
        answers = [answer(p, body, fake.options.tokens) for p in prompts(body)]
        if not fake.options.lenient:
            check_length(answers, body, fake.options.context_length)
        headers = extras_header(body)
        cid = fake.next_id().replace("chatcmpl-", "cmpl-")
        if body.get("stream"):
            stream = counted(fake, events(fake, body, cid, answers, step))
            return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
        await fake.pause(max(len(a.pieces) for a in answers), step)
        fake.stats.completed += 1
        choices = [choice(i, "".join(a.pieces), a.finish_reason) for i, a in enumerate(answers)]
        result = envelope(body, cid, choices) | {"usage": usage(answers)}
        return JSONResponse(result, headers=headers)

    return completions


async def counted(fake: FakeUpstream, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    done = False
    try:
        async for data in stream:
            yield data
        done = True
        fake.stats.completed += 1
    finally:
        if not done:
            fake.stats.cancelled += 1


async def events(
    fake: FakeUpstream, body: dict[str, Any], cid: str, answers: list[Answer], step: Step
) -> AsyncIterator[bytes]:
    await asyncio.sleep(fake.ttft_s(step))
    error_after = step.value if step.kind == "error" else fake.options.error_after
    sent = 0
    for index, item in enumerate(answers):
        for piece in item.pieces:
            if sent == error_after:
                yield error_event()
                return
            if step.kind == "drop" and sent == step.value:
                raise DropConnection
            if step.kind == "end" and sent == step.value:
                return
            if sent:
                await asyncio.sleep(fake.options.itl_ms / 1000)
            yield encode_json(envelope(body, cid, [choice(index, piece, None)]))
            sent += 1
        yield encode_json(envelope(body, cid, [choice(index, "", item.finish_reason)]))
    options = body.get("stream_options") or {}
    if options.get("include_usage") and not fake.options.no_stream_usage:
        yield encode_json(envelope(body, cid, []) | {"usage": usage(answers)})
    yield DONE
