"""A small typed client of the OpenAI chat API, over httpx (used by ``ask`` and bench).

Requests are plain dicts built by :func:`chat_request` and :func:`user_message`, so this
module needs no pydantic. Failures are the :class:`ClientError` family of
:mod:`enclave.errors` (Unreachable, StatusError/AuthRefused, StreamError, ProtocolError,
ImageError).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from enclave.errors import (
    AuthRefused,
    ClientError,
    ProtocolError,
    StatusError,
    StreamError,
    Unreachable,
)
from enclave.sse import Event, decode

# --- building requests -----------------------------------------------------------------


def system_message(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def user_message(text: str, image_urls: Sequence[str] = ()) -> dict[str, Any]:
    """A user message: plain text, or a text part followed by ``image_url`` parts."""
    if not image_urls:
        return {"role": "user", "content": text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in image_urls]
    return {"role": "user", "content": parts}


def chat_request(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The body of ``POST /chat/completions``; ``None`` options are left out."""
    body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    body.update(extra)
    return body


def api_base(url: str) -> str:
    """``http://host:port`` or ``http://host:port/v1`` (trailing ``/`` or not) → ``.../v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


# --- reading answers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def from_json(cls, data: object) -> Usage | None:
        if not isinstance(data, dict):
            return None
        prompt = int(data.get("prompt_tokens") or 0)
        completion = int(data.get("completion_tokens") or 0)
        return cls(prompt, completion, int(data.get("total_tokens") or prompt + completion))


@dataclass(frozen=True, slots=True)
class Delta:
    """One stream chunk, reduced to what callers use."""

    content: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    finish_reason: str | None
    usage: Usage | None
    model: str


def error_message(body: bytes) -> tuple[str, str | None]:
    """``error.message`` and ``error.code`` from an error body, or the body's text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip() or "(no message)", None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        code = error.get("code")
        return str(error["message"]), None if code is None else str(code)
    if isinstance(data, dict) and data.get("detail"):
        return str(data["detail"]), None
    return json.dumps(data)[:500], None


def status_error(status: int, body: bytes) -> StatusError:
    message, code = error_message(body)
    kind = AuthRefused if status == 401 else StatusError
    return kind(status, message, code=code)


def _json_object(data: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except ValueError:
        raise ProtocolError(f"the server sent a malformed event: {data[:200]!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"the server sent a malformed event: {data[:200]!r}")
    return obj


def _raise_if_error(obj: Mapping[str, Any]) -> None:
    error = obj.get("error")
    if error is None and obj.get("object") == "error":  # older vLLM's unwrapped error
        error = obj
    if error is None:
        return
    message = error.get("message") if isinstance(error, dict) else error
    raise StreamError(str(message or "the server reported an error mid-stream"))


def parse_chunk(event: Event) -> Delta:
    """A ``chat.completion.chunk`` event as a :class:`Delta`; error events raise."""
    obj = _json_object(event.data)
    _raise_if_error(obj)
    usage = Usage.from_json(obj.get("usage"))
    choices = obj.get("choices") or []
    if not choices:
        return Delta(usage=usage)
    choice = choices[0]
    delta = choice.get("delta") or {}
    return Delta(delta.get("content") or "", choice.get("finish_reason"), usage)


def parse_completion(obj: Mapping[str, Any]) -> Completion:
    _raise_if_error(obj)
    try:
        choice = obj["choices"][0]
        content = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ProtocolError("the server's answer has no choices[0].message") from None
    usage = Usage.from_json(obj.get("usage"))
    return Completion(str(content), choice.get("finish_reason"), usage, str(obj.get("model", "")))


# --- the client ------------------------------------------------------------------------


def default_timeout() -> httpx.Timeout:
    """Connect fast, but let a slow CPU model think for a long time."""
    return httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=10.0)


class ChatClient:
    """``POST {base}/chat/completions``, streamed or not, with errors mapped."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = api_base(url)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http or httpx.Client(timeout=timeout or default_timeout())
        self._owns_http = http is None

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def complete(self, body: Mapping[str, Any]) -> Completion:
        """A non-streamed completion."""
        return parse_completion(self.complete_raw(body))

    def complete_raw(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A non-streamed completion: the response body as the server sent it."""
        with self._transport_errors():
            response = self._http.post(
                self._url(), json={**body, "stream": False}, headers=self._headers
            )
        if response.status_code >= 400:
            raise status_error(response.status_code, response.content)
        try:
            obj = response.json()
        except ValueError:
            raise ProtocolError("the server's answer is not JSON") from None
        if not isinstance(obj, dict):
            raise ProtocolError("the server's answer is not a JSON object")
        return obj

    def models(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """``GET {base}/models``: the model cards the server lists."""
        with self._transport_errors():
            response = self._http.get(
                f"{self.base_url}/models", headers=self._headers, timeout=timeout
            )
        if response.status_code >= 400:
            raise status_error(response.status_code, response.content)
        try:
            data = response.json().get("data")
        except (ValueError, AttributeError):
            raise ProtocolError("the server's model list is not a JSON object") from None
        return [card for card in data or [] if isinstance(card, dict)]

    def stream(self, body: Mapping[str, Any], *, include_usage: bool = False) -> Iterator[Delta]:
        """Deltas as they arrive; stops at ``[DONE]`` or when the stream ends."""
        wire: dict[str, Any] = {**body, "stream": True}
        if include_usage:
            wire["stream_options"] = {"include_usage": True}
        with (
            self._transport_errors(),
            self._http.stream("POST", self._url(), json=wire, headers=self._headers) as response,
        ):
            if response.status_code >= 400:
                raise status_error(response.status_code, response.read())
            yield from self._deltas(response)

    @staticmethod
    def _deltas(response: httpx.Response) -> Iterator[Delta]:
        for event in decode(response.iter_bytes()):
            if event.is_done:
                return
            yield parse_chunk(event)

    def _url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _transport_errors(self) -> AbstractContextManager[None]:
        return transport_errors(self.base_url)


@contextmanager
def transport_errors(url: str) -> Iterator[None]:
    """Turns httpx's transport exceptions into :class:`ClientError`."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
        raise Unreachable(url, str(exc) or type(exc).__name__) from None
    except httpx.InvalidURL as exc:
        raise ClientError(f"invalid URL {url}: {exc}") from None
    except httpx.ReadTimeout:
        raise ClientError(f"{url} stopped answering (read timeout)") from None
    except httpx.TransportError as exc:
        raise ClientError(f"the connection to {url} failed: {exc or type(exc).__name__}") from None
