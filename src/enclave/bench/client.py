"""The measuring HTTP/1.1 client of ``enclave bench`` and ``enclave verify``.

A :class:`enclave.http1.Connection` (the one connection layer: socket, httptools parser,
kept-alive pool) with :class:`enclave.sse.Decoder` (the one SSE decoder). It parses in
the protocol's callbacks rather than reading through the upstream's
:class:`enclave.http1.Client`, for two reasons:

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
from typing import Any

import httptools

from enclave.bench.metrics import Sample
from enclave.errors import InvalidRequest
from enclave.http1 import Connection, ConnectionPool, Origin, message
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

    origin: Origin
    api_key: str | None

    @classmethod
    def parse(cls, url: str, *, api_key: str | None = None, insecure: bool = False) -> Endpoint:
        try:
            origin = Origin.parse(url, insecure=insecure)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        prefix = origin.prefix.removesuffix("/v1").rstrip("/")
        return cls(Origin(origin.host, origin.port, origin.tls, prefix, origin.authority), api_key)

    @property
    def host(self) -> str:
        return self.origin.host

    @property
    def port(self) -> int:
        return self.origin.port

    @property
    def tls(self) -> ssl.SSLContext | None:
        return self.origin.tls

    @property
    def root(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{self.origin.prefix}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def post(self, path: str, body: bytes) -> bytes:
        """The bytes of a JSON POST to ``path`` (relative to the root)."""
        head = self.origin.head(user_agent="enclave-bench", headers=self.headers())
        return message("POST", self.origin.prefix + path, head, body)


def _error_detail(body: bytes) -> str:
    """The message of an OpenAI error envelope (or vLLM's flat one), else the raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:DETAIL_CHARS].decode("utf-8", "replace")
    error = data.get("error", data) if isinstance(data, dict) else data
    message = error.get("message") if isinstance(error, dict) else None
    return str(message if message is not None else error)[:DETAIL_CHARS]


class _Conn(Connection):
    """One kept-alive connection; parses and times one response at a time in callbacks."""

    def __init__(self, on_chunk: ChunkHook | None) -> None:
        super().__init__()
        self.on_chunk = on_chunk
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

    @property
    def answered(self) -> bool:
        return self.received

    # --- asyncio.Protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self.inbox:
            self.loop.call_soon(self.drain)
        self.inbox.append((time.perf_counter(), data))
        self.received = True

    def drain(self) -> None:
        """Parse what arrived, each piece with its own arrival time."""
        inbox, self.inbox = self.inbox, []
        for now, data in inbox:
            if self.closed:  # not valid HTTP: the rest is not read
                return
            self.now = now
            self.parse(data)

    def invalid(self, exc: httptools.HttpParserError) -> None:
        self.fail("protocol_error", f"not valid HTTP: {exc}")
        self.finish()

    def connection_lost(self, exc: Exception | None) -> None:
        self.drain()
        self.closed = True
        self.keep_alive = False
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
        self.message_done()
        if self.sse:
            for event in self.decoder.flush():
                self.event(event)
        self.complete()
        self.finish()

    # --- one exchange ----------------------------------------------------------------

    def start(self, sample: Sample, payload: bytes) -> asyncio.Future[None]:
        self.sample = sample
        self.received = self.sse = self.done = self.keep_alive = False
        self.content_type = b""
        self.body = []
        self.decoder = Decoder()
        self.waiter = self.loop.create_future()
        self.send(payload)
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
        self._pool = ConnectionPool(
            endpoint.origin, lambda: _Conn(on_chunk), connect_timeout=connect_timeout_s
        )

    async def chat(self, body: bytes) -> Sample:
        """POST ``body`` (JSON bytes) to the chat route; never raises for a bad answer."""
        payload = self.endpoint.post(CHAT_PATH, body)
        sample = Sample(sent=time.perf_counter())
        conn = self._pool.idle()
        if conn is not None:
            await self._exchange(conn, sample, payload)
            if sample.error != "disconnected" or conn.answered:
                return sample
            sample = Sample(sent=sample.sent)  # closed while idle: nothing was answered
        try:
            conn = await self._pool.connect()
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
        self._pool.release(conn)

    async def aclose(self) -> None:
        self._pool.close()
