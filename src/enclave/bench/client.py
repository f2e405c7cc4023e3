"""The measuring HTTP/1.1 client of ``enclave bench`` and ``enclave verify``.

An asyncio protocol with the httptools parser (as :mod:`enclave.upstream.wire`) and
:class:`enclave.sse.Decoder` (the one SSE decoder). It is its own small client rather
than httpx or the gateway's ``WirePool`` for two reasons:

- **timestamps on arrival**: each chunk is timed in ``data_received``, when its bytes come
  off the socket, not when a coroutine is next scheduled to read them. At 100 concurrent
  streams that scheduling delay *is* the measurement error of TTFT and ITL. Parsing waits
  for a callback soon after, so when a batching server (vLLM) sends a chunk on every
  stream at once, the last socket read is not timed late by the parsing of the others;
- **cost**: a streamed request wakes its coroutine once (at its end), not once per chunk,
  so one core drives well over 500 streamed requests per second.

Connections are kept alive and reused one request at a time; one that the server had
closed while idle is replaced and the request sent again (nothing had been answered).
Errors are classified by type (:data:`ERROR_TYPES`) into the :class:`Sample`, never raised.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from enclave.bench.metrics import Sample
from enclave.errors import InvalidRequest
from enclave.sse import DONE_DATA, Decoder, Event

CHAT_PATH = "/v1/chat/completions"
DETAIL_CHARS = 300
ERROR_TYPES = {
    "connect_error": "the connection could not be opened",
    "timeout": "no complete answer within the request timeout",
    "http_<status>": "the server answered with an error status, e.g. http_503",
    "stream_error": "an error event inside a 200 stream",
    "disconnected": "the connection closed before the response ended",
    "incomplete": "the stream ended without data: [DONE]",
    "protocol_error": "the answer was not valid HTTP, SSE or JSON",
}

ChunkHook = Callable[[Sample, dict[str, Any], float], None]


@dataclass(frozen=True)
class Endpoint:
    """Where to send: the server's root (a trailing ``/v1`` is accepted and dropped)."""

    host: str
    port: int
    prefix: str
    tls: ssl.SSLContext | None
    api_key: str | None

    @classmethod
    def parse(cls, url: str, *, api_key: str | None = None, insecure: bool = False) -> Endpoint:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise InvalidRequest(f"not a URL: {url!r} ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest(f"not an http:// or https:// URL: {url!r}")
        tls = None
        if parts.scheme == "https":
            tls = ssl.create_default_context()
            if insecure:
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
        prefix = parts.path.rstrip("/").removesuffix("/v1").rstrip("/")
        default = 443 if tls else 80
        return cls(parts.hostname, port or default, prefix, tls, api_key)

    @property
    def root(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{self.prefix}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def post(self, path: str, body: bytes) -> bytes:
        """The bytes of a JSON POST to ``path`` (relative to the root)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = f"Authorization: Bearer {self.api_key}\r\n" if self.api_key else ""
        head = (
            f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
            f"User-Agent: enclave-bench\r\nAccept: */*\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode("latin-1") + body


def _error_detail(body: bytes) -> str:
    """The message of an OpenAI error envelope (or vLLM's flat one), else the raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:DETAIL_CHARS].decode("utf-8", "replace")
    error = data.get("error", data) if isinstance(data, dict) else data
    message = error.get("message") if isinstance(error, dict) else None
    return str(message if message is not None else error)[:DETAIL_CHARS]


class _Conn(asyncio.Protocol):
    """One kept-alive connection; parses and times one response at a time in callbacks."""

    def __init__(self, on_chunk: ChunkHook | None) -> None:
        self.on_chunk = on_chunk
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.sample = Sample()
        self.waiter: asyncio.Future[None] | None = None
        self.now = 0.0
        self.last = 0.0
        self.received = False
        self.sse = False
        self.done = False
        self.content_type = b""
        self.body: list[bytes] = []
        self.decoder = Decoder()
        self.loop = asyncio.get_running_loop()
        self.inbox: list[tuple[float, bytes]] = []

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.inbox:
            self.loop.call_soon(self.drain)
        self.inbox.append((time.perf_counter(), data))
        self.received = True

    def drain(self) -> None:
        """Parse what arrived, each piece with its own arrival time."""
        inbox, self.inbox = self.inbox, []
        for now, data in inbox:
            self.now = now
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError as exc:
                self.fail("protocol_error", f"not valid HTTP: {exc}")
                self.close()
                self.finish()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.drain()
        self.closed = True
        self.reusable = False
        if self.waiter is not None:
            self.now = time.perf_counter()
            self.fail("disconnected", "the connection closed before the response ended")
            self.finish()

    # --- httptools callbacks ---------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value.lower()

    def on_headers_complete(self) -> None:
        self.sample.status = status = self.parser.get_status_code()
        self.sse = status == 200 and b"event-stream" in self.content_type

    def on_body(self, body: bytes) -> None:
        if self.sse:
            for event in self.decoder.feed(body):
                self.event(event)
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        if self.sse:
            for event in self.decoder.flush():
                self.event(event)
        self.complete()
        self.finish()

    # --- one exchange ----------------------------------------------------------------

    def start(self, sample: Sample, payload: bytes) -> asyncio.Future[None]:
        self.sample = sample
        self.received = self.sse = self.done = self.reusable = False
        self.content_type = b""
        self.body = []
        self.decoder = Decoder()
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(payload)
        return self.waiter

    def event(self, event: Event) -> None:
        data = event.data
        if data == DONE_DATA:
            self.done = True
            return
        if self.done:
            return
        try:
            chunk = json.loads(data)
            self.chunk(chunk)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError):
            self.fail("protocol_error", f"a stream chunk is not an OpenAI chunk: {data[:80]!r}")

    def chunk(self, chunk: dict[str, Any]) -> None:
        sample, now = self.sample, self.now
        if self.on_chunk is not None:
            self.on_chunk(sample, chunk, now)
        choices = chunk.get("choices")
        if choices:
            delta = choices[0].get("delta") or {}
            if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"):
                if sample.ttft is None:
                    sample.ttft = now - sample.sent
                else:
                    sample.itl.append(now - self.last)
                self.last = now
                sample.chunks += 1
        usage = chunk.get("usage")
        if usage:
            self.usage(usage)
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            self.fail("stream_error", str(message)[:DETAIL_CHARS])

    def usage(self, usage: dict[str, Any]) -> None:
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        self.sample.prompt_tokens = prompt if isinstance(prompt, int) else None
        self.sample.output_tokens = completion if isinstance(completion, int) else None

    def complete(self) -> None:
        """The response ended: classify it."""
        sample = self.sample
        body = b"".join(self.body)
        if sample.status != 200:
            self.fail(f"http_{sample.status}", _error_detail(body))
        elif self.sse:
            if not self.done:
                self.fail("incomplete", "the stream ended without data: [DONE]")
        else:
            self.completion(body)

    def completion(self, body: bytes) -> None:
        """A whole (not streamed) chat completion."""
        sample = self.sample
        try:
            data = json.loads(body)
            content = data["choices"][0]["message"].get("content") or ""
            usage = data.get("usage")
        except (ValueError, TypeError, AttributeError, IndexError, KeyError):
            self.fail("protocol_error", f"not a chat completion: {body[:80]!r}")
            return
        if usage:
            self.usage(usage)
        sample.chunks = 1 if content else 0
        sample.ttft = self.now - sample.sent

    def fail(self, kind: str, detail: str) -> None:
        if self.sample.error is None:
            self.sample.error, self.sample.detail = kind, detail

    def finish(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            self.sample.e2e = self.now - self.sample.sent
            waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class BenchClient:
    """Chat completions against one endpoint, each measured into a :class:`Sample`.

    ``on_chunk(sample, chunk, arrival)`` is called with every decoded stream chunk, for
    tools that want more than the standard metrics (``bench/bench_accuracy.py``).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 10.0,
        on_chunk: ChunkHook | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.on_chunk = on_chunk
        self._idle: list[_Conn] = []

    async def chat(self, body: bytes) -> Sample:
        """POST ``body`` (JSON bytes) to the chat route; never raises for a bad answer."""
        payload = self.endpoint.post(CHAT_PATH, body)
        sample = Sample(sent=time.perf_counter())
        conn = self._reuse()
        if conn is not None:
            await self._exchange(conn, sample, payload)
            if sample.error != "disconnected" or conn.received:
                return sample
            sample = Sample(sent=sample.sent)  # closed while idle: nothing was answered
        try:
            conn = await self._connect()
        except OSError as exc:
            sample.error, sample.detail = "connect_error", str(exc.strerror or exc)
        except TimeoutError:
            sample.error, sample.detail = "connect_error", "connecting timed out"
        else:
            await self._exchange(conn, sample, payload)
            return sample
        sample.e2e = time.perf_counter() - sample.sent
        return sample

    async def _exchange(self, conn: _Conn, sample: Sample, payload: bytes) -> None:
        waiter = conn.start(sample, payload)
        try:
            async with asyncio.timeout(self.timeout_s):
                await waiter
        except TimeoutError:
            conn.waiter = None
            conn.close()
            sample.error, sample.detail = "timeout", f"no complete answer in {self.timeout_s:g} s"
            sample.e2e = time.perf_counter() - sample.sent
        except BaseException:
            conn.waiter = None
            conn.close()
            raise
        if conn.reusable and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()

    def _reuse(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        endpoint = self.endpoint
        async with asyncio.timeout(self.connect_timeout_s):
            _, conn = await loop.create_connection(
                lambda: _Conn(self.on_chunk), endpoint.host, endpoint.port, ssl=endpoint.tls,
                server_hostname=endpoint.host if endpoint.tls else None,
            )  # fmt: skip
        return conn

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()
