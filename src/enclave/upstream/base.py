"""What the gateway needs from an upstream, whatever sits behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from enclave.sse import Event


@dataclass(frozen=True, slots=True)
class UpstreamState:
    """``ready`` upstreams take requests; others answer 503 with ``retry_after``."""

    state: str  # ready | starting | restarting | down | stopped
    ready: bool
    detail: str = ""
    retry_after: int = 5
    info: dict[str, Any] = field(default_factory=dict)


Readiness = Callable[[], UpstreamState]

ALWAYS_READY = UpstreamState("ready", ready=True)


class ChatStream(Protocol):
    """An open streamed completion: the status line arrived, events follow."""

    headers: dict[str, str]

    def events(self) -> AsyncIterator[Event]: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (what :meth:`events` decodes)."""
        ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    name: str
    vision: bool

    def state(self) -> UpstreamState: ...

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def open_chat_stream(self, body: dict[str, Any]) -> ChatStream: ...

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        """The legacy ``/v1/completions`` (a prompt, not messages)."""
        ...

    async def open_completions_stream(self, body: dict[str, Any]) -> ChatStream: ...

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def models(self) -> list[dict[str, Any]]: ...
