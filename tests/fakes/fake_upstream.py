"""A real fake upstream: a small HTTP server that speaks vLLM's OpenAI protocol.

Run it as its own process (``tests/fakes/procs.py`` does this for tests)::

    python -m tests.fakes.fake_upstream --port 9001 --models a,b --ttft-ms 50 --itl-ms 10

The reply is built from the request so that a test can check what arrived::

    echo: <last user message text> images=<N> texts=<M> t<k> t<k+1> ...

(N image parts and M text parts over all messages; ``t<k>`` pads it), one word per
stream chunk, padded or cut to exactly ``max_tokens`` (or ``--tokens``) words.
``--error-after N`` ends streams with an error event after N tokens.
Without ``--vision`` an image part is refused with 400, like a text-only vLLM model.
Unknown request fields come back, sorted and comma-separated, in ``x-fake-extras``.
``GET /_fake/stats`` tells how many chat requests came, completed, or were cancelled
by the client, and the last request body; ``POST /_fake/reset`` zeroes it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import re
import struct
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from enclave.sse import DONE, encode_json

STANDARD_FIELDS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "n", "stop", "seed", "presence_penalty", "frequency_penalty",
        "response_format", "tools", "tool_choice", "user", "logprobs", "top_logprobs",
        "logit_bias", "parallel_tool_calls",
    }
)  # fmt: skip
EMBEDDING_DIM = 8


@dataclass(frozen=True)
class Options:
    models: tuple[str, ...] = ("fake-model",)
    vision: bool = False
    ttft_ms: int = 0
    itl_ms: int = 0
    tokens: int = 16
    context_length: int = 4096
    api_key: str | None = None
    fail_status: int | None = None
    error_after: int | None = None


@dataclass
class Stats:
    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    embeddings: int = 0
    last_request: dict[str, Any] | None = None
    last_headers: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "cancelled": self.cancelled,
            "embeddings": self.embeddings,
            "last_request": self.last_request,
            "last_headers": self.last_headers,
        }


class FakeError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.type, "param": None, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status)


# --- reading the request ---------------------------------------------------------------


def message_parts(message: dict[str, Any]) -> tuple[list[str], int]:
    """The texts of a message and how many image parts it has."""
    content = message.get("content")
    if isinstance(content, str):
        return [content], 0
    if not isinstance(content, list):
        return [], 0
    texts = [str(part.get("text", "")) for part in content if part.get("type") == "text"]
    images = sum(1 for part in content if part.get("type") == "image_url")
    return texts, images


def count_parts(messages: list[dict[str, Any]]) -> tuple[int, int]:
    """(image parts, text parts) over the whole conversation."""
    images = texts = 0
    for message in messages:
        message_texts, message_images = message_parts(message)
        texts += len(message_texts)
        images += message_images
    return images, texts


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return " ".join(message_parts(message)[0])
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    words = sum(len(" ".join(message_parts(m)[0]).split()) for m in messages)
    return words + 4 * len(messages)


def output_limit(body: dict[str, Any], default: int) -> tuple[int, bool]:
    """The number of tokens to produce, and whether the client asked for it."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and value > 0:
            return value, True
    return default, False


def apply_stop(text: str, stop: object) -> tuple[str, bool]:
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cuts = [text.find(s) for s in stops if isinstance(s, str) and s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


@dataclass(frozen=True)
class Reply:
    pieces: list[str]
    finish_reason: str
    prompt_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def usage(self) -> dict[str, int]:
        done = len(self.pieces)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": done,
            "total_tokens": self.prompt_tokens + done,
        }


def build_reply(body: dict[str, Any], options: Options) -> Reply:
    messages: list[dict[str, Any]] = body["messages"]
    images, texts = count_parts(messages)
    limit, asked = output_limit(body, options.tokens)
    words = f"echo: {last_user_text(messages)} images={images} texts={texts}".split()
    words += [f"t{i}" for i in range(len(words) + 1, limit + 1)]
    text, stopped = apply_stop(" ".join(words[:limit]), body.get("stop"))
    pieces = re.findall(r"\s*\S+", text)
    finish = "stop" if stopped or not asked else "length"
    return Reply(pieces, finish, prompt_tokens(messages))


