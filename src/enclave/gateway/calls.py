"""The calls the router makes on a member, each bounded by that member's timeouts.

Timeouts are ours (asyncio), not httpx's read timeout, because a non-streamed answer
sends nothing until it is complete while a stream must keep sending: first byte,
between events and total are three different limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from starlette.requests import Request

from enclave.errors import ClientGone, UpstreamError, UpstreamTimeout
from enclave.router import Lease
from enclave.sse import Event, Frames
from enclave.upstream import ChatStream

T = TypeVar("T")
Endpoint = Literal["chat", "completions"]  # what a chat pool's members answer
Kind = Literal["chat", "completions", "embeddings"]


@dataclass(slots=True)
class OpenedStream:
    stream: ChatStream
    chunks: AsyncIterator[bytes]  # the body's bytes after those already split
    frames: Frames  # splits them into events
    first: Event
    rest: list[bytes | Event]  # the events that came with the first one


async def first_event(chunks: AsyncIterator[bytes], frames: Frames) -> list[bytes | Event]:
    """The stream's events up to and including its first one (none: it ended)."""
    while not frames.ended:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return frames.flush()
        if found := frames.feed(chunk):
            return found
    return []


def as_event(item: bytes | Event) -> Event:
    return item if isinstance(item, Event) else Event(item[6:-2].decode())


async def bounded(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise UpstreamTimeout(f"{what} took longer than {seconds:g} s") from None


def complete(kind: Kind) -> Callable[[Lease, dict[str, Any]], Awaitable[dict[str, Any]]]:
    """A non-streamed call (``chat``, ``completions`` or ``embeddings``) within
    ``total_timeout_s``."""

    async def call(lease: Lease, wire: dict[str, Any]) -> dict[str, Any]:
        member = lease.member
        upstream = member.upstream
        method = {
            "chat": upstream.chat,
            "completions": upstream.completions,
            "embeddings": upstream.embeddings,
        }[kind]
        limit = member.options.total_timeout_s
        return await bounded(method(wire), limit, f"upstream {member.name} (total_timeout_s)")

    return call


def open_stream(
    add_usage: bool, endpoint: Endpoint = "chat"
) -> Callable[[Lease, dict[str, Any]], Awaitable[OpenedStream]]:
    """Open a stream (of ``/chat/completions`` or ``/completions``) and wait for its first
    event within ``first_byte_timeout_s``: until then nothing reached the client, so any
    failure can still go to another member."""

    async def call(lease: Lease, wire: dict[str, Any]) -> OpenedStream:
        member = lease.member
        if add_usage and member.options.stream_usage:
            wire["stream_options"] = {**(wire.get("stream_options") or {}), "include_usage": True}
        limit = member.options.first_byte_timeout_s
        what = f"upstream {member.name} (first_byte_timeout_s)"
        upstream = member.upstream
        opens = upstream.open_chat_stream
        if endpoint == "completions":
            opens = upstream.open_completions_stream
        stream = await bounded(opens(wire), limit, what)
        chunks, frames = stream.chunks(), Frames()
        try:
            found = await bounded(first_event(chunks, frames), limit, what)
        except BaseException:
            await stream.aclose()
            raise
        if not found:
            await stream.aclose()
            raise UpstreamError(f"upstream {member.name} ended the stream at once")
        first = as_event(found[0])
        if first.data.startswith('{"error"'):
            await stream.aclose()
            raise UpstreamError(f"upstream {member.name} failed at the start: {first.data[:300]}")
        return OpenedStream(stream, chunks, frames, first, found[1:])

    return call


def caller_of(request: Request) -> str:
    """Who asked, as the router tells callers apart (one caller's failing requests slow
    that caller down, not the member): the API key, else the user, else the address."""
    state = request.scope.get("state", {})
    principal = state.get("principal")
    if principal is not None and principal.key_prefix:
        return f"key:{principal.key_prefix}"
    if principal is not None and principal.user:
        return f"user:{principal.user}"
    return f"ip:{state.get('client_ip') or 'unknown'}"


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``, cancelled if the client disconnects first (then :class:`ClientGone`)."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnect(request))
    try:
        done, _ = await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if task not in done:
        await asyncio.wait((task,))  # let it give its lease back before we answer
        raise ClientGone
    return task.result()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
