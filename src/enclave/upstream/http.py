"""The OpenAI-compatible HTTP client: one for remote vLLM servers and our own engine alike.

The seam is the ``httpx.AsyncClient`` passed in (httpx's transports), so the same code
talks to a GPU server across the network or to the llama.cpp child on loopback.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from enclave.errors import (
    EngineLoading,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from enclave.sse import Decoder, Event
from enclave.upstream.base import ALWAYS_READY, Readiness, UpstreamState

# Idle pooled connections are dropped before the 5 s after which llama.cpp's and uvicorn's
# servers close them: reusing a connection the server just closed fails with no response.
KEEPALIVE_S = 2.0


def make_client(
    base_url: str, *, api_key: str | None, connect_timeout: float, timeout: float
) -> httpx.AsyncClient:
    """A pooled client for one upstream; ``timeout`` bounds each read (between chunks)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=256, keepalive_expiry=KEEPALIVE_S
        ),
        trust_env=False,  # never route intranet traffic through a proxy from the environment
    )


class _HTTPChatStream:
    def __init__(self, name: str, response: httpx.Response) -> None:
        self._name = name
        self._response = response
        self.headers = dict(response.headers)

    async def events(self) -> AsyncIterator[Event]:
        decoder = Decoder()
        try:
            async for chunk in self._response.aiter_raw():
                for event in decoder.feed(chunk):
                    yield event
            for event in decoder.flush():
                yield event
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"upstream {self._name} stopped sending mid-stream") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream {self._name} broke off the stream: {exc}") from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class HTTPUpstream:
    """An upstream reached over HTTP at ``client.base_url`` (which ends in ``/v1/``)."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
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
        return await self._post_json("chat/completions", body)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._post_json("embeddings", body)

    async def models(self) -> list[dict[str, Any]]:
        response = await self._send(self._client.build_request("GET", "models"))
        return await self._cards(response)

    async def probe(self, seconds: float) -> list[dict[str, Any]]:
        """An active health check: ``/health`` at the server's root (vLLM, llama.cpp), then
        ``/v1/models``, whose cards it returns. Servers without ``/health`` (Ollama) are
        judged by ``/v1/models`` alone."""
        root = str(self._client.base_url).rstrip("/").removesuffix("/v1")
        try:
            health = await self._client.get(root + "/health", timeout=seconds)
            if health.status_code not in (200, 404):
                raise UpstreamError(f"{root}/health answered {health.status_code}")
            response = await self._client.get("models", timeout=seconds)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"health check of {self.name} timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"health check of {self.name} failed: {exc}") from exc
        if response.status_code >= 400:
            raise _status_error(self.name, response)
        return await self._cards(response)

    async def open_chat_stream(self, body: dict[str, Any]) -> _HTTPChatStream:
        request = self._client.build_request("POST", "chat/completions", json=body)
        response = await self._send(request, stream=True)
        return _HTTPChatStream(self.name, response)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._send(self._client.build_request("POST", path, json=body))
        return await self._json(response)

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        self._check_ready()
        response = await self._connect(request)
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            raise _status_error(self.name, response)
        if not stream:
            try:
                await response.aread()
            except httpx.HTTPError as exc:
                raise UpstreamError(f"upstream {self.name} broke off: {exc}") from exc
            finally:
                await response.aclose()
        return response

    async def _connect(self, request: httpx.Request, *, again: bool = True) -> httpx.Response:
        """Send and wait for the status line; once more if a pooled connection was stale."""
        try:
            return await self._client.send(request, stream=True)
        except httpx.RemoteProtocolError as exc:
            # The server closed a kept-alive connection as we reused it: nothing was
            # answered, so sending again on a fresh connection is safe.
            if again:
                return await self._connect(request, again=False)
            raise UpstreamError(f"upstream {self.name} closed the connection") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"upstream {self.name} timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"cannot reach upstream {self.name}: {exc}") from exc

    def _check_ready(self) -> None:
        state = self.state()
        if not state.ready:
            detail = f": {state.detail}" if state.detail else ""
            raise EngineLoading(
                f"model server {self.name} is {state.state}{detail}; retry shortly",
                retry_after=state.retry_after,
            )

    async def _cards(self, response: httpx.Response) -> list[dict[str, Any]]:
        models = (await self._json(response)).get("data")
        return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []

    async def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as exc:
            raise UpstreamError(f"upstream {self.name} sent a body that is not JSON") from exc
        if not isinstance(data, dict):
            raise UpstreamError(f"upstream {self.name} sent JSON that is not an object")
        return data


def _status_error(name: str, response: httpx.Response) -> UpstreamStatusError:
    """Keep the upstream's message; a 5xx becomes our 502 (the fault is behind us)."""
    message, err_type, code, param = _error_fields(response)
    status = response.status_code
    if status >= 500:
        return UpstreamStatusError(
            f"upstream {name} failed ({status}): {message}", status=502, type="upstream_error"
        )
    return UpstreamStatusError(message, status=status, type=err_type, code=code, param=param)


def _error_fields(response: httpx.Response) -> tuple[str, str | None, str | None, str | None]:
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        raw = response.text.strip()[:500]
        return (raw or response.reason_phrase, None, None, None)
    error = body.get("error", body) if isinstance(body, dict) else {}
    if isinstance(error, str):
        return (error, None, None, None)
    if not isinstance(error, dict):
        return (str(body)[:500], None, None, None)
    message = str(error.get("message") or error.get("detail") or response.reason_phrase)

    def text(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) else None

    return (message, text("type"), text("code"), text("param"))
