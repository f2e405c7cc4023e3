"""The OpenAI-compatible HTTP client: one for remote vLLM servers and our own engine alike.

OpenAI semantics (routes, error bodies, readiness, SSE events) over the sockets of
:mod:`enclave.http1`. The seam is the :class:`~enclave.http1.Client` passed in, so the same
code talks to a GPU server across the network or to the llama.cpp child on loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from enclave.errors import (
    EngineLoading,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from enclave.http1 import Client, Response
from enclave.sse import Decoder, Event
from enclave.upstream.base import ALWAYS_READY, Readiness, UpstreamState

# Idle pooled connections are dropped before the 5 s after which llama.cpp's and uvicorn's
# servers close them: reusing a connection the server just closed fails with no response.
KEEPALIVE_S = 2.0


def make_client(base_url: str, *, api_key: str | None, connect_timeout: float) -> Client:
    """Pooled connections to one upstream (never through a proxy from the environment)."""
    return Client(
        base_url, api_key=api_key, connect_timeout=connect_timeout, keepalive_s=KEEPALIVE_S
    )


class _HTTPChatStream:
    def __init__(self, name: str, response: Response) -> None:
        self._name = name
        self._response = response
        self.headers = response.headers

    async def events(self) -> AsyncIterator[Event]:
        decoder = Decoder()
        async for chunk in self.chunks():
            for event in decoder.feed(chunk):
                yield event
        for event in decoder.flush():
            yield event

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.iter_chunks():
                yield chunk
        except UpstreamError as exc:
            raise UpstreamError(f"upstream {self._name} broke off the stream: {exc}") from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class HTTPUpstream:
    """An upstream reached over HTTP at ``client.base_url`` (which ends in ``/v1``)."""

    def __init__(
        self,
        name: str,
        client: Client,
        *,
        vision: bool = False,
        readiness: Readiness | None = None,
    ) -> None:
        self.name = name
        self.vision = vision
        self._client = client
        self._readiness = readiness or (lambda: ALWAYS_READY)

    def state(self) -> UpstreamState:
        return self._readiness()

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", "chat/completions", body)

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", "completions", body)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._json("POST", "embeddings", body)

    async def models(self) -> list[dict[str, Any]]:
        return _cards(await self._json("GET", "models"))

    async def probe(self, seconds: float) -> list[dict[str, Any]]:
        """An active health check: ``/health`` at the server's root (vLLM, llama.cpp), then
        ``/v1/models``, whose cards it returns. Servers without ``/health`` (Ollama) are
        judged by ``/v1/models`` alone."""
        try:
            async with asyncio.timeout(seconds):
                health = await self._client.request("GET", self._client.root + "/health")
                await health.read()
                if health.status_code not in (200, 404):
                    raise UpstreamError(f"its /health answered {health.status_code}")
                return _cards(await self._json("GET", "models", ready=False))
        except TimeoutError:
            raise UpstreamTimeout(f"health check of {self.name} timed out") from None
        except UpstreamError as exc:
            raise UpstreamError(f"health check of {self.name} failed: {exc.message}") from exc

    async def open_chat_stream(self, body: dict[str, Any]) -> _HTTPChatStream:
        return await self._open_stream("chat/completions", body)

    async def open_completions_stream(self, body: dict[str, Any]) -> _HTTPChatStream:
        return await self._open_stream("completions", body)

    async def _open_stream(self, path: str, body: dict[str, Any]) -> _HTTPChatStream:
        response = await self._send("POST", path, body)
        if response.status_code >= 400:
            raise _status_error(self.name, response.status_code, await self._read(response))
        return _HTTPChatStream(self.name, response)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _json(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, ready: bool = True
    ) -> dict[str, Any]:
        response = await self._send(method, path, body, ready=ready)
        raw = await self._read(response)
        if response.status_code >= 400:
            raise _status_error(self.name, response.status_code, raw)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise UpstreamError(f"upstream {self.name} sent a body that is not JSON") from exc
        if not isinstance(data, dict):
            raise UpstreamError(f"upstream {self.name} sent JSON that is not an object")
        return data

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None, *, ready: bool = True
    ) -> Response:
        if ready:
            self._check_ready()
        try:
            return await self._client.request(method, path, body)
        except UpstreamTimeout as exc:
            raise UpstreamTimeout(f"upstream {self.name}: {exc.message}") from exc
        except UpstreamError as exc:
            raise UpstreamError(f"upstream {self.name}: {exc.message}") from exc

    async def _read(self, response: Response) -> bytes:
        try:
            return await response.read()
        except UpstreamError as exc:
            raise UpstreamError(f"upstream {self.name} broke off: {exc.message}") from exc

    def _check_ready(self) -> None:
        state = self.state()
        if not state.ready:
            detail = f": {state.detail}" if state.detail else ""
            raise EngineLoading(
                f"model server {self.name} is {state.state}{detail}; retry shortly",
                retry_after=state.retry_after,
            )


def _cards(data: dict[str, Any]) -> list[dict[str, Any]]:
    models = data.get("data")
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def _status_error(name: str, status: int, raw: bytes) -> UpstreamStatusError:
    """Keep the upstream's message; a 5xx becomes our 502 (the fault is behind us)."""
    message, err_type, code, param = _error_fields(status, raw)
    if status >= 500:
        return UpstreamStatusError(
            f"upstream {name} failed ({status}): {message}", status=502, type="upstream_error"
        )
    return UpstreamStatusError(message, status=status, type=err_type, code=code, param=param)


def _error_fields(status: int, raw: bytes) -> tuple[str, str | None, str | None, str | None]:
    reason = _reason(status)
    try:
        body = json.loads(raw)
    except ValueError:
        shown = raw.decode("utf-8", "replace").strip()[:500]
        return (shown or reason, None, None, None)
    error = body.get("error", body) if isinstance(body, dict) else {}
    if isinstance(error, str):
        return (error, None, None, None)
    if not isinstance(error, dict):
        return (str(body)[:500], None, None, None)
    message = str(error.get("message") or error.get("detail") or reason)

    def text(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) else None

    return (message, text("type"), text("code"), text("param"))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"status {status}"
