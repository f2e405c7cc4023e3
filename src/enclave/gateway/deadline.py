"""The deadline of a request's body: ``server.body_timeout_s`` from the request's start.

A pure ASGI middleware around ``receive``, so every reader of a body is bounded (the
routes' ``body.read_body``, uploads, anything Starlette parses): a client that trickles
its body, or stops sending it, gets a 408 naming the setting when the time is up. Once
the body is complete, ``receive`` passes through untouched (it then only says that the
client left, which streams wait for). A body the server had whole before the app ran
(``BODY_COMPLETE`` in the scope, set by ``connections.py``'s protocol: most requests) is
not wrapped at all: there is nothing left to wait for, and no timer is armed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enclave.errors import RequestTimeout

BODY_COMPLETE = "enclave.body_complete"  # scope key: the whole body has been received


class BodyDeadline:
    def __init__(self, app: ASGIApp, *, seconds: Callable[[], float]) -> None:
        self.app = app
        self.seconds = seconds  # read per request: a config reload applies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or BODY_COMPLETE in scope:
            await self.app(scope, receive, send)
            return
        await self.app(scope, _bounded(receive, self.seconds()), send)


def _bounded(receive: Receive, seconds: float) -> Receive:
    deadline = asyncio.get_running_loop().time() + seconds
    complete = False

    async def bounded() -> Message:
        nonlocal complete
        if complete:
            return await receive()
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {seconds:g} s (server.body_timeout_s)"
            ) from None
        complete = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return bounded
