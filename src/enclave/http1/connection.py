"""One kept-alive HTTP/1.1 connection (an asyncio protocol with the httptools parser),
and a pool of them to one origin.

A subclass takes the response's parts in httptools' callbacks (``on_header``,
``on_headers_complete``, ``on_body``, ``on_message_complete``), so nothing is copied or
awaited per chunk here, and says with :attr:`Connection.answered` whether a response
had begun: a kept-alive connection that the server closed while it sat idle fails
before anything is answered, and the request is then sent again on a fresh one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar, cast

import httptools

from enclave.http1.origin import Origin


class Connection(asyncio.Protocol):
    """The socket and the response parser; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.keep_alive = False  # the last response allowed another request
        self.reused = False  # taken from a pool's idle connections for this request
        self.idle_since = time.monotonic()

    @property
    def answered(self) -> bool:
        """Whether a response to the current request had begun."""
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def parse(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.invalid(exc)
            self.close()

    data_received = parse

    def invalid(self, exc: httptools.HttpParserError) -> None:
        """The bytes received are not an HTTP/1.1 response (the connection closes next)."""

    def message_done(self) -> None:
        """Call from ``on_message_complete``: asked now, for once the message is over,
        llhttp has reset and always says no."""
        self.keep_alive = self.parser.should_keep_alive()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def reusable(self) -> bool:
        return self.keep_alive and not self.closed

    def close(self) -> None:
        self.closed = True
        self.keep_alive = False
        if self.transport is not None:
            self.transport.close()


C = TypeVar("C", bound=Connection)


class ConnectionPool(Generic[C]):
    """Connections to one origin: idle ones reused (last in first out, or ``fifo`` so
    that none sits idle long), new ones made by ``factory``; idle ones older than
    ``keepalive_s`` are dropped."""

    def __init__(
        self,
        origin: Origin,
        factory: Callable[[], C],
        *,
        connect_timeout: float | None = None,
        keepalive_s: float = float("inf"),
        fifo: bool = False,
    ) -> None:
        self.origin = origin
        self.factory = factory
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self.fifo = fifo
        self.opened = 0  # connections made in all
        self._idle: deque[C] = deque()
        self._closed = False

    def idle(self) -> C | None:
        """A kept-alive connection to send on, if one is free."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.popleft() if self.fifo else self._idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive_s:
                conn.reused = True
                return conn
            conn.close()
        return None

    async def connect(self) -> C:
        """A new connection; raises ``OSError`` or ``TimeoutError``."""
        self.opened += 1
        async with asyncio.timeout(self.connect_timeout):
            conn = await self.origin.connect(self.factory)
        conn.reused = False
        return conn

    async def take(self) -> C:
        return self.idle() or await self.connect()

    def release(self, conn: C) -> None:
        """Back to the idle ones if it may carry another request, else closed."""
        if conn.reusable() and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
