"""``/api/tasks/ws``: runs' events over a WebSocket, and starting and cancelling runs.

The edge passes WebSocket scopes through untouched, so this route does its own: the
address allowlist (``auth.allow``), then, with authentication on, the first of

1. ``Authorization: Bearer KEY-OR-SESSION`` on the handshake (scripts);
2. the subprotocol ``bearer.TOKEN`` offered beside ``enclave.tasks.v1`` (the server
   answers ``enclave.tasks.v1``);
3. ``?ticket=`` from ``POST /api/tasks/ws/ticket``: one use, ``tasks.ticket_ttl_s``
   (browsers; see tasks_tickets.py).

A token in the URL (``?token=``, ``?access_token=``, ``?api_key=``...) is refused, as is
anything but a ticket in ``?ticket=``. A refused handshake is an HTTP 401/403 with the
usual error body. Client messages (JSON text)::

    {"type": "subscribe", "run": ID, "after": N}   events of ID after N (0: all), then live
    {"type": "unsubscribe", "run": ID}
    {"type": "start", ...a POST /api/runs body}    → {"type": "started", "run": Run}, subscribed
    {"type": "cancel", "run": ID}                  → {"type": "cancelling", "run": Run}

The server sends each event as ``GET /api/runs/{id}/events`` shows it (with ``run`` and
``id``: a client that reconnects subscribes with ``after`` = the last id it saw, and gets
every later event once), and ``{"type": "error", "message", "code", "param", "run"?}`` for
a message it refused; the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from enclave.errors import (
    AuthenticationFailed,
    EnclaveError,
    Forbidden,
    InvalidRequest,
    ServiceUnavailable,
    TooManyRequests,
)
from enclave.gateway.access import task_caller_of
from enclave.gateway.errors import error_response
from enclave.gateway.schemas.tasks import RunPublic
from enclave.identity import Actor

if TYPE_CHECKING:
    from enclave.gateway.gatekeeper import Principal
    from enclave.gateway.services import Services
    from enclave.tasks.service import Caller, TaskService

log = logging.getLogger("enclave.tasks")

SUBPROTOCOL = "enclave.tasks.v1"
BEARER = "bearer."
URL_TOKENS = ("token", "access_token", "api_key", "apikey", "key", "authorization", "bearer")
NO_CREDENTIALS = (
    "authentication required: send Authorization: Bearer, offer the subprotocol "
    "bearer.<token> beside enclave.tasks.v1, or add ?ticket= from POST /api/tasks/ws/ticket"
)
MAX_MESSAGE_BYTES = 1 << 20
RECHECK_S = 30.0  # how often an open socket's key or session is checked again
REVOKED = "the credentials of this socket were revoked, expired or disabled"


def router(services: Services) -> APIRouter:
    routes = APIRouter()

    @routes.websocket("/api/tasks/ws")
    async def tasks_socket(websocket: WebSocket) -> None:
        await serve(websocket, services)

    return routes


async def serve(websocket: WebSocket, services: Services) -> None:
    try:
        principal = await authenticate(websocket, services)
        service = services.tasks
        if service is None:
            raise ServiceUnavailable("agent tasks are not running (tasks.enabled)")
    except EnclaveError as exc:
        await _refuse(websocket, exc)
        return
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    caller = task_caller_of(principal, _actor(websocket, principal))
    await Session(websocket, service, caller, services, principal).run()


async def authenticate(websocket: WebSocket, services: Services) -> Principal | None:
    """The caller of the handshake (``None`` with authentication off), or the error that
    refuses it."""
    gate, scope = services.gatekeeper, websocket.scope
    ip = gate.client_ip(scope)
    scope.setdefault("state", {})["client_ip"] = ip
    if not gate.allowlist.allows(ip):
        raise Forbidden(f"the address {ip} may not use this gateway")
    leaked = [name for name in websocket.query_params if name.lower() in URL_TOKENS]
    if leaked:
        raise AuthenticationFailed(
            f"a token in the URL (?{leaked[0]}=) is refused: it would stay in logs and "
            "histories; use a ticket from POST /api/tasks/ws/ticket"
        )
    if not gate.enabled:
        return None
    principal = await _principal(websocket, services, ip)
    if principal.allow is not None and not principal.allow.allows(ip):
        raise Forbidden(f"this API key may not be used from {ip}")
    return principal


async def _principal(websocket: WebSocket, services: Services, ip: str) -> Principal:
    from enclave.gateway.edge import _only_header
    from enclave.gateway.tasks_tickets import redeem

    gate = services.gatekeeper
    header = _only_header(websocket.scope, b"authorization")
    if header:
        return await gate.principal(header)
    offered = websocket.scope.get("subprotocols") or []
    tokens = [p[len(BEARER) :] for p in offered if p.lower().startswith(BEARER)]
    if tokens:
        return await gate.principal(f"Bearer {tokens[0]}")
    ticket = websocket.query_params.get("ticket")
    if ticket:
        return await redeem(gate, ticket, ip)
    raise AuthenticationFailed(NO_CREDENTIALS)


async def still_valid(services: Services, principal: Principal | None) -> bool:
    """Whether the socket's key or session still stands (read from the database, not the
    gatekeeper's cache): not revoked, not expired, its user not disabled."""
    from datetime import UTC, datetime

    gate = services.gatekeeper
    if principal is None or not gate.enabled:
        return True
    if principal.key_prefix:
        key = await gate.keys.by_prefix(principal.key_prefix)
        now = datetime.now(UTC)
        return (key is not None and key.revoked_at is None and not key.user.disabled
                and (key.expires_at is None or key.expires_at > now))  # fmt: skip
    if principal.session:
        state = await gate.sessions.state(principal.session)
        return state is not None and not state.revoked and not state.user.disabled
    return True


