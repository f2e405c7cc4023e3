"""A real fake upstream: a small HTTP server that speaks vLLM's OpenAI protocol.

Run it as its own process (``tests/fakes/procs.py`` does this for tests)::

    python -m tests.fakes.fake_upstream --port 9001 --models a,b --ttft-ms 50 --itl-ms 10

The reply is built from the request so that a test can check what arrived::

    echo: <last user message text> images=<N> texts=<M> t<k> t<k+1> ...

(N image parts and M text parts over all messages; ``t<k>`` pads it), one word per
stream chunk, padded or cut to exactly ``max_tokens`` (or ``--tokens``) words.
Without ``--vision`` an image part is refused with 400, like a text-only vLLM model.
Unknown request fields come back, sorted and comma-separated, in ``x-fake-extras``
(escaped beyond printable ASCII).
Every response carries ``x-fake-name: <--name>`` (default ``fake``), so a test that
runs several fakes behind one gateway can tell which one answered.

Options fixed at startup (flag, then the ``Options`` field):

``--models a,b``, ``--vision``, ``--context-length N``, ``--api-key KEY`` (then every
``/v1`` route wants ``Authorization: Bearer KEY``), ``--name NAME``,
``--no-health`` (``no_health``: no ``/health`` route, it is 404 — like Ollama, whose
OpenAI endpoint has ``/v1/models`` but no ``/health``), ``--no-stream-usage``
(``no_stream_usage``: ``stream_options.include_usage`` is ignored, like servers
that do not support it).

Options that ``POST /_fake/config`` may change at run time (each has a startup flag
too, ``--ttft-ms`` for ``ttft_ms`` and so on):

``ttft_ms`` / ``itl_ms``
    delay before the first token / between tokens (a non-streamed reply waits
    for the sum).
``tokens``
    reply length when the request sets no ``max_tokens``.
``fail_status`` (int or null)
    every chat call fails with this status and an OpenAI error envelope.
``fail_times`` (int, default 0)
    the next N chat calls fail with ``fail_status``, or 500 when that is null;
    the Nth failure also clears ``fail_status``, so calls succeed again after it
    ("fails twice, then recovers").
``error_after`` (int or null)
    streams end with an error event after N content tokens.
``stall_after`` (int or null)
    streams send the role chunk and N content chunks, then nothing, and stay open
    (0 stalls before the first token). A stalled stream goes on when
    ``stall_after`` is cleared or raised, and ends when the client leaves.
``hang`` (bool)
    chat requests are read, counted and then not answered at all — a streamed
    one gets no headers either — until ``hang`` is turned off (they are then
    answered as usual) or the client disconnects (counted as ``cancelled``).
``hang_health`` (bool)
    ``/health`` and ``/v1/models`` do not answer until it is turned off or the
    client disconnects.
``health_status`` (int, default 200)
    the status ``/health`` answers with (``/v1/models`` is not affected).
``reply`` (str or null)
    answer with this text, newlines kept, one word and the spacing after it per token,
    instead of the echo.
``script`` (str or null)
    what successive chat requests do, cycled, as comma-separated steps: ``ok``;
    ``status:N`` (fail with HTTP N and an error envelope); ``error:K`` (an error event
    after K content tokens); ``drop:K`` (the connection is cut after K content tokens,
    the stream left unfinished); ``end:K`` (the response ends cleanly after K content
    tokens, with no finishing chunk and no ``[DONE]``); ``ttft:MS`` (this request's time
    to first token is MS instead of ``ttft_ms``). Setting it starts again at its first
    step. E.g.
    ``ok,ok,status:503,drop:2`` — the benchmark's tests count errors by type with it.
``replies`` (list or null)
    scripted answers of successive chat requests, each taken once, in order (the usual
    reply comes back after the last): ``{"content": "text"}`` or ``{"tool_calls":
    [{"name": "read_file", "arguments": {...}}, ...], "content"?: "..."}`` — an
    assistant message asking for tool calls (``finish_reason`` ``tool_calls``; ids
    ``call_<n>``, from 1 in each script; ``arguments`` sent as JSON text, or verbatim
    when a string). Streamed too: the calls come as one delta. Setting it starts again
    at its first item. An agent loop's test scripts its model's turns with it. Run time
    only (no startup flag).
``poison`` (str or null)
    a chat call whose request body contains this text fails with 500 (one caller's
    "poison" request, while the others' calls succeed).
``stamp`` (bool)
    every content chunk of a stream carries ``"stamp"``: the fake's ``time.monotonic()``
    just before the chunk is handed to the server (the same clock as the client's
    ``time.perf_counter()`` on Linux), so a client can tell its own measurement error.
``lenient`` (bool)
    no input checks: empty ``messages``, images without ``--vision`` and prompts over
    the context length are answered 200 (a server that fails ``enclave verify``).

``POST /v1/completions`` (the legacy text completion, vLLM's shape) answers each prompt
with the same echo, streamed or not; it counts as a chat request and follows the same
options (``tests/fakes/fake_completions.py``).

Control routes (never behind the API key; they do not count as requests):

``GET /_fake/config``
    the effective options as JSON (all of them, fixed ones included).
``POST /_fake/config``
    a JSON object with any subset of the run-time options above; applied at once
    (held requests and streams look again) and answered with the effective
    options. Unknown or fixed keys, wrong types or negative numbers are 400.
``POST /_fake/restore``
    puts the run-time options back to their startup values.
``GET /_fake/stats``
    ``name``; ``requests`` (chat requests read), ``completed``, ``cancelled`` (the
    client left first), ``embeddings``, ``health_checks`` (GETs of ``/health`` and
    ``/v1/models``); ``in_flight`` (chat requests being answered now, held ones
    included) and ``max_in_flight`` (its high-water mark); ``last_request`` (the
    last chat body) and ``last_headers``.
``GET /_fake/requests``
    the last 32 chat bodies, oldest first (a test that makes several calls, some of them
    in the background, finds the one it wants).
``POST /_fake/reset``
    zeroes the counters (``max_in_flight`` becomes the current ``in_flight``);
    options stay as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hashlib
import json
import re
import struct
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
CHAT_PATH = "/v1/chat/completions"
GENERATING_PATHS = frozenset({CHAT_PATH, "/v1/completions"})  # counted in flight
CLIENT_GONE_STATUS = 499  # never seen by anyone: the client has already left


@dataclass(frozen=True)
class Options:
    """What the fake does. Frozen: a change replaces the whole object at once."""

    # fixed at startup
    models: tuple[str, ...] = ("fake-model",)
    vision: bool = False
    context_length: int = 4096
    api_key: str | None = None
    name: str = "fake"
    no_health: bool = False
    no_stream_usage: bool = False
    # changeable at run time (LIVE_OPTIONS)
    ttft_ms: int = 0
    itl_ms: int = 0
    tokens: int = 16
    fail_status: int | None = None
    fail_times: int = 0
    error_after: int | None = None
    stall_after: int | None = None
    hang: bool = False
    hang_health: bool = False
    health_status: int = 200
    reply: str | None = None
    script: str | None = None
    replies: list[dict[str, Any]] | None = None
    poison: str | None = None
    stamp: bool = False
    lenient: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# What POST /_fake/config may change: name -> (type, whether null is allowed).
LIVE_OPTIONS: dict[str, tuple[type, bool]] = {
    "ttft_ms": (int, False),
    "itl_ms": (int, False),
    "tokens": (int, False),
    "fail_status": (int, True),
    "fail_times": (int, False),
    "error_after": (int, True),
    "stall_after": (int, True),
    "hang": (bool, False),
    "hang_health": (bool, False),
    "health_status": (int, False),
    "reply": (str, True),
    "script": (str, True),
    "replies": (list, True),
    "poison": (str, True),
    "stamp": (bool, False),
    "lenient": (bool, False),
}
STATUS_OPTIONS = frozenset({"fail_status", "health_status"})


def live_part(options: Options) -> dict[str, Any]:
    return {key: getattr(options, key) for key in LIVE_OPTIONS}


def updated(options: Options, changes: dict[str, Any]) -> Options:
    """``options`` with ``changes`` applied; :class:`FakeError` 400 if one is not allowed."""
    for key, value in changes.items():
        if key not in LIVE_OPTIONS:
            allowed = ", ".join(LIVE_OPTIONS)
            message = f"unknown or fixed option {key!r}; run-time options: {allowed}"
            raise FakeError(400, message, "invalid_request_error")
        kind, nullable = LIVE_OPTIONS[key]
        if value is None and nullable:
            continue
        if type(value) is not kind:
            wanted = kind.__name__ + (" or null" if nullable else "")
            raise FakeError(400, f"{key} must be {wanted}", "invalid_request_error")
        if key == "script":
            parse_script(str(value))
        if key == "replies":
            check_replies(value)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if value < 0:
            raise FakeError(400, f"{key} must not be negative", "invalid_request_error")
        if key in STATUS_OPTIONS and not 100 <= value <= 599:
            raise FakeError(400, f"{key} must be an HTTP status", "invalid_request_error")
    return replace(options, **changes)


@dataclass(frozen=True)
class Step:
    """One step of ``script``: ``ok``, ``status``, ``error``, ``drop``, ``end`` or ``ttft``."""

    kind: str = "ok"
    value: int = 0


SCRIPT_KINDS = frozenset({"status", "error", "drop", "end", "ttft"})


def parse_script(text: str) -> tuple[Step, ...]:
    """The steps of a ``script`` option; :class:`FakeError` 400 if one is not valid."""
    steps: list[Step] = []
    for item in text.split(","):
        kind, _, value = item.strip().partition(":")
        if kind == "ok" and not value:
            steps.append(Step())
            continue
        if kind not in SCRIPT_KINDS or not value.isdigit():
            message = f"bad script step {item!r}: ok, status:N, error:K, drop:K, end:K or ttft:MS"
            raise FakeError(400, message, "invalid_request_error")
        if kind == "status" and not 100 <= int(value) <= 599:
            raise FakeError(400, f"{item!r}: not an HTTP status", "invalid_request_error")
        steps.append(Step(kind, int(value)))
    return tuple(steps)


def check_replies(replies: object) -> None:
    """:class:`FakeError` 400 unless every item of ``replies`` is a reply the fake can give."""
    for item in replies if isinstance(replies, list) else [None]:
        calls = item.get("tool_calls", []) if isinstance(item, dict) else None
        if not isinstance(calls, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls
        ):
            message = 'a reply is {"content": str} or {"tool_calls": [{"name": str, ...}]}'
            raise FakeError(400, message, "invalid_request_error")


def scripted_message(item: dict[str, Any], first_id: int) -> dict[str, Any]:
    """The assistant message of one scripted reply."""
    message: dict[str, Any] = {"role": "assistant", "content": item.get("content")}
    calls = []
    for index, call in enumerate(item.get("tool_calls", [])):
        arguments = call.get("arguments", {})
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        function = {"name": call["name"], "arguments": text}
        calls.append({"id": f"call_{first_id + index}", "type": "function", "function": function})
    if calls:
        message["tool_calls"] = calls
    return message


class DropConnection(Exception):
    """Raised inside a stream: the server cuts the connection (a scripted ``drop``)."""


def stalled(sent: int) -> Callable[[Options], bool]:
    """Whether a stream that has sent ``sent`` content chunks must hold now."""
    return lambda options: options.stall_after is not None and sent >= options.stall_after


@dataclass
class Stats:
    name: str
    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    embeddings: int = 0
    health_checks: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    last_request: dict[str, Any] | None = None
    last_headers: dict[str, str] = field(default_factory=dict)

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def zeroed(self) -> Stats:
        """New counters; requests still in flight stay counted."""
        return Stats(self.name, in_flight=self.in_flight, max_in_flight=self.in_flight)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class FakeError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.type, "param": None, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status)


class ClientGone(Exception):
    """The client disconnected while its request was held."""


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
    if options.reply is not None:  # verbatim, newlines kept: a word and its spacing a token
        pieces = re.findall(r"\s*\S+\s*|\s+", options.reply)[:limit]
        finish = "length" if asked and len(pieces) == limit else "stop"
        return Reply(pieces, finish, prompt_tokens(messages))
    words = f"echo: {last_user_text(messages)} images={images} texts={texts}".split()
    words += [f"t{i}" for i in range(len(words) + 1, limit + 1)]
    text, stopped = apply_stop(" ".join(words[:limit]), body.get("stop"))
    pieces = re.findall(r"\s*\S+", text)
    finish = "stop" if stopped or not asked else "length"
    return Reply(pieces, finish, prompt_tokens(messages))


def extras_header(body: dict[str, Any]) -> dict[str, str]:
    extras = sorted(key for key in body if key not in STANDARD_FIELDS)
    # A header holds printable ASCII: a field name with more (a fuzzer's) comes back escaped
    # instead of failing the whole reply with a 500.
    names = ",".join(extras).encode("unicode_escape").decode("ascii")
    return {"x-fake-extras": names} if extras else {}


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


def chunk(
    body: dict[str, Any],
    cid: str,
    delta: dict[str, Any],
    finish: str | None,
    *,
    stamp: bool = False,
) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    data: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [choice],
    }
    if stamp:
        data["stamp"] = time.monotonic()
    return encode_json(data)


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
        self.startup = options
        self.options = options
        self.stats = Stats(options.name)
        self.bodies: collections.deque[dict[str, Any]] = collections.deque(maxlen=32)
        self._ids = 0
        self._step = 0  # the next step of options.script
        self._reply = 0  # the next item of options.replies
        self._calls = 0  # tool calls scripted so far (their ids)
        self._changed = asyncio.Event()  # set (and replaced) whenever options change

    def next_id(self) -> str:
        self._ids += 1
        return f"chatcmpl-fake-{self._ids}"

    def set_options(self, options: Options) -> None:
        if options.script != self.options.script:
            self._step = 0
        if options.replies is not self.options.replies:
            self._reply = self._calls = 0
        self.options = options
        self._changed.set()
        self._changed = asyncio.Event()

    async def hold(self, request: Request, held: Callable[[Options], bool]) -> None:
        """Wait while ``held(options)``; raise :class:`ClientGone` if the client leaves."""
        if not held(self.options):
            return
        gone = asyncio.ensure_future(wait_disconnect(request.receive))
        try:
            while held(self.options):
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait({gone, changed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                if gone.done():
                    raise ClientGone
        finally:
            gone.cancel()

    async def health(self, request: Request) -> Response:
        self.stats.health_checks += 1
        await self.hold(request, lambda options: options.hang_health)
        return Response(status_code=self.options.health_status)

    async def models(self, request: Request) -> Response:
        self.stats.health_checks += 1
        await self.hold(request, lambda options: options.hang_health)
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

    async def admit(self, request: Request) -> tuple[dict[str, Any], Step]:
        """What a chat (or legacy completions) call goes through before its answer: the
        key, the counters, ``hang``, the scripted failures and ``script`` step, the model."""
        check_auth(request, self.options)
        body = await read_json(request)
        self.stats.requests += 1
        self.stats.last_request = body
        self.bodies.append(body)
        self.stats.last_headers = dict(request.headers)
        try:
            await self.hold(request, lambda options: options.hang)
        except ClientGone:
            self.stats.cancelled += 1
            raise
        self.scripted_failure()
        if self.options.poison is not None and self.options.poison in json.dumps(body):
            raise FakeError(500, "poisoned request", "upstream_error")
        step = self.next_step()
        if step.kind == "status":
            raise FakeError(step.value, "scripted failure", "upstream_error")
        check_model(body, self.options)
        return body, step

    async def chat(self, request: Request) -> Response:
        body, step = await self.admit(request)
        if not self.options.lenient:
            check_chat(body, self.options)
        elif not isinstance(body.get("messages"), list):
            body["messages"] = []
        headers = extras_header(body)
        scripted = self.next_reply()
        if scripted is not None:
            return self.scripted(body, scripted, headers)
        reply = build_reply(body, self.options)
        if body.get("stream"):
            stream = self.stream(request, body, reply, step)
            return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
        await self.pause(len(reply.pieces), step)
        self.stats.completed += 1
        return JSONResponse(completion(body, self.next_id(), reply), headers=headers)

    def scripted_failure(self) -> None:
        options = self.options
        if options.fail_times:
            left = options.fail_times - 1
            status = options.fail_status if left else None  # the last one clears it
            self.set_options(replace(options, fail_times=left, fail_status=status))
            raise FakeError(options.fail_status or 500, "scripted failure", "upstream_error")
        if options.fail_status is not None:
            raise FakeError(options.fail_status, "scripted failure", "upstream_error")

    def next_reply(self) -> dict[str, Any] | None:
        """This request's item of ``replies`` (``None`` without one, or after the last)."""
        replies = self.options.replies
        if replies is None or self._reply >= len(replies):
            return None
        self._reply += 1
        item: dict[str, Any] = replies[self._reply - 1]
        return item

    def scripted(
        self, body: dict[str, Any], item: dict[str, Any], headers: dict[str, str]
    ) -> Response:
        message = scripted_message(item, self._calls + 1)
        self._calls += len(message.get("tool_calls", []))
        finish = "tool_calls" if "tool_calls" in message else "stop"
        used = len(json.dumps(message).split())
        usage = {"prompt_tokens": prompt_tokens(body["messages"]), "completion_tokens": used}
        usage["total_tokens"] = usage["prompt_tokens"] + used
        cid = self.next_id()
        self.stats.completed += 1
        if body.get("stream"):
            delta = {k: v for k, v in message.items() if v is not None}
            for index, call in enumerate(delta.get("tool_calls", [])):
                call["index"] = index
            events = [chunk(body, cid, delta, None), chunk(body, cid, {}, finish), DONE]
            return StreamingResponse(iter(events), media_type="text/event-stream",
                                     headers=headers)  # fmt: skip
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return JSONResponse({"id": cid, "object": "chat.completion", "created": int(time.time()),
                             "model": body["model"], "choices": [choice], "usage": usage},
                            headers=headers)  # fmt: skip

    def next_step(self) -> Step:
        """This request's step of ``script`` (``ok`` without one)."""
        if self.options.script is None:
            return Step()
        steps = parse_script(self.options.script)
        step = steps[self._step % len(steps)]
        self._step += 1
        return step

    def ttft_s(self, step: Step) -> float:
        return (step.value if step.kind == "ttft" else self.options.ttft_ms) / 1000

    async def pause(self, pieces: int, step: Step) -> None:
        seconds = self.ttft_s(step) + self.options.itl_ms * max(pieces - 1, 0) / 1000
        await asyncio.sleep(seconds)

    async def stream(
        self, request: Request, body: dict[str, Any], reply: Reply, step: Step
    ) -> AsyncIterator[bytes]:
        done = False
        try:
            async for data in self.events(request, body, reply, step):
                yield data
            done = True
            self.stats.completed += 1
        except ClientGone:
            pass
        finally:
            if not done:
                self.stats.cancelled += 1

    async def events(
        self, request: Request, body: dict[str, Any], reply: Reply, step: Step
    ) -> AsyncIterator[bytes]:
        cid = self.next_id()
        yield chunk(body, cid, {"role": "assistant", "content": ""}, None)
        await asyncio.sleep(self.ttft_s(step))
        error_after = step.value if step.kind == "error" else self.options.error_after
        drop_after = step.value if step.kind == "drop" else None
        end_after = step.value if step.kind == "end" else None
        for index, piece in enumerate(reply.pieces):
            if index == end_after:
                return
            if index == error_after:
                yield error_event()
                return
            if index == drop_after:
                raise DropConnection
            if index:
                await asyncio.sleep(self.options.itl_ms / 1000)
            await self.hold(request, stalled(index))
            stamp = self.options.stamp
            yield chunk(body, cid, {"content": piece}, None, stamp=stamp)
        yield chunk(body, cid, {}, reply.finish_reason)
        options = body.get("stream_options") or {}
        if options.get("include_usage") and not self.options.no_stream_usage:
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

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            self.set_options(updated(self.options, await read_json(request)))
        return JSONResponse(self.options.as_json())

    async def restore(self, request: Request) -> Response:
        self.set_options(replace(self.options, **live_part(self.startup)))
        return JSONResponse(self.options.as_json())

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats.as_json())

    async def requests(self, request: Request) -> Response:
        return JSONResponse(list(self.bodies))

    async def reset(self, request: Request) -> Response:
        self.bodies.clear()
        self.stats = self.stats.zeroed()
        self._step = 0
        self._reply = 0
        return JSONResponse(self.stats.as_json())