def extras_header(body: dict[str, Any]) -> dict[str, str]:
    extras = sorted(key for key in body if key not in STANDARD_FIELDS)
    return {"x-fake-extras": ",".join(extras)} if extras else {}


# --- checks ----------------------------------------------------------------------------


def check_auth(request: Request, options: Options) -> None:
    if options.api_key is None:
        return
    if request.headers.get("authorization") != f"Bearer {options.api_key}":
        raise FakeError(
            401, "Unauthorized: invalid API key", "authentication_error", "invalid_api_key"
        )


def check_model(body: dict[str, Any], options: Options) -> None:
    model = body.get("model")
    if model not in options.models:
        message = f"The model `{model}` does not exist."
        raise FakeError(404, message, "invalid_request_error", "model_not_found")


def check_chat(body: dict[str, Any], options: Options) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise FakeError(400, "messages must be a non-empty list", "invalid_request_error")
    if not options.vision and count_parts(messages)[0]:
        message = "This model does not support image input (not a multimodal model)."
        raise FakeError(400, message, "invalid_request_error")
    limit, _ = output_limit(body, options.tokens)
    wanted = prompt_tokens(messages) + limit
    if wanted > options.context_length:
        message = (
            f"This model's maximum context length is {options.context_length} tokens. "
            f"However, you requested {wanted} tokens."
        )
        raise FakeError(400, message, "invalid_request_error", "context_length_exceeded")


async def read_json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise FakeError(400, f"invalid JSON body: {exc}", "invalid_request_error") from exc
    if not isinstance(body, dict):
        raise FakeError(400, "the body must be a JSON object", "invalid_request_error")
    return body


# --- responses -------------------------------------------------------------------------


def chunk(body: dict[str, Any], cid: str, delta: dict[str, Any], finish: str | None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return encode_json(
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [choice],
        }
    )


def error_event() -> bytes:
    error = {"message": "scripted mid-stream failure", "type": "internal_error", "code": None}
    return encode_json({"error": {**error, "param": None}})


def usage_chunk(body: dict[str, Any], cid: str, reply: Reply) -> bytes:
    return encode_json(
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [],
            "usage": reply.usage(),
        }
    )


def completion(body: dict[str, Any], cid: str, reply: Reply) -> dict[str, Any]:
    message = {"role": "assistant", "content": reply.text}
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": reply.finish_reason,
    }
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [choice],
        "usage": reply.usage(),
    }