async def _refuse(websocket: WebSocket, exc: EnclaveError) -> None:
    try:
        await websocket.send_denial_response(error_response(exc))
    except RuntimeError:  # a server without the denial-response extension
        await websocket.close(code=1008, reason=exc.message[:120])


def _actor(websocket: WebSocket, principal: Principal | None) -> Actor:
    return Actor(
        user=principal.user if principal else None,
        key_prefix=principal.key_prefix if principal else None,
        client_ip=websocket.scope.get("state", {}).get("client_ip"),
    )


class Session:
    """One socket: its subscriptions (a follower task per run) and what it was sent."""

    def __init__(
        self, websocket: WebSocket, service: TaskService, caller: Caller, services: Services,
        principal: Principal | None = None,
    ) -> None:  # fmt: skip
        self.websocket = websocket
        self.service = service
        self.caller = caller
        self.services = services
        self.principal = principal
        self.followers: dict[str, asyncio.Task[None]] = {}
        self._sending = asyncio.Lock()

    async def _valid(self) -> bool:
        """Whether the credentials still stand; if not, the socket is closed (1008)."""
        if await still_valid(self.services, self.principal):
            return True
        for task in list(self.followers.values()):
            task.cancel()
        async with self._sending:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                await self.websocket.close(code=1008, reason=REVOKED)
        return False

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_S)
            try:
                if not await self._valid():
                    return
            except Exception:  # the database unreachable: try again next time
                log.warning("tasks: checking a socket's credentials failed", exc_info=True)

    async def run(self) -> None:
        watchdog = asyncio.create_task(self._recheck_forever())
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text")
                if raw is None:
                    raw = (message.get("bytes") or b"").decode("utf-8", "replace")
                await self.handle(raw)
        finally:
            for task in [watchdog, *self.followers.values()]:
                task.cancel()
            for task in [watchdog, *self.followers.values()]:
                with contextlib.suppress(BaseException):
                    await task

    async def send(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        async with self._sending:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                await self.websocket.send_text(text)

    async def handle(self, raw: str) -> None:
        run: str | None = None
        try:
            message = _message(raw, int(self.services.settings.limits.max_json_depth))
            run = message.get("run") if isinstance(message.get("run"), str) else None
            kind = message.get("type")
            if kind in ("start", "cancel") and not await self._valid():
                return
            if kind == "subscribe":
                await self.subscribe(_run_id(message), _after(message))
            elif kind == "unsubscribe":
                await self.unsubscribe(_run_id(message))
            elif kind == "start":
                await self.start(message)
            elif kind == "cancel":
                found = await self.service.cancel(self.caller, _run_id(message))
                await self.send({"type": "cancelling", "run": RunPublic.of(found).model_dump()})
            else:
                raise InvalidRequest(
                    "type must be subscribe, unsubscribe, start or cancel", param="type"
                )
        except EnclaveError as exc:
            await self.send(_error(exc, run))

    async def subscribe(self, run: str, after: int) -> None:
        await self.service.get_run(self.caller, run)  # not visible: a NotFound, answered now
        await self.unsubscribe(run)
        limit = self.services.settings.tasks.ws_max_subscriptions
        if len(self.followers) >= limit:
            raise TooManyRequests(
                f"one socket follows at most {limit} runs (tasks.ws_max_subscriptions)"
            )
        self.service.check_followers(self.caller)  # tasks.max_followers_per_user
        self.followers[run] = asyncio.create_task(self._follow(run, after))

    async def unsubscribe(self, run: str) -> None:
        task = self.followers.pop(run, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def start(self, message: dict[str, Any]) -> None:
        from enclave.gateway.tasks_api import submission

        made = await self.service.submit(self.caller, **submission(message))
        public = RunPublic.of(made)
        await self.send({"type": "started", "run": public.model_dump()})
        await self.subscribe(public.id, 0)

    async def _follow(self, run: str, after: int) -> None:
        me = asyncio.current_task()
        try:
            async for event in self.service.follow(self.caller, run, after=after):
                await self.send(event.public())
        except EnclaveError as exc:
            await self.send(_error(exc, run))
        except Exception:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                log.exception("following run %s failed", run)
                await self.send(_error(EnclaveError("internal error; see the gateway log"), run))
        finally:
            if self.followers.get(run) is me:
                del self.followers[run]


def _message(raw: str, depth: int) -> dict[str, Any]:
    """The message as a JSON object, through the gateway's checked loader: nesting deeper
    than ``limits.max_json_depth`` (or a lone surrogate) is refused, never a crash."""
    from enclave.gateway.body import loads

    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidRequest(f"a message is at most {MAX_MESSAGE_BYTES} bytes")
    try:
        data = raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("a message must be UTF-8 text") from None
    return loads(data, depth)


def _run_id(message: dict[str, Any]) -> str:
    run = message.get("run")
    if not isinstance(run, str) or not run:
        raise InvalidRequest("run must be a run id", param="run")
    return run


def _after(message: dict[str, Any]) -> int:
    after = message.get("after", 0)
    if after is None:
        return 0
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**63:
        raise InvalidRequest("after must be an event id (0 or more)", param="after")
    return after


def _error(exc: EnclaveError, run: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": "error", "message": exc.message,
                             "code": exc.code or exc.type, "param": exc.param}  # fmt: skip
    if run is not None:
        error["run"] = run
    return error
