"""Web sessions: short-lived access tokens and longer refresh tokens, JWT HS256.

A token never looks like an API key (JWTs start with ``eyJ``; keys with ``sk-enc-``), and
a refresh token is refused where an access token is wanted and the other way round
(the ``typ`` claim). Both name their session (``sid``, one login), so that a store can
revoke every token of a session at once; a refresh token's ``jti`` is what the store keeps
to spend it once. Every failure raises the same :class:`AuthenticationFailed`,
whatever was wrong, so a caller learns nothing from the message.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from enclave.errors import AuthenticationFailed, ConfigError

Kind = Literal["access", "refresh"]
ALGORITHM = "HS256"
MIN_KEY_BYTES = 32  # RFC 7518 section 3.2: at least the hash's size
REFUSED = "invalid or expired session token"
_CLAIMS = ("sub", "role", "typ", "iat", "exp", "jti", "sid")


@dataclass(frozen=True)
class Claims:
    user: str
    role: str
    kind: Kind
    issued_at: int  # Unix seconds
    expires_at: int
    jti: str  # unique per token: lets a store spend one refresh token once
    session: str  # the login this token descends from (its refresh-token family)


def issue(
    key: bytes,
    *,
    user: str,
    role: str,
    ttl_s: int,
    kind: Kind,
    session: str,
    jti: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token for ``user`` valid ``ttl_s`` seconds from ``now`` (default: the clock)."""
    _check_key(key)
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": user,
        "role": role,
        "typ": kind,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": jti or new_id(),
        "sid": session,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def new_id() -> str:
    """A random token or session id (128 bits)."""
    return secrets.token_urlsafe(16)


def decode(key: bytes, token: str, kind: Kind, *, now: float | None = None) -> Claims:
    """The claims of a valid, unexpired token of this ``kind``; else AuthenticationFailed."""
    _check_key(key)
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": list(_CLAIMS), "verify_exp": False, "verify_iat": False},
        )
        claims = _claims(payload)
    except (jwt.InvalidTokenError, TypeError, ValueError):
        raise AuthenticationFailed(REFUSED) from None
    current = time.time() if now is None else now
    if claims.kind != kind or claims.expires_at <= current:
        raise AuthenticationFailed(REFUSED)
    return claims


def _claims(payload: dict[str, Any]) -> Claims:
    sub, role, typ, jti, sid = (payload[name] for name in ("sub", "role", "typ", "jti", "sid"))
    iat, exp = payload["iat"], payload["exp"]
    texts_ok = all(isinstance(v, str) and v for v in (sub, role, jti, sid))
    times_ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (iat, exp))
    if not (texts_ok and times_ok) or typ not in ("access", "refresh"):
        raise ValueError("malformed claims")
    return Claims(
        user=sub, role=role, kind=typ, issued_at=iat, expires_at=exp, jti=jti, session=sid
    )


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the session signing key must be at least {MIN_KEY_BYTES} bytes")
