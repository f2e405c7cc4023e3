"""One structured (JSON) access-log line, and the metrics, per request when it ends.

A pure ASGI middleware: it does not buffer bodies, so streams pass straight through.
It puts a fresh :class:`CallRecord` and the start time in the request's state for the
routes to fill in.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enclave.gateway.metrics import Metrics
from enclave.router import CallRecord

log = logging.getLogger("enclave.access")

REQUEST_ID = "x-request-id"


def new_request_id() -> str:
    return "req-" + secrets.token_hex(8)


class AccessLog:
    def __init__(self, app: ASGIApp, *, enabled: bool = True, metrics: Metrics) -> None:
        self.app = app
        self.enabled = enabled
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_id(scope) or new_request_id()
        record = CallRecord()
        scope.setdefault("state", {}).update(request_id=request_id, call=record, started=started)
        self.metrics.started(scope["path"])
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
            seconds = time.perf_counter() - started
            self.metrics.observe(scope["path"], record, seen["status"], seconds)
            if self.enabled:
                log.info(_line(scope, seen, request_id, seconds, record))


def _incoming_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == REQUEST_ID.encode():
            text: str = value.decode("latin-1")[:64]
            return text if text.isprintable() else None
    return None


def _header(request_id: str) -> tuple[bytes, bytes]:
    return (REQUEST_ID.encode(), request_id.encode("latin-1"))


def _line(
    scope: Scope, seen: dict[str, Any], request_id: str, seconds: float, record: CallRecord
) -> str:
    client = scope.get("client")
    line = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "request_id": request_id,
        "client": client[0] if client else None,
        "method": scope["method"],
        "path": scope["path"],
        "status": seen["status"],
        "ms": round(seconds * 1000, 2),
        "bytes": seen["bytes"],
        "model": record.model,
        "upstream": record.member,
        "pool": record.pool,
        "attempts": record.attempts if record.attempts > 1 else None,
        "queue_ms": round(record.queue_s * 1000, 2) if record.queue_s else None,
        "ttft_ms": round(record.ttft_s * 1000, 2) if record.ttft_s and record.stream else None,
        "tokens_in": record.prompt_tokens,
        "tokens_out": record.completion_tokens,
        "outcome": record.outcome,
    }
    return json.dumps({k: v for k, v in line.items() if v is not None}, ensure_ascii=False)
