"""One-use, short-lived tickets for ``/api/tasks/ws?ticket=`` (browsers cannot set headers
on a WebSocket, and a long-lived token in a URL ends up in logs and histories).

A ticket is a JWT signed with the gateway's secret (every replica shares it) naming its
user, how the caller authenticated (``via``: a key prefix or a web session) and a ticket
id, good ``tasks.ticket_ttl_s`` seconds. Spending it once, on whichever replica, is a row
of ``web_sessions``: the ticket is a tiny session of its user, opened when issued and
revoked (``revoked_why`` "ticket") by the first handshake that presents it, in one
conditional UPDATE; a second presentation finds it revoked. The row expires with the
ticket and goes with the user's other expired sessions. When redeemed, the key or session
that asked for it must still be good, and the user still enabled.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt

from enclave.auth.tokens import ALGORITHM, new_id
from enclave.errors import AuthenticationFailed
from enclave.gateway.gatekeeper import Principal

if TYPE_CHECKING:
    from enclave.gateway.gatekeeper import Gatekeeper
    from enclave.store.repos import Store

KIND = "ws-ticket"
REFUSED = "invalid, used or expired ticket: ask POST /api/tasks/ws/ticket for a new one"
USED = "ticket"  # web_sessions.revoked_why of a spent ticket


def sign(secret: bytes, *, user: str | None, via: str, ttl_s: float, now: float | None = None,
         tid: str | None = None) -> str:  # fmt: skip
    """A signed ticket of ``user`` (``None``: authentication is off)."""
    issued = time.time() if now is None else now
    claims = {"typ": KIND, "sub": user, "via": via, "tid": tid or new_id(),
              "iat": issued, "exp": issued + ttl_s}  # fmt: skip
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read(secret: bytes, ticket: str, *, now: float | None = None) -> dict[str, Any]:
    """The claims of a well-signed, unexpired ticket; else AuthenticationFailed."""
    try:
        claims: dict[str, Any] = jwt.decode(
            ticket, secret, algorithms=[ALGORITHM],
            options={"require": ["typ", "tid", "via", "exp"], "verify_exp": False},
        )  # fmt: skip
    except jwt.InvalidTokenError:
        raise AuthenticationFailed(REFUSED) from None
    current = time.time() if now is None else now
    expires = claims.get("exp")
    if claims.get("typ") != KIND or not isinstance(expires, int | float) or expires <= current:
        raise AuthenticationFailed(REFUSED)
    return claims


def via_of(principal: Principal) -> str:
    if principal.key_prefix:
        return f"key:{principal.key_prefix}"
    return f"session:{principal.session or ''}"


async def issue(gate: Gatekeeper, store: Store, principal: Principal | None, ttl_s: float) -> str:
    """A ticket for ``principal``; with authentication on, its one-use row is stored."""
    if principal is None or principal.user is None:
        return sign(gate.secret, user=None, via="", ttl_s=ttl_s)
    from enclave.store.repos import UserRepo

    user = await UserRepo(store).get(principal.user)
    if user is None:
        raise AuthenticationFailed(REFUSED)
    tid, now = new_id(), datetime.now(UTC)
    expires = now + timedelta(seconds=ttl_s)
    await gate.sessions.open(user, tid, new_id(), now=now, expires_at=expires)
    return sign(gate.secret, user=user.name, via=via_of(principal), ttl_s=ttl_s, tid=tid,
                now=now.timestamp())  # fmt: skip


async def redeem(gate: Gatekeeper, ticket: str, ip: str) -> Principal:
    """Spend ``ticket``: the caller it was issued to, or AuthenticationFailed (forged,
    expired, already used, its key or session since revoked, its user disabled)."""
    claims = read(gate.secret, ticket)
    tid, via = str(claims["tid"]), str(claims["via"])
    if not await gate.sessions.revoke(tid, USED, now=datetime.now(UTC)):
        raise AuthenticationFailed(REFUSED)
    state = await gate.sessions.state(tid)
    if state is None or state.user.disabled or state.user.name != claims.get("sub"):
        raise AuthenticationFailed(REFUSED)
    kind, _, ref = via.partition(":")
    if kind == "key":
        key = await gate.keys.by_prefix(ref)
        now = datetime.now(UTC)
        if key is None or key.revoked_at is not None or key.user.name != state.user.name:
            raise AuthenticationFailed(REFUSED)
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationFailed(REFUSED)
        from enclave.auth.network import Allowlist

        if key.allow and not Allowlist(key.allow).allows(ip):
            raise AuthenticationFailed(REFUSED)
        return Principal(
            user=state.user.name,
            role=state.user.role,
            key_prefix=ref,
            models=tuple(key.models),
            user_models=tuple(state.user.models or ()),
        )
    origin = await gate.sessions.state(ref)
    if origin is None or origin.revoked:
        raise AuthenticationFailed(REFUSED)
    return Principal(
        user=state.user.name,
        role=state.user.role,
        session=ref,
        user_models=tuple(state.user.models or ()),
    )
