"""The edge: who is calling, from where, how often, and the audit record of each call.

A pure ASGI middleware inside the access log. For every HTTP request it

1. works out the client's address (``X-Forwarded-For`` only from trusted proxies) and
   refuses addresses outside the allowlist (403);
2. authenticates ``/v1``, ``/api`` and ``/metrics`` calls by API key or web session
   (401, the same message whatever was wrong) and checks the key's own allowlist (403);
   what a caller may then do is each route's rule, declared from ``access.py``;
3. takes a rate-limit permit for the key and one for its user, whose limits every key and
   web session of the user share (429 with ``Retry-After`` and ``x-ratelimit-*``);
4. writes the call's audit record, and in strict mode holds the response's last message
   until that record is committed: a crash cannot lose the record of a completed call.
   A stream's last message, for its client, is the one ending in ``data: [DONE]``: an
   SDK stops reading there, so that event waits for the record too.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enclave import sse
from enclave.errors import EnclaveError, Forbidden, InvalidRequest
from enclave.gateway.errors import error_response

if TYPE_CHECKING:
    from enclave.audit.chain import AuditEntry
    from enclave.auth.ratelimit import Permit
    from enclave.gateway.gatekeeper import Principal
    from enclave.gateway.services import Services
    from enclave.router import CallRecord

log = logging.getLogger("enclave.edge")

OPEN_PATHS = frozenset({"/health", "/api/auth/login", "/api/auth/refresh"})
AUDITED_PREFIXES = ("/v1/", "/api/")
INTERNAL = "internal error; see the gateway log"


def protected(path: str) -> bool:
    return path not in OPEN_PATHS and (path.startswith(("/v1/", "/api/")) or path == "/metrics")


@dataclass
class _Call:
    scope: Scope
    started: float
    status: int = 500
    principal: Principal | None = None
    permits: list[Permit] = field(default_factory=list)
    answered: bool = False  # the response has started
    audited: bool = False


class Edge:
    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        call = _Call(scope, time.perf_counter())
        state = scope.setdefault("state", {})
        state["client_ip"] = self.services.gatekeeper.client_ip(scope)
        sender = self._sender(call, send)
        try:
            try:
                await self._admit(call)
            except EnclaveError as exc:
                await error_response(exc)(scope, receive, sender)
                return
            await self.app(scope, receive, sender)
        except Exception:
            # Anything the app's handlers did not answer: answered (and audited) here,
            # not by Starlette's outermost handler, which no audit record would see.
            if call.answered:
                raise
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            await error_response(EnclaveError(INTERNAL))(scope, receive, sender)
        finally:
            await self._finish(call)

    async def _finish(self, call: _Call) -> None:
        """Give the permits back; audit a call whose response never completed."""
        if call.permits:
            record: CallRecord = call.scope["state"]["call"]
            used = (record.prompt_tokens or 0) + (record.completion_tokens or 0)
            for permit in call.permits:
                await permit.release(used)
        if not call.audited:
            with contextlib.suppress(Exception):  # _audit logged it; the response is gone
                await self._audit(call)

    async def _admit(self, call: _Call) -> None:
        scope, gate = call.scope, self.services.gatekeeper
        state, path = scope["state"], scope["path"]
        ip = state["client_ip"]
        # Two Authorization headers are refused wherever one is read (authentication on):
        # which would count? With authentication off no route reads it.
        authorization = _only_header(scope, b"authorization") if gate.enabled else None
        if not gate.allowlist.allows(ip):
            raise Forbidden(f"the address {ip} may not use this gateway")
        if not (gate.enabled and protected(path)):
            return
        principal = await gate.principal(authorization)
        state["principal"] = call.principal = principal
        if principal.allow is not None and not principal.allow.allows(ip):
            raise Forbidden(f"this API key may not be used from {ip}")
        if path.startswith("/v1/") and (principal.limits or principal.user_limits):
            call.permits = await self._permits(principal)

    async def _permits(self, principal: Principal) -> list[Permit]:
        """The key's permit and the user's (shared by all the user's keys and sessions):
        both limits apply, so the stricter refuses first."""
        limiter, permits = self.services.limiter, []
        try:
            if principal.limits is not None:
                key_id = principal.key_prefix or principal.user or ""
                permits.append(await limiter.acquire(key_id, principal.limits))
            if principal.user_limits is not None:
                key_id = f"user:{principal.user}"
                permits.append(await limiter.acquire(key_id, principal.user_limits))
        except BaseException:
            for permit in permits:
                await permit.release(0)
            raise
        return permits

    def _sender(self, call: _Call, send: Send) -> Send:
        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                call.status, call.answered = message["status"], True
                if call.permits:  # the key's when it has limits, else the user's
                    headers = call.permits[0].headers().items()
                    extra = [(k.encode(), v.encode()) for k, v in headers]
                    message["headers"] = [*message.get("headers", []), *extra]
            elif message["type"] == "http.response.body" and not call.audited and _last(message):
                await self._audit(call)
            await send(message)

        return sender

    async def _audit(self, call: _Call) -> None:
        call.audited = True
        writer = self.services.audit
        path = call.scope["path"]
        if writer is None or not path.startswith(AUDITED_PREFIXES):
            return
        entry = self._entry(call)
        try:
            await writer.write(entry)
        except Exception:
            # Strict mode: the record did not commit, so the response must not complete.
            log.exception("audit record of %s could not be written", entry.request_id)
            raise

    def _entry(self, call: _Call) -> AuditEntry:
        from enclave.audit.chain import AuditEntry

        state: dict[str, Any] = call.scope["state"]
        record: CallRecord = state["call"]
        principal = call.principal
        return AuditEntry(
            ts=datetime.now(UTC).isoformat(timespec="microseconds"),
            kind="api",
            action=f"{call.scope['method']} {call.scope['path']}",
            request_id=state.get("request_id"),
            user=principal.user if principal else None,
            key_prefix=principal.key_prefix if principal else None,
            client_ip=state.get("client_ip"),
            model=record.model,
            member=record.member,
            status=call.status,
            tokens_in=record.prompt_tokens,
            tokens_out=record.completion_tokens,
            latency_ms=round((time.perf_counter() - call.started) * 1000),
            images=list(record.images),
            content=record.content,
            detail=_detail(record),
        )


def _detail(record: CallRecord) -> dict[str, Any]:
    """What else the record keeps of a call: the pool that answered (``pool``, a public
    model name: a fallback's when the asked one could not serve) and the time to the
    first streamed token (``ttft_ms``, as the access log and metrics count it)."""
    detail: dict[str, Any] = {"pool": record.pool} if record.pool else {}
    if record.ttft_s is not None and record.stream:
        detail["ttft_ms"] = round(record.ttft_s * 1000)
    return detail


def _only_header(scope: Scope, name: bytes) -> str | None:
    """The one value of header ``name``; sent twice, a 400 (which one would count?)."""
    found = [value for key, value in scope.get("headers", []) if key == name]
    if len(found) > 1:
        raise InvalidRequest(f"the {name.decode().title()} header is sent {len(found)} times")
    return found[0].decode("latin-1") if found else None


def _last(message: Message) -> bool:
    """The response's last message, or a stream's ``[DONE]`` event (the end for a client)."""
    return not message.get("more_body") or bytes(message.get("body", b"")).endswith(sse.DONE)