class FakeUpstream:
    """The app's state and handlers."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.stats = Stats()
        self._ids = 0

    def next_id(self) -> str:
        self._ids += 1
        return f"chatcmpl-fake-{self._ids}"

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def models(self, request: Request) -> Response:
        check_auth(request, self.options)
        cards = [self.card(model) for model in self.options.models]
        return JSONResponse({"object": "list", "data": cards})

    def card(self, model: str) -> dict[str, Any]:
        return {
            "id": model,
            "object": "model",
            "created": 0,
            "owned_by": "vllm",
            "root": model,
            "parent": None,
            "max_model_len": self.options.context_length,
        }

    async def chat(self, request: Request) -> Response:
        check_auth(request, self.options)
        body = await read_json(request)
        self.stats.requests += 1
        self.stats.last_request = body
        self.stats.last_headers = dict(request.headers)
        if self.options.fail_status is not None:
            raise FakeError(self.options.fail_status, "scripted failure", "upstream_error")
        check_model(body, self.options)
        check_chat(body, self.options)
        reply = build_reply(body, self.options)
        headers = extras_header(body)
        if body.get("stream"):
            stream = self.stream(body, reply)
            return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
        await self.pause(len(reply.pieces))
        self.stats.completed += 1
        return JSONResponse(completion(body, self.next_id(), reply), headers=headers)

    async def pause(self, pieces: int) -> None:
        seconds = self.options.ttft_ms + self.options.itl_ms * max(pieces - 1, 0)
        await asyncio.sleep(seconds / 1000)

    async def stream(self, body: dict[str, Any], reply: Reply) -> AsyncIterator[bytes]:
        done = False
        try:
            async for data in self.events(body, reply):
                yield data
            done = True
            self.stats.completed += 1
        finally:
            if not done:
                self.stats.cancelled += 1

    async def events(self, body: dict[str, Any], reply: Reply) -> AsyncIterator[bytes]:
        cid = self.next_id()
        yield chunk(body, cid, {"role": "assistant", "content": ""}, None)
        await asyncio.sleep(self.options.ttft_ms / 1000)
        for index, piece in enumerate(reply.pieces):
            if index == self.options.error_after:
                yield error_event()
                return
            if index:
                await asyncio.sleep(self.options.itl_ms / 1000)
            yield chunk(body, cid, {"content": piece}, None)
        yield chunk(body, cid, {}, reply.finish_reason)
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            yield usage_chunk(body, cid, reply)
        yield DONE

    async def embeddings(self, request: Request) -> Response:
        check_auth(request, self.options)
        body = await read_json(request)
        self.stats.embeddings += 1
        check_model(body, self.options)
        texts = embedding_inputs(body.get("input"))
        encoding = body.get("encoding_format") or "float"
        data = [embedding_item(i, text, encoding) for i, text in enumerate(texts)]
        tokens = sum(len(text.split()) for text in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats.as_json())

    async def reset(self, request: Request) -> Response:
        self.stats = Stats()
        return JSONResponse(self.stats.as_json())


def embedding_inputs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        return [item if isinstance(item, str) else json.dumps(item) for item in value]
    raise FakeError(400, "input must be a string or a non-empty list", "invalid_request_error")


def vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [byte / 127.5 - 1.0 for byte in digest[:EMBEDDING_DIM]]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


def embedding_item(index: int, text: str, encoding: str) -> dict[str, Any]:
    values = vector(text)
    embedding: list[float] | str = values
    if encoding == "base64":
        embedding = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return {"object": "embedding", "index": index, "embedding": embedding}


async def on_fake_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FakeError)
    return exc.response()


def create_app(options: Options) -> Starlette:
    fake = FakeUpstream(options)
    routes = [
        Route("/health", fake.health),
        Route("/v1/models", fake.models),
        Route("/v1/chat/completions", fake.chat, methods=["POST"]),
        Route("/v1/embeddings", fake.embeddings, methods=["POST"]),
        Route("/_fake/stats", fake.get_stats),
        Route("/_fake/reset", fake.reset, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={FakeError: on_fake_error})


def parse_args(argv: Sequence[str] | None) -> tuple[int, Options]:
    parser = argparse.ArgumentParser(prog="fake_upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models", default="fake-model", help="comma-separated model names")
    parser.add_argument("--vision", action="store_true", help="accept image parts")
    parser.add_argument("--ttft-ms", type=int, default=0)
    parser.add_argument("--itl-ms", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--context-length", type=int, default=4096)
    parser.add_argument("--api-key")
    parser.add_argument("--fail-status", type=int, help="every chat call fails with it")
    parser.add_argument("--error-after", type=int, help="an error event after N tokens")
    args = parser.parse_args(argv)
    options = Options(
        models=tuple(name.strip() for name in args.models.split(",") if name.strip()),
        vision=args.vision,
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        tokens=args.tokens,
        context_length=args.context_length,
        api_key=args.api_key,
        fail_status=args.fail_status,
        error_after=args.error_after,
    )
    return args.port, options


def main(argv: Sequence[str] | None = None) -> None:
    port, options = parse_args(argv)
    uvicorn.run(
        create_app(options),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
