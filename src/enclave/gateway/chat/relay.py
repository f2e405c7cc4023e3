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


async def stream(
    request: Request, router: Router, prompt: Prompt, *, coalesce: bool = True
) -> Streamed:
    """Open the stream on a member (another one while no event has reached the client);
    ``coalesce``: see :func:`relay`."""
    key = affinity_key(router.settings.affinity, prompt.body, request.headers)
    strip_usage = not prompt.parsed.wants_usage()
    opened, lease = await router.send(
        prompt.pool, prompt.body, calls.open_stream(strip_usage, prompt.endpoint), prompt.record,
        key=key, caller=calls.caller_of(request),
    )  # fmt: skip
    started = request.state.started
    events = relay(
        opened, lease, prompt.record, public=prompt.public, started=started,
        strip_usage=strip_usage, tools=_tool_reader(prompt, lease), coalesce=coalesce,
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
    coalesce: bool = False,
) -> AsyncGenerator[bytes, None]:
    """The client's events. Those that need no change pass through as the upstream's
    bytes; with ``coalesce``, the events read together go out in one write (else one
    event per item, as an assistant or a conversation keeper reads them)."""
    member = lease.member
    # Renamed when the member knows the model by another id, or names it otherwise in its
    # events (llama.cpp's /v1/completions stream says its own alias whatever was asked).
    rename = lease.upstream_model != public or names_other_model(opened.first.data, public)
    edit = _Edit(public, record, strip_usage, rename, tools)
    deadline = started + member.options.total_timeout_s
    ok: bool | None = None
    try:
        batch: list[bytes | sse.Event] = [opened.first, *opened.rest]
        if record.ttft_s is None:
            record.ttft_s = time.perf_counter() - started
        while True:
            out: list[bytes] = []
            done = edit.batch(batch, out)
            if coalesce and len(out) > 1:
                yield b"".join(out)
            else:
                for piece in out:
                    yield piece
            if done:
                break
            batch = await _next(opened, member.name, member.options.read_timeout_s, deadline)
        for last in tools.end() if tools is not None else ():
            yield sse.encode(last)
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


class _Edit:
    """What the relay does to each event: nothing (the bytes pass), or rename the model,
    note and maybe drop the usage, read tool calls written as JSON blocks."""

    __slots__ = ("public", "record", "rename", "strip_usage", "tools")

    def __init__(
        self, public: str, record: CallRecord, strip_usage: bool, rename: bool,
        tools: ToolStream | None,
    ) -> None:  # fmt: skip
        self.public, self.record, self.strip_usage = public, record, strip_usage
        self.rename, self.tools = rename, tools

    def batch(self, batch: list[bytes | sse.Event], out: list[bytes]) -> bool:
        """Append the client's bytes for ``batch`` to ``out``; whether it held [DONE]."""
        plain = not self.rename and self.tools is None
        for item in batch:
            if isinstance(item, bytes):
                if item == sse.DONE:
                    return True
                if plain and b'"usage"' not in item:  # the fast path: as it came
                    out.append(item)
                    continue
                data = item[6:-2].decode()
            elif item.is_done:
                return True
            else:
                data = item.data
            self.event(data, out)
        return False

    def event(self, data: str, out: list[bytes]) -> None:
        changed: str | None = data
        if self.rename or '"usage"' in data:
            changed = _adjust(data, self.public, self.record, self.strip_usage)
        if changed is None:
            return
        if self.tools is None:
            out.append(sse.encode(changed))
            return
        out.extend(sse.encode(piece) for piece in self.tools.feed(changed))


async def close_stream(opened: OpenedStream, lease: Lease) -> None:
    """Give the lease back and close the upstream; a no-op after a finished relay."""
    lease.done(None)
    await opened.stream.aclose()


async def _next(
    opened: OpenedStream, name: str, read_s: float, deadline: float
) -> list[bytes | sse.Event]:
    """The events of the next bytes the upstream sends (maybe none: half an event)."""
    if opened.frames.ended:
        raise UpstreamError(f"upstream {name} ended the stream without [DONE]")
    limit = min(read_s, deadline - time.perf_counter())
    try:
        async with asyncio.timeout(max(limit, 0)):
            return opened.frames.feed(await anext(opened.chunks))
    except StopAsyncIteration:
        return opened.frames.flush()
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
