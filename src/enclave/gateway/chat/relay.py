"""Stage 4: route the call (retries, queueing, affinity) and relay the answer.

Non-streamed, the call is cancelled if the client hangs up first (:class:`ClientGone`).
Streamed, the first event was read before the response began (see
:mod:`enclave.gateway.calls`). After it no retry is possible: a failure, or
``read_timeout_s`` / ``total_timeout_s`` running out, ends the stream with an error event
in the OpenAI shape, never a silent truncation. Usage the gateway asked for on the
client's behalf is read for metrics and removed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from enclave import sse
from enclave.errors import ClientGone, EnclaveError, UpstreamError, UpstreamTimeout
from enclave.gateway import calls
from enclave.gateway.calls import OpenedStream
from enclave.gateway.chat import toolcalls
from enclave.gateway.chat.toolstream import ToolStream
from enclave.gateway.errors import envelope
from enclave.router import CallRecord, Lease, Router
from enclave.router.affinity import affinity_key

if TYPE_CHECKING:
    from enclave.gateway.chat.prepare import Prompt


@dataclass(slots=True)
class Streamed:
    opened: OpenedStream  # the upstream's stream, its first event read
    lease: Lease
    events: AsyncGenerator[bytes, None]  # what the client gets, as SSE


async def stream(request: Request, router: Router, prompt: Prompt) -> Streamed:
    """Open the stream on a member (another one while no event has reached the client)."""
    key = affinity_key(router.settings.affinity, prompt.body, request.headers)
    strip_usage = not prompt.parsed.wants_usage()
    opened, lease = await router.send(
        prompt.pool, prompt.body, calls.open_stream(strip_usage, prompt.endpoint), prompt.record,
        key=key, caller=calls.caller_of(request),
    )  # fmt: skip
    started = request.state.started
    events = relay(
        opened, lease, prompt.record, public=prompt.public, started=started,
        strip_usage=strip_usage, tools=_tool_reader(prompt, lease),
    )  # fmt: skip
    return Streamed(opened, lease, events)


async def complete(request: Request, router: Router, prompt: Prompt) -> dict[str, Any]:
    """The whole answer, its usage noted and its model named as the client knows it."""
    key = affinity_key(router.settings.affinity, prompt.body, request.headers)
    record = prompt.record
    caller = calls.caller_of(request)
    send = router.send(
        prompt.pool, prompt.body, calls.complete(prompt.endpoint), record, key=key, caller=caller
    )
    try:
        result, lease = await calls.unless_disconnected(request, send)
    except ClientGone:
        record.outcome = "client_disconnected"
        raise
    lease.done(True)
    record.usage(result.get("usage"))
    record.timings(result.get("timings"))
    record.ttft_s = time.perf_counter() - request.state.started
    result["model"] = prompt.public
    if (names := _tool_names(prompt, lease)) is not None:
        toolcalls.fix_response(result, names)
    return result


def _tool_names(prompt: Prompt, lease: Lease) -> frozenset[str] | None:
    """The tools whose calls written as JSON blocks are read back (:mod:`.toolcalls`):
    only in the embedded engine's answers; another upstream's pass through untouched."""
    chat = prompt.endpoint == "chat"
    if not (chat and lease.member.options.tool_blocks and "tools" in prompt.body):
        return None
    return toolcalls.offered(prompt.body)


def _tool_reader(prompt: Prompt, lease: Lease) -> ToolStream | None:
    names = _tool_names(prompt, lease)
    return ToolStream(names) if names is not None else None


async def relay(
    opened: OpenedStream,
    lease: Lease,
    record: CallRecord,
    *,
    public: str,
    started: float,
    strip_usage: bool,
    tools: ToolStream | None = None,
) -> AsyncGenerator[bytes, None]:
    member = lease.member
    # Renamed when the member knows the model by another id, or names it otherwise in its
    # events (llama.cpp's /v1/completions stream says its own alias whatever was asked).
    rename = lease.upstream_model != public or names_other_model(opened.first.data, public)
    deadline = started + member.options.total_timeout_s
    ok: bool | None = None
    try:
        event = opened.first
        while not event.is_done:
            data: str | None = event.data
            if rename or '"usage"' in event.data:
                data = _adjust(event.data, public, record, strip_usage)
            if record.ttft_s is None:
                record.ttft_s = time.perf_counter() - started
            if tools is not None and data is not None:  # calls written as JSON blocks
                for out in tools.feed(data):
                    yield sse.encode(out)
            elif data is not None:  # the fast path: no tools offered, or not the engine
                yield sse.encode(data)
            event = await _next(opened, member.name, member.options.read_timeout_s, deadline)
        for out in tools.end() if tools is not None else ():
            yield sse.encode(out)
        record.outcome, ok = "done", True  # before [DONE]: the audit record is written then
        yield sse.DONE
    except EnclaveError as exc:
        record.outcome, ok = "upstream_error", False
        yield sse.encode_json(envelope(exc))
    except asyncio.CancelledError:
        record.outcome = "client_disconnected"
        raise
    finally:
        lease.done(ok, "" if ok is not False else "broke off a stream")
        await opened.stream.aclose()


async def close_stream(opened: OpenedStream, lease: Lease) -> None:
    """Give the lease back and close the upstream; a no-op after a finished relay."""
    lease.done(None)
    await opened.stream.aclose()


async def _next(opened: OpenedStream, name: str, read_s: float, deadline: float) -> sse.Event:
    limit = min(read_s, deadline - time.perf_counter())
    try:
        async with asyncio.timeout(max(limit, 0)):
            return await anext(opened.events)
    except StopAsyncIteration:
        raise UpstreamError(f"upstream {name} ended the stream without [DONE]") from None
    except TimeoutError:
        which = "read_timeout_s" if limit == read_s else "total_timeout_s"
        raise UpstreamTimeout(f"upstream {name} stopped sending mid-stream ({which})") from None


def names_other_model(data: str, public: str) -> bool:
    """Whether a stream's first event does not name ``public`` as its model: parsed once,
    so the upstream's spacing or key order does not turn renaming on for every chunk."""
    try:
        chunk: Any = json.loads(data)
    except ValueError:
        return True
    return not isinstance(chunk, dict) or chunk.get("model") != public


def _adjust(data: str, public: str, record: CallRecord, strip_usage: bool) -> str | None:
    """Rename the model, note the usage; drop what the client did not ask for."""
    try:
        chunk: Any = json.loads(data)
    except ValueError:
        return data
    if not isinstance(chunk, dict):
        return data
    if "model" in chunk:
        chunk["model"] = public
    if chunk.get("usage") is not None:
        record.usage(chunk["usage"])
        record.timings(chunk.get("timings"))
        if strip_usage:
            if not chunk.get("choices"):
                return None  # the usage-only chunk we asked for
            del chunk["usage"]
    return json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
