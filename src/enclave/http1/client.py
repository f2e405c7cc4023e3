"""JSON requests over kept-alive connections, each response read whole or chunk by chunk.

What an OpenAI upstream needs (:mod:`enclave.upstream.openai`): TLS when the URL says
https, responses with Content-Length or chunked bodies, idle connections dropped after
``keepalive_s``. Timeouts other than connecting are the caller's (asyncio), see
:mod:`enclave.gateway.calls`.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httptools

from enclave.errors import ConnectionClosed, UpstreamError, UpstreamTimeout
from enclave.http1.connection import Connection, ConnectionPool
from enclave.http1.origin import Origin, message

MAX_BUFFER = 1 << 20  # stop reading from the socket while this much is unread


class _Streaming(Connection):
    """Keeps the body's chunks until the reader takes them; wakes it at every arrival."""

    def __init__(self) -> None:
        super().__init__()
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    @property
    def answered(self) -> bool:
        return self.head_done

    def invalid(self, exc: httptools.HttpParserError) -> None:
        self._fail(UpstreamError(f"the upstream's response is not valid HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            answered = self.head_done
            self._fail(ConnectionClosed("the upstream closed the connection", answered=answered))
        self._wake()

    def pause_writing(self) -> None:  # the request is small; nothing to hold back
        pass

    # --- httptools callbacks ---------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > MAX_BUFFER and self.transport:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.message_done()
        self.complete = True
        self._wake()

    # --- for the reader --------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._reset()
        super().send(data)

    async def wait(self) -> None:
        """Until something new arrived (headers, a chunk, the end or an error)."""
        if self.error:
            raise self.error
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None
        if self.error and not self.chunks:
            raise self.error

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.transport and not self.closed:
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.complete and super().reusable()

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class Response:
    """A response whose head has arrived; read the body whole or as it comes."""

    def __init__(self, pool: ConnectionPool[_Streaming], conn: _Streaming) -> None:
        self._pool = pool
        self._conn = conn
        self.status_code = conn.status
        self.headers = conn.headers
        self._done = False

    async def read(self) -> bytes:
        parts = [piece async for piece in self.iter_chunks()]
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
                continue
            if conn.complete:
                await self.aclose()
                return
            await conn.wait()

    def json(self, body: bytes) -> Any:
        return json.loads(body)

    async def aclose(self) -> None:
        """Back to the pool if the response was read to its end, else drop the connection."""
        if self._done:
            return
        self._done = True
        self._pool.release(self._conn)


class Client:
    """Kept-alive connections to one server, plus its base path and fixed headers."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        connect_timeout: float,
        keepalive_s: float,
    ) -> None:
        try:
            origin = Origin.parse(base_url)
        except ValueError:
            raise UpstreamError(
                f"upstream URL {base_url!r} must be http:// or https://host..."
            ) from None
        self.base_url = base_url.rstrip("/")
        self.prefix = origin.prefix
        self.connect_timeout = connect_timeout
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._head = origin.head(user_agent="enclave", headers=auth)
        self._pool = ConnectionPool(
            origin, _Streaming, connect_timeout=connect_timeout, keepalive_s=keepalive_s
        )

    @property
    def root(self) -> str:
        """The server's root URL path prefix removed (``/v1``)."""
        return self.prefix.removesuffix("/v1")

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Response:
        """Send and wait for the response head. ``path`` is relative to the base URL,
        or absolute when it starts with ``/``."""
        target = path if path.startswith("/") else f"{self.prefix}/{path}"
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        request = message(method, target, self._head, data)
        conn = self._pool.idle()
        if conn is not None:
            try:
                return await self._exchange(conn, request)
            except ConnectionClosed as exc:
                if exc.answered:
                    raise
                # Closed by the server as we reused it: nothing was answered, so send
                # again on a fresh connection.
        return await self._exchange(await self._connect(), request)

    async def _exchange(self, conn: _Streaming, request: bytes) -> Response:
        conn.send(request)
        try:
            while not conn.head_done:
                await conn.wait()
        except BaseException:
            conn.close()
            raise
        return Response(self._pool, conn)

    async def _connect(self) -> _Streaming:
        try:
            return await self._pool.connect()
        except TimeoutError:
            raise UpstreamTimeout(
                f"connecting to {self.base_url} took longer than {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise UpstreamError(
                f"cannot connect to {self.base_url}: {exc.strerror or exc}"
            ) from exc

    async def aclose(self) -> None:
        self._pool.close()
