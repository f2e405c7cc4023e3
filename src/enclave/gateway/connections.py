"""Slow and idle clients: uvicorn's HTTP/1.1 protocol with the bounds it lacks.

uvicorn closes a kept-alive connection that stays idle (``server.idle_timeout_s``) but
waits forever for a request's headers: a client that opens a connection and sends
nothing, or trickles its header bytes, holds a connection and a descriptor for as long as
it likes. This protocol (passed to uvicorn as ``http=``) adds

- ``server.header_timeout_s``: from the connection's opening, or from the first byte after
  the previous response, to the end of the request's headers; then a 408 (the OpenAI
  envelope) and the connection is closed. It also bounds bytes that trickle in after a
  response whose request body the app did not read.
- ``server.max_connections``: a request on a connection beyond the cap is answered 503
  naming the setting, with ``Connection: close``, without reaching the app.

The body has its own deadline in the app (:mod:`enclave.gateway.deadline`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from enclave.config import ServerSettings
from enclave.errors import EnclaveError, RequestTimeout, ServiceUnavailable
from enclave.gateway.deadline import BODY_COMPLETE

log = logging.getLogger("enclave.gateway")

WARN_EVERY_S = 10.0  # one warning per this many seconds, with a count: no log flood


def _envelope(exc: EnclaveError) -> bytes:
    error = {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
    return json.dumps({"error": error}).encode()


class _Warnings:
    """Rate-limited warnings: a flood of slow clients must not become a flood of lines."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def warn(self, what: str, text: str) -> None:
        self.count[what] = self.count.get(what, 0) + 1
        now = time.monotonic()
        if now - self.last.get(what, 0.0) >= WARN_EVERY_S:
            log.warning("%s (%d since the last such line)", text, self.count.pop(what))
            self.last[what] = now


def protocol_class(server: ServerSettings) -> type[HttpToolsProtocol]:
    """The protocol uvicorn builds per connection, bound to ``server``'s bounds."""
    header_timeout = server.header_timeout_s
    cap = server.max_connections
    warnings = _Warnings()
    too_slow = RequestTimeout(
        f"the request headers did not arrive within {header_timeout:g} s (server.header_timeout_s)"
    )
    full = ServiceUnavailable(
        f"the gateway has its {cap} connections open (server.max_connections); retry later",
        retry_after=1,
    )
    full.code = "too_many_connections"
    refusal = _envelope(full)

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(refusal)).encode()),
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": refusal})

    class BoundedProtocol(HttpToolsProtocol):
        def __init__(
            self,
            config: Config,
            server_state: ServerState,
            app_state: dict[str, Any],
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            super().__init__(config, server_state, app_state, _loop)
            self.timeout_keep_alive = server.idle_timeout_s  # type: ignore[assignment]
            self._header_timer: asyncio.TimerHandle | None = None
            self._headers_pending = False  # a request has begun; its headers have not ended
            self._message_complete = True  # the current request's body has ended

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > cap:
                self.app = refuse  # answered at its first request, then closed
                warnings.warn("full", f"refused requests: {full.message}")
            self._start_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # A timer only when these bytes left something unfinished: headers of a request
            # that has begun, or the unread body of one already answered. A request that
            # arrives whole (the usual case) arms none.
            if self._header_timer is None and (
                self._headers_pending
                or (
                    not self._message_complete
                    and self.cycle is not None
                    and self.cycle.response_complete
                )
            ):
                self._start_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._headers_pending, self._message_complete = True, False

        def on_headers_complete(self) -> None:
            self._headers_pending = False
            self._stop_header_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._message_complete = True
            self.scope[BODY_COMPLETE] = True  # type: ignore[literal-required]

        def _start_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:
                body = _envelope(too_slow)
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
                )
            self.transport.close()
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            warnings.warn("slow", f"closed the connection of {client}: {too_slow.message}")

    return BoundedProtocol
