"""One structured (JSON) access-log line per request, written when the response ends.

A pure ASGI middleware: it does not buffer bodies, so streams pass straight through.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("enclave.access")

REQUEST_ID = "x-request-id"


def new_request_id() -> str:
    return "req-" + secrets.token_hex(8)


class AccessLog:
    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_id(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        seen: dict[str, Any] = {"status": 500, "bytes": 0}

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), _header(request_id)]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            if self.enabled:
                log.info(_line(scope, seen, request_id, started))


def _incoming_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == REQUEST_ID.encode():
            text: str = value.decode("latin-1")[:64]
            return text if text.isprintable() else None
    return None


def _header(request_id: str) -> tuple[bytes, bytes]:
    return (REQUEST_ID.encode(), request_id.encode("latin-1"))


def _line(scope: Scope, seen: dict[str, Any], request_id: str, started: float) -> str:
    state = scope.get("state", {})
    client = scope.get("client")
    record = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "request_id": request_id,
        "client": client[0] if client else None,
        "method": scope["method"],
        "path": scope["path"],
        "status": seen["status"],
        "ms": round((time.perf_counter() - started) * 1000, 2),
        "bytes": seen["bytes"],
        "model": state.get("model"),
        "upstream": state.get("upstream"),
        "outcome": state.get("outcome"),
    }
    return json.dumps({k: v for k, v in record.items() if v is not None}, ensure_ascii=False)