async def wait_disconnect(receive: Receive) -> None:
    """Return once the client has gone (the request body must have been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Bookkeeping:
    """ASGI middleware: names every response and counts chat (and legacy completions)
    requests in flight.

    A chat request is in flight from its arrival until its response (a whole stream)
    is sent or given up, held requests included.
    """

    def __init__(self, app: ASGIApp, fake: FakeUpstream) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = self.fake.options.name.encode()

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-fake-name", name)]
                message = {**message, "headers": headers}
            await send(message)

        if scope["path"] not in GENERATING_PATHS:
            await self.app(scope, receive, named)
            return
        self.fake.stats.enter()
        try:
            await self.app(scope, receive, named)
        finally:
            self.fake.stats.leave()  # the current Stats: reset carries in_flight over


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


async def on_client_gone(request: Request, exc: Exception) -> Response:
    return Response(status_code=CLIENT_GONE_STATUS)


def create_app(options: Options) -> Starlette:
    from tests.fakes import fake_completions  # it builds on this module

    fake = FakeUpstream(options)
    routes = [
        *([] if options.no_health else [Route("/health", fake.health)]),
        Route("/v1/models", fake.models),
        Route(CHAT_PATH, fake.chat, methods=["POST"]),
        Route(fake_completions.PATH, fake_completions.handler(fake), methods=["POST"]),
        Route("/v1/embeddings", fake.embeddings, methods=["POST"]),
        Route("/_fake/config", fake.config, methods=["GET", "POST"]),
        Route("/_fake/restore", fake.restore, methods=["POST"]),
        Route("/_fake/stats", fake.get_stats),
        Route("/_fake/requests", fake.requests),
        Route("/_fake/reset", fake.reset, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Bookkeeping, fake=fake)],
        exception_handlers={FakeError: on_fake_error, ClientGone: on_client_gone},
    )


def parse_args(argv: Sequence[str] | None) -> tuple[int, Options]:
    parser = argparse.ArgumentParser(prog="fake_upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models", default="fake-model", help="comma-separated model names")
    parser.add_argument("--vision", action="store_true", help="accept image parts")
    parser.add_argument("--context-length", type=int, default=4096)
    parser.add_argument("--api-key")
    parser.add_argument("--name", default="fake", help="sent in x-fake-name and in stats")
    parser.add_argument("--no-health", action="store_true", help="no /health route (404)")
    parser.add_argument(
        "--no-stream-usage", action="store_true", help="ignore stream_options.include_usage"
    )
    parser.add_argument("--ttft-ms", type=int, default=0)
    parser.add_argument("--itl-ms", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--fail-status", type=int, help="every chat call fails with it")
    parser.add_argument("--fail-times", type=int, default=0, help="the first N chat calls fail")
    parser.add_argument("--error-after", type=int, help="an error event after N tokens")
    parser.add_argument("--stall-after", type=int, help="streams go silent after N tokens")
    parser.add_argument("--hang", action="store_true", help="chat calls are never answered")
    parser.add_argument("--hang-health", action="store_true", help="/health never answers")
    parser.add_argument("--health-status", type=int, default=200, help="what /health answers")
    parser.add_argument("--reply", help="answer with this text instead of the echo")
    parser.add_argument("--script", help="steps of successive chat calls, e.g. ok,status:503")
    parser.add_argument("--stamp", action="store_true", help="chunks carry the fake's clock")
    parser.add_argument("--lenient", action="store_true", help="no input checks (200 for all)")
    args = parser.parse_args(argv)
    options = Options(
        models=tuple(name.strip() for name in args.models.split(",") if name.strip()),
        vision=args.vision,
        context_length=args.context_length,
        api_key=args.api_key,
        name=args.name,
        no_health=args.no_health,
        no_stream_usage=args.no_stream_usage,
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        tokens=args.tokens,
        fail_status=args.fail_status,
        fail_times=args.fail_times,
        error_after=args.error_after,
        stall_after=args.stall_after,
        hang=args.hang,
        hang_health=args.hang_health,
        health_status=args.health_status,
        reply=args.reply,
        script=args.script,
        stamp=args.stamp,
        lenient=args.lenient,
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
